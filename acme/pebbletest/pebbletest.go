// Package pebbletest runs Pebble, Let's Encrypt's test ACME CA, in the test process on loopback,
// for tests of edgesim's ACME client. Start it with Start; it stops when the test ends.
package pebbletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Options configures a Pebble. Zero values mean the default beside each field.
type Options struct {
	// Resolver is the DNS server ("127.0.0.1:port", TCP) the VA resolves identifiers and
	// DNS-01 TXT records with. Required: Pebble must never use the system resolver.
	Resolver string
	// TLSPort is where the VA connects for TLS-ALPN-01 (the edge's HTTPS port); HTTPPort where
	// it connects for HTTP-01. 0 leaves Pebble's defaults (5001, 5002).
	TLSPort, HTTPPort int
	// Validity is the lifetime of issued certificates; 0: Pebble's default (about 5 years).
	// Whole seconds.
	Validity time.Duration
	// Sleep keeps Pebble's random 0-5 s pause before each validation; by default it is off.
	Sleep bool
	// Log sends Pebble's log to t.Log; by default it is discarded (it logs every request).
	Log bool
}

// Pebble is a running in-process Pebble.
type Pebble struct {
	DirectoryURL string         // the ACME directory, https://127.0.0.1:port/dir
	Roots        *x509.CertPool // trusts the ACME endpoint's HTTPS certificate
	RootsPEM     []byte         // the same root as PEM, for a --acme-ca-root file
	IssuerRoots  *x509.CertPool // trusts the certificates Pebble issues
	IssuerPEM    []byte         // the same roots as PEM, for a client's --ca file
	Addr         string         // host:port of the ACME endpoint
}

// envMu serialises reading Pebble's settings from the environment, which its constructors do.
var envMu sync.Mutex

// Start runs Pebble on 127.0.0.1:0 with its own CA for the ACME endpoint and stops it in
// t.Cleanup.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()
	if opts.Resolver == "" {
		t.Fatal("pebbletest: Options.Resolver is required (the test's DNS server)")
	}
	var out io.Writer = io.Discard
	if opts.Log {
		w := &testWriter{t: t}
		t.Cleanup(w.close)
		out = w
	}
	logger := log.New(out, "pebble ", log.Lmicroseconds)

	profile := ca.Profile{Description: "edgesim test profile"}
	if opts.Validity > 0 {
		profile.ValidityPeriod = uint64(max(opts.Validity/time.Second, 1))
	}
	tlsPort, httpPort := opts.TLSPort, opts.HTTPPort
	if tlsPort == 0 {
		tlsPort = 5001
	}
	if httpPort == 0 {
		httpPort = 5002
	}

	envMu.Lock()
	restore := setEnv(map[string]string{
		"PEBBLE_VA_NOSLEEP":      map[bool]string{false: "1", true: "0"}[opts.Sleep],
		"PEBBLE_VA_SLEEPTIME":    "5",
		"PEBBLE_WFE_NONCEREJECT": "0", // no deliberate badNonce errors: runs are repeatable
		"PEBBLE_AUTHZREUSE":      "0", // every order validates afresh
	})
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "rsa", 0, 1, map[string]ca.Profile{"default": profile})
	validator := va.New(logger, httpPort, tlsPort, false, opts.Resolver, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	restore()
	envMu.Unlock()

	serverCert, roots, err := endpointCert()
	if err != nil {
		t.Fatalf("pebbletest: endpoint certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pebbletest: listen: %v", err)
	}
	srv := &http.Server{
		Handler:           front.Handler(),
		ErrorLog:          logger,
		ReadHeaderTimeout: 10 * time.Second,
	}
	tlsLn := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(tlsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("pebbletest: serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})

	issuerRoots := x509.NewCertPool()
	var issuerPEM []byte
	for i := range authority.GetNumberOfRootCerts() {
		issuerRoots.AddCert(authority.GetRootCert(i).Cert)
		issuerPEM = append(issuerPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authority.GetRootCert(i).Cert.Raw})...)
	}
	return &Pebble{
		DirectoryURL: "https://" + ln.Addr().String() + wfe.DirectoryPath,
		Roots:        roots,
		RootsPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverCert.Certificate[1]}),
		IssuerRoots:  issuerRoots,
		IssuerPEM:    issuerPEM,
		Addr:         ln.Addr().String(),
	}
}

// setEnv sets vars and returns a function that puts the previous values back.
func setEnv(vars map[string]string) (restore func()) {
	type prev struct {
		val string
		set bool
	}
	old := make(map[string]prev, len(vars))
	for k, v := range vars {
		val, set := os.LookupEnv(k)
		old[k] = prev{val, set}
		_ = os.Setenv(k, v)
	}
	return func() {
		for k, p := range old {
			if p.set {
				_ = os.Setenv(k, p.val)
			} else {
				_ = os.Unsetenv(k)
			}
		}
	}
}

// endpointCert makes a throwaway CA and a certificate for 127.0.0.1 and localhost signed by it.
func endpointCert() (tls.Certificate, *x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pebbletest endpoint CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "pebbletest"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}, pool, nil
}

// testWriter sends Pebble's log lines to t.Log until the test ends; Pebble's goroutines can
// outlive the test, and t.Log after the end panics.
type testWriter struct {
	t      testing.TB
	mu     sync.Mutex
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

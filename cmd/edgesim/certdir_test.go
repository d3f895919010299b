package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/edgesim/edgesim/tenant/certdir"
)

// secretPair is a certificate as a kubernetes.io/tls Secret holds it.
type secretPair struct {
	crt, key []byte
	serial   string // the leaf's serial, decimal
}

// issueSecret has ca issue a certificate for names with a fresh ECDSA key.
func (ca *goCA) issueSecret(t *testing.T, names ...string) secretPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	chain, leaf := ca.signFor(t, &key.PublicKey, pkix.Name{CommonName: names[0]}, names)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return secretPair{crt: chain, key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		serial: leaf.SerialNumber.String()}
}

var kubeletStamp atomic.Int64

// kubeletWrite updates dir/name as the kubelet updates a mounted Secret: the files go into a new
// ..<timestamp> folder, a ..data_tmp symlink to it is renamed over ..data, tls.crt and tls.key
// link to ..data/<file> (made on the first write), and the old timestamped folder goes last.
func kubeletWrite(t *testing.T, dir, name string, p secretPair) {
	t.Helper()
	root := filepath.Join(dir, name)
	ts := time.Date(2026, 11, 24, 10, 0, 0, int(kubeletStamp.Add(1)), time.UTC).Format("..2006_01_02_15_04_05.000000000")
	if err := os.MkdirAll(filepath.Join(root, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for file, b := range map[string][]byte{certdir.CertFile: p.crt, certdir.KeyFile: p.key} {
		if err := os.WriteFile(filepath.Join(root, ts, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(root, "..data"))
	if err := os.Symlink(ts, filepath.Join(root, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "..data_tmp"), filepath.Join(root, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{certdir.CertFile, certdir.KeyFile} {
		if _, err := os.Lstat(filepath.Join(root, file)); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", file), filepath.Join(root, file)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(root, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// servedSerial makes one handshake with SNI sni, verified against roots, and returns the
// leaf's serial.
func servedSerial(addr, sni string, roots *x509.CertPool) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// awaitSerial waits (up to 5 s) until sni is served the certificate with serial want.
func awaitSerial(t *testing.T, addr, sni string, roots *x509.CertPool, want, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := servedSerial(addr, sni, roots)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: SNI %s served serial %s (%v), want %s", what, sni, got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCertDirKubeletSwapUnderLoad is the issue's check: the directory source test swaps
// certificates the way the kubelet does, under handshake load, with zero failed handshakes.
func TestCertDirKubeletSwapUnderLoad(t *testing.T) {
	const swaps, workers, maxHandshakes = 20, 4, 20000
	ca := newGoCA(t)
	pairs := make([]secretPair, swaps+1)
	known := map[string]int{}
	for i := range pairs {
		pairs[i] = ca.issueSecret(t, "mra.example.com", "collab-edge.example.com")
		known[pairs[i].serial] = i
	}
	dir := t.TempDir()
	kubeletWrite(t, dir, "example-com-tls", pairs[0])
	s := testServer(t, "--cert-dir", dir, "--cert-dir-poll", "50ms", "--admin-addr", "")
	https, _, _ := s.addrs()
	roots := ca.pool()
	// The first pass is done before the listeners accept.
	if got, err := servedSerial(https, "mra.example.com", roots); err != nil || got != pairs[0].serial {
		t.Fatalf("first handshake: serial %s (%v), want the directory's %s", got, err, pairs[0].serial)
	}

	var (
		stop              atomic.Bool
		total, failed     atomic.Int64
		mu                sync.Mutex
		seen              = map[string]int{}
		firstErr, unknown error
		wg                sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for !stop.Load() && total.Add(1) <= maxHandshakes {
				serial, err := servedSerial(https, "mra.example.com", roots)
				mu.Lock()
				switch _, ok := known[serial]; {
				case err != nil:
					failed.Add(1)
					if firstErr == nil {
						firstErr = err
					}
				case !ok:
					failed.Add(1)
					unknown = errors.New("unknown serial " + serial)
				default:
					seen[serial]++
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	for i := 1; i <= swaps; i++ {
		time.Sleep(60 * time.Millisecond)
		kubeletWrite(t, dir, "example-com-tls", pairs[i])
	}
	awaitSerial(t, https, "mra.example.com", roots, pairs[swaps].serial, "after the last swap")
	stop.Store(true)
	wg.Wait()
	took := time.Since(start)

	n := min(total.Load(), maxHandshakes)
	t.Logf("%d handshakes in %v during %d kubelet swaps, %d failed; %d of %d certificates seen", n, took.Round(time.Millisecond),
		swaps, failed.Load(), len(seen), swaps+1)
	if failed.Load() != 0 {
		t.Fatalf("%d handshakes failed; first: %v %v", failed.Load(), firstErr, unknown)
	}
	if len(seen) < 2 {
		t.Fatalf("handshakes saw %d certificates, want the swaps to show", len(seen))
	}
	// Every swap was a whole update: nothing was reported, and the last certificate was loaded.
	if errs := gatherSum(t, s.reg, "edgesim_certdir_errors_total"); errs != 0 {
		t.Fatalf("edgesim_certdir_errors_total = %v, want 0", errs)
	}
	if loads := gatherSum(t, s.reg, "edgesim_certdir_loads_total"); loads < 2 || loads > swaps+1 {
		t.Fatalf("edgesim_certdir_loads_total = %v, want 2..%d", loads, swaps+1)
	}
}

// gatherSum adds up every series of a metric family in reg.
func gatherSum(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		found = true
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if !found {
		t.Fatalf("metric %s not registered", name)
	}
	return sum
}

// TestCertDirPrecedence: the directory's certificate (a wildcard here) replaces the provisioned
// one, an API domain's certificate beats the directory's, deleting the API domain brings the
// directory's current certificate back, and removing the folder brings the provisioned one back.
func TestCertDirPrecedence(t *testing.T) {
	ca := newGoCA(t)
	dir := t.TempDir()
	s := testServer(t, "--cert-dir", dir, "--cert-dir-poll", "20ms", "--admin-addr", "")
	https, _, _ := s.addrs()
	const host = "mra.example.com"
	local := s.caPool(t)
	provisioned, err := servedSerial(https, host, local)
	if err != nil {
		t.Fatalf("provisioned certificate: %v", err)
	}

	wild := ca.issueSecret(t, "*.example.com", "example.com")
	kubeletWrite(t, dir, "wildcard-example-com", wild)
	awaitSerial(t, https, host, ca.pool(), wild.serial, "wildcard from the directory over the provisioned exact name")
	awaitSerial(t, https, "other.example.com", ca.pool(), wild.serial, "wildcard for a name nothing else serves")

	ctx := context.Background()
	if _, err := s.domains.Add(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	api := ca.issueSecret(t, host, "example.com")
	if _, err := s.domains.Upload(ctx, "example.com", api.crt, api.key); err != nil {
		t.Fatal(err)
	}
	awaitSerial(t, https, host, ca.pool(), api.serial, "API upload over the directory")

	next := ca.issueSecret(t, "*.example.com", "example.com")
	kubeletWrite(t, dir, "wildcard-example-com", next)
	awaitSerial(t, https, "other.example.com", ca.pool(), next.serial, "directory change")
	time.Sleep(100 * time.Millisecond) // several polls and reconciles
	if got, err := servedSerial(https, host, ca.pool()); err != nil || got != api.serial {
		t.Fatalf("after a directory change the API domain's host served %s (%v), want the upload %s", got, err, api.serial)
	}

	if err := s.domains.Delete(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	awaitSerial(t, https, host, ca.pool(), next.serial, "API domain deleted: the directory's current certificate")

	if err := os.RemoveAll(filepath.Join(dir, "wildcard-example-com")); err != nil {
		t.Fatal(err)
	}
	awaitSerial(t, https, host, local, provisioned, "folder removed: the provisioned certificate")
	// other.example.com had nothing before: the platform certificate answers again.
	c, err := tls.Dial("tcp", https, &tls.Config{ServerName: "other.example.com", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if leaf := c.ConnectionState().PeerCertificates[0]; !hasName(leaf, "mra.sp.example") {
		t.Fatalf("other.example.com: presented %v, want the platform certificate", leaf.DNSNames)
	}
}

func TestCertDirFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing dir", []string{"--cert-dir", "/nonexistent/certs"}, "--cert-dir: certdir: cannot read the certificate directory /nonexistent/certs: no such file or directory"},
		{"zero poll", []string{"--cert-dir", ".", "--cert-dir-poll", "0s"}, "--cert-dir-poll 0s: want a positive interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o serveOptions
			fs := newFlagSet("serve", "", io.Discard)
			o.register(fs)
			args := append([]string{"--data", t.TempDir(), "--key-type", "ecdsa-p256", "--tenants", "2",
				"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
				"--dns-addr", "127.0.0.1:0", "--metrics-addr", "", "--admin-addr", ""}, tc.args...)
			if err := fs.parse(args); err != nil {
				t.Fatal(err)
			}
			s, err := startServer(o, zap.NewNop(), prometheus.NewRegistry())
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = s.shutdown(ctx)
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

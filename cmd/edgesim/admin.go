package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/edgesim/edgesim/sni"
	"github.com/edgesim/edgesim/tenant"
	"github.com/edgesim/edgesim/tenant/domains"
)

// The admin API: domain certificates as on Expressway-E (tenant/domains), served on
// --admin-addr. On loopback it is plain HTTP with no token, like the metrics endpoint; bound
// beyond loopback it is HTTPS with a certificate from the local CA and needs a bearer token.
const (
	defaultAdminAddr = "127.0.0.1:9180"
	adminTokenName   = "admin-token" // in --data unless --admin-token-file says otherwise
)

// adminServer is the running admin API.
type adminServer struct {
	ln        net.Listener
	srv       *http.Server
	secure    bool   // TLS and a bearer token
	tokenFile string // set when secure
	caFile    string // set when secure
}

// listenAdmin binds --admin-addr with the other listeners, before provisioning. When the
// default port is taken (another edgesim runs on this machine), it says so and goes on without
// the admin API; an address given on purpose must be free.
func (s *server) listenAdmin(o serveOptions) error {
	if o.adminAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", o.adminAddr)
	if err != nil {
		if o.adminAddr == defaultAdminAddr && errors.Is(err, syscall.EADDRINUSE) {
			s.log.Warn("admin API not started: its default address is taken (another edgesim?); choose one with --admin-addr",
				zap.String("addr", o.adminAddr))
			return nil
		}
		return portHint(fmt.Errorf("--admin-addr: %w", err), "--admin-addr")
	}
	s.admin = &adminServer{ln: ln}
	return nil
}

// startDomains builds the domain-certificate manager over the SNI store, restores what it
// stored, and serves its API when --admin-addr is bound. Uploaded certificates are restored
// even when the API is off.
func (s *server) startDomains(o serveOptions, certs *tenant.Result) error {
	swap := &sniSwap{store: s.store, log: s.log, prev: map[string]*tls.Certificate{}}
	dir := s.dir
	storage := &certmagic.FileStorage{Path: filepath.Join(o.data, "certmagic")}
	var m *domains.Manager
	var err error
	if s.acme, err = s.newACME(o.acme, storage, &m); err != nil {
		return err
	}
	var acmeCtl domains.ACME
	if s.acme != nil {
		acmeCtl = acmeAdapter{s.acme}
	}
	roots := sync.OnceValue(func() *x509.CertPool {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pool.AddCert(certs.CA)
		return pool
	})
	m, err = domains.New(domains.Config{
		Storage: storage,
		ACME:    acmeCtl,
		Roots:   roots,
		HostsFor: func(d string) []string {
			p := dir.Provider()
			if t, ok := dir.Lookup(d); ok {
				return t.SNIHosts(p)
			}
			return []string{tenant.SNIHost(p.EdgeHost, d)}
		},
		Install: swap.install,
		Remove:  swap.remove,
		Logger:  s.log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Load(ctx); err != nil {
		return fmt.Errorf("domain certificates: %w", err)
	}
	s.domains = m
	if err := s.enableTenantACME(ctx, o); err != nil {
		return err
	}
	a := s.admin
	if a == nil {
		return nil
	}
	ip := a.ln.Addr().(*net.TCPAddr).IP
	h := browserGuard(m.Handler(), ip.IsLoopback() && !o.adminSecureLoopback)
	if !ip.IsLoopback() || o.adminSecureLoopback {
		a.secure = true
		a.caFile = certs.CAFile
		a.tokenFile = o.adminTokenFile
		if a.tokenFile == "" {
			a.tokenFile = filepath.Join(o.data, adminTokenName)
		}
		token, err := loadOrMakeToken(a.tokenFile)
		if err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
		cert, err := adminCertificate(filepath.Dir(certs.CAFile), ip)
		if err != nil {
			return fmt.Errorf("admin API certificate: %w", err)
		}
		h = requireToken(token, a.tokenFile, h)
		a.ln = tls.NewListener(a.ln, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
	}
	a.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		ErrorLog: zap.NewStdLog(s.log.Named("admin"))}
	go func() { _ = a.srv.Serve(a.ln) }()
	return nil
}

// url is where the API's domains live.
func (a *adminServer) url() string {
	scheme := "http"
	if a.secure {
		scheme = "https"
	}
	return scheme + "://" + a.ln.Addr().String() + domains.APIPrefix + "/domains"
}

// printAdminBanner writes the banner's admin line.
func (s *server) printAdminBanner(w io.Writer) {
	a := s.admin
	if a == nil || a.srv == nil {
		return
	}
	if a.secure {
		fmt.Fprintf(w, "  admin    %s   domain certificates (bearer token in %s, CA %s)\n", a.url(), a.tokenFile, a.caFile)
		return
	}
	fmt.Fprintf(w, "  admin    %s   domain certificates (loopback: no token needed)\n", a.url())
}

func (a *adminServer) shutdown(ctx context.Context) error {
	if a.srv != nil {
		return a.srv.Shutdown(ctx)
	}
	return a.ln.Close()
}

// sniSwap installs domain certificates into the SNI store and, when one is removed, restores
// what the host served before (the provisioned certificate, or nothing).
type sniSwap struct {
	store *sni.Store
	log   *zap.Logger
	mu    sync.Mutex
	prev  map[string]*tls.Certificate // host -> certificate before the first install; nil: none
}

func (w *sniSwap) install(host string, c *tls.Certificate) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for { // what it replaces is what it read: another writer (--cert-dir) may change the host
		old, _ := w.store.Get(host)
		ok, err := w.store.CompareAndSet(host, old, c)
		if err != nil {
			w.log.Error("domain certificate not installed", zap.String("host", host), zap.Error(err))
			return
		}
		if ok {
			if _, seen := w.prev[host]; !seen {
				w.prev[host] = old
			}
			return
		}
	}
}

func (w *sniSwap) remove(host string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	old, ok := w.prev[host]
	delete(w.prev, host)
	if ok && old != nil {
		_ = w.store.Set(host, old)
		return
	}
	w.store.Delete(host)
}

// loadOrMakeToken reads the bearer token from path, or makes one there (mode 0600).
func loadOrMakeToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("%s holds no token of at least 16 characters; write one, or delete the file to have one made", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(f, tok+"\n"); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}

// requireToken lets a request through only with "Authorization: Bearer <token>"; the health
// check needs none. Tokens are compared by their SHA-256 in constant time.
// browserGuard keeps web pages away from the API: a request carrying another site's Origin is
// refused (a page in the operator's browser could otherwise change domains with a plain POST),
// a change must come as JSON or PEM (types a page cannot send cross-site without asking), and
// an API bound to loopback answers only to loopback names (no DNS rebinding).
func browserGuard(next http.Handler, loopback bool) http.Handler {
	refuse := func(w http.ResponseWriter, status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(domains.APIError{Error: msg, Status: status})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			if u, err := url.Parse(origin); err != nil || !strings.EqualFold(u.Host, r.Host) {
				refuse(w, http.StatusForbidden, "requests from web pages of other sites are refused (Origin "+origin+"): use 'edgesim domains' or curl")
				return
			}
		}
		if loopback {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			if ip := net.ParseIP(strings.Trim(host, "[]")); !(host == "localhost" || ip != nil && ip.IsLoopback()) {
				refuse(w, http.StatusMisdirectedRequest, "this admin API answers only requests addressed to its loopback address, not to "+r.Host)
				return
			}
		}
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if r.ContentLength != 0 && ct != "application/json" && ct != "application/x-pem-file" {
				refuse(w, http.StatusUnsupportedMediaType, "send the request body as application/json (or a PEM certificate as application/x-pem-file), not "+strconv.Quote(ct))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func requireToken(token, file string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == domains.APIPrefix+"/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		scheme, got, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		ok = ok && strings.EqualFold(scheme, "Bearer") // auth schemes are case-insensitive (RFC 9110)
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			msg := fmt.Sprintf("this admin API is reachable beyond loopback, so it needs its bearer token: send 'Authorization: Bearer <token>' with the token in %s (edgesim domains --token %s)", file, file)
			if ok {
				msg = fmt.Sprintf("the bearer token is wrong; use the one in %s (edgesim domains --token %s)", file, file)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="edgesim admin"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(domains.APIError{Error: msg, Status: http.StatusUnauthorized})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminCertificate issues the admin endpoint's certificate from the local CA in caDir
// (ca.pem, ca.key), for the address bound: that IP, or every address of the machine and its
// host name when bound to all. It is made afresh on each start and kept in memory only.
func adminCertificate(caDir string, ip net.IP) (*tls.Certificate, error) {
	caPEM, err := os.ReadFile(filepath.Join(caDir, tenant.CAFileName))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(caDir, "ca.key"))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("the local CA files are not PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, errors.New("the local CA key does not decode") // never the key's bytes
	}
	caKey, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("the local CA key cannot sign")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "edgesim admin API", Organization: []string{"edgesim"}},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
	}
	if ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					tmpl.IPAddresses = append(tmpl.IPAddresses, n.IP)
				}
			}
		}
	} else {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}, nil
}

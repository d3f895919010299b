package domains

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// testCA is a Go CA that signs what the tests upload.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// sign issues a certificate for pub with names, changed by mod, and returns the chain as PEM
// (leaf, then the CA).
func (ca *testCA) sign(t *testing.T, pub crypto.PublicKey, names []string, mod func(*x509.Certificate)) []byte {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
}

// signCSR signs a CSR PEM for the names it asks for.
func (ca *testCA) signCSR(t *testing.T, csrPEM []byte, mod func(*x509.Certificate)) []byte {
	t.Helper()
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a CSR PEM: %q", csrPEM)
	}
	req, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	return ca.sign(t, req.PublicKey, req.DNSNames, func(c *x509.Certificate) {
		c.Subject = req.Subject
		if mod != nil {
			mod(c)
		}
	})
}

// issue makes a key and a certificate for names: chain PEM and key PEM (PKCS#8).
func (ca *testCA) issue(t *testing.T, names []string, mod func(*x509.Certificate)) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	return ca.sign(t, &key.PublicKey, names, mod), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// sniRecorder stands in for the SNI store.
type sniRecorder struct {
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

func (r *sniRecorder) install(h string, c *tls.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.certs[h] = c
}

func (r *sniRecorder) remove(h string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.certs, h)
}

// leaf returns the leaf installed for h, or nil.
func (r *sniRecorder) leaf(h string) *x509.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.certs[h]
	if c == nil {
		return nil
	}
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		panic(err)
	}
	return l
}

func (r *sniRecorder) hosts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for h := range r.certs {
		out = append(out, h)
	}
	return out
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Sync() error { return nil }

// testHosts: every domain has the SNI host mra.<domain>; multi.example has two.
func testHosts(d string) []string {
	if d == "multi.example" {
		return []string{"mra.multi.example", "expe2.multi.example"}
	}
	return []string{"mra." + d}
}

type env struct {
	m       *Manager
	sni     *sniRecorder
	store   *certmagic.FileStorage
	logs    *lockedBuffer
	dir     string
	acme    *stubACME
	srv     *httptest.Server
	outputs *lockedBuffer // every API response body, for the private-key check
}

// newEnv builds a Manager over dir (a new temporary folder when empty), loads it, and serves
// its Handler on a loopback port.
func newEnv(t *testing.T, dir string, acme *stubACME) *env {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	e := &env{sni: &sniRecorder{certs: map[string]*tls.Certificate{}}, store: &certmagic.FileStorage{Path: dir},
		logs: &lockedBuffer{}, dir: dir, acme: acme, outputs: &lockedBuffer{}}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), e.logs, zapcore.DebugLevel))
	cfg := Config{Storage: e.store, HostsFor: testHosts, Install: e.sni.install, Remove: e.sni.remove, Logger: log}
	if acme != nil {
		cfg.ACME = acme
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if acme != nil {
		acme.mu.Lock()
		acme.m = m
		acme.mu.Unlock()
	}
	if err := m.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.m = m
	e.srv = httptest.NewServer(m.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// call makes one API request and returns the status and body; the body is kept for the
// private-key check.
func (e *env) call(t *testing.T, method, path, ctype string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	e.outputs.Write(b)
	return resp.StatusCode, resp.Header, b
}

// ok makes a request that must answer want, and decodes its JSON into v (when not nil).
func (e *env) ok(t *testing.T, method, path string, body any, want int, v any) []byte {
	t.Helper()
	var raw []byte
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
		ctype = "application/json"
	}
	st, _, out := e.call(t, method, path, ctype, raw)
	if st != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, out)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, out)
		}
	}
	return out
}

// stubACME records what the Manager asks of an ACME implementation; the real one is proven
// against Pebble in the acme package. Like it, Enable hands over a stored certificate before
// it returns (through DeployACME on m).
type stubACME struct {
	mu      sync.Mutex
	m       *Manager
	enabled map[string]bool
	stored  map[string]*tls.Certificate
	fail    error
}

func (s *stubACME) Enable(d string) error {
	s.mu.Lock()
	if s.fail != nil {
		s.mu.Unlock()
		return s.fail
	}
	s.enabled[d] = true
	c, m := s.stored[d], s.m
	s.mu.Unlock()
	if c != nil {
		return m.DeployACME(d, c)
	}
	return nil
}

// on reports whether ACME is enabled for d.
func (s *stubACME) on(d string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enabled[d]
}

func (s *stubACME) Disable(d string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.enabled, d)
}

func (s *stubACME) Status(d string) ACMEStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.enabled[d] {
		if s.stored[d] != nil {
			return ACMEStatus{State: "valid"}
		}
		return ACMEStatus{State: "pending"}
	}
	return ACMEStatus{State: "stopped"}
}

// keyMaterial returns strings that would give away a PEM key if they appeared in output: a
// slice of each base64 line.
func keyMaterial(keyPEM []byte) []string {
	var out []string
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			out = append(out, line[8:40])
		}
	}
	return out
}

package certdir

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// testCA signs leaf certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serials atomic.Int64

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "certdir test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

// leafPEM is an issued certificate: the chain (leaf, then the CA) and its key, as PEM.
type leafPEM struct {
	crt, key []byte
	serial   string // hex, as cert.serial
}

type leafOpts struct {
	notBefore, notAfter time.Time
}

func (ca *testCA) issue(t testing.TB, names []string, o ...leafOpts) leafPEM {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	opt := leafOpts{notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(time.Hour)}
	if len(o) > 0 {
		opt = o[0]
	}
	serial := big.NewInt(1000 + serials.Add(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "certdir test leaf"},
		NotBefore: opt.notBefore, NotAfter: opt.notAfter, DNSNames: names,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	crt = append(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	return leafPEM{crt: crt, key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		serial: hex.EncodeToString(serial.Bytes())}
}

// writePlain writes dir/name/tls.crt and tls.key as regular files.
func writePlain(t testing.TB, dir, name string, l leafPEM) {
	t.Helper()
	writeFile(t, filepath.Join(dir, name, CertFile), l.crt)
	writeFile(t, filepath.Join(dir, name, KeyFile), l.key)
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

var stamp atomic.Int64

// writeKubelet updates dir/name the way the kubelet's atomic writer updates a Secret volume:
// the files go into a new dir/name/..<timestamp> folder, a ..data_tmp symlink to it is renamed
// over ..data, tls.crt and tls.key are symlinks to ..data/<file> (made once), and the old
// timestamped folder is removed last.
func writeKubelet(t testing.TB, dir, name string, l leafPEM) {
	t.Helper()
	writeAtomic(t, filepath.Join(dir, name), map[string][]byte{CertFile: l.crt, KeyFile: l.key})
}

// writeAtomic is the kubelet's AtomicWriter for one volume root: files maps the payload's
// paths (which may hold a folder, as in a projected volume) to their content.
func writeAtomic(t testing.TB, root string, files map[string][]byte) {
	t.Helper()
	ts := time.Date(2026, 11, 24, 10, 0, 0, int(stamp.Add(1)), time.UTC)
	tsDir := ts.Format("..2006_01_02_15_04_05.000000000")
	if err := os.MkdirAll(filepath.Join(root, tsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, b := range files {
		writeFile(t, filepath.Join(root, tsDir, p), b)
	}
	old, _ := os.Readlink(filepath.Join(root, "..data"))
	tmp := filepath.Join(root, "..data_tmp")
	if err := os.Symlink(tsDir, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(root, "..data")); err != nil {
		t.Fatal(err)
	}
	for p := range files {
		top, _, nested := cutFirst(p)
		link, target := filepath.Join(root, top), filepath.Join("..data", top)
		if !nested {
			target = filepath.Join("..data", p)
		}
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(target, link); err != nil {
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

func cutFirst(p string) (string, string, bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			return p[:i], p[i+1:], true
		}
	}
	return p, "", false
}

// fakeStore records Install and Remove.
type fakeStore struct {
	mu     sync.Mutex
	certs  map[string]*tls.Certificate
	events []string
	notify chan string
}

func newFakeStore() *fakeStore {
	return &fakeStore{certs: map[string]*tls.Certificate{}, notify: make(chan string, 1000)}
}

func (f *fakeStore) install(host string, c *tls.Certificate) {
	if c == nil || c.Leaf != nil || len(c.Certificate) == 0 || c.PrivateKey == nil {
		panic(fmt.Sprintf("install %s: bad certificate %+v", host, c))
	}
	if _, err := tls.X509KeyPair(chainPEM(c), keyPEM(c)); err != nil {
		panic(fmt.Sprintf("install %s: a pair that does not match: %v", host, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certs[host] = c
	ev := "install " + host + " " + serialOf(c)
	f.events = append(f.events, ev)
	f.notify <- ev
}

func (f *fakeStore) remove(host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.certs, host)
	ev := "remove " + host
	f.events = append(f.events, ev)
	f.notify <- ev
}

// take returns the events since the last call.
func (f *fakeStore) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := f.events
	f.events = nil
	return ev
}

// serial returns the serial of the certificate installed for host, "" when none.
func (f *fakeStore) serial(host string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.certs[host]; c != nil {
		return serialOf(c)
	}
	return ""
}

func serialOf(c *tls.Certificate) string {
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return "unparseable"
	}
	return hex.EncodeToString(l.SerialNumber.Bytes())
}

// harness is a Source over a temporary directory with a fake store, logs and metrics.
type harness struct {
	dir   string
	src   *Source
	store *fakeStore
	logs  *observer.ObservedLogs
	reg   *prometheus.Registry
}

func newHarness(t *testing.T, mod ...func(*Config)) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir(), store: newFakeStore(), reg: prometheus.NewRegistry()}
	core, logs := observer.New(zap.DebugLevel)
	h.logs = logs
	cfg := Config{Dir: h.dir, Poll: time.Hour, Install: h.store.install, Remove: h.store.remove,
		Logger: zap.New(core), Registerer: h.reg}
	for _, m := range mod {
		m(&cfg)
	}
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.src = src
	t.Cleanup(src.Stop)
	return h
}

func (h *harness) load(t *testing.T) {
	t.Helper()
	if err := h.src.Load(); err != nil {
		t.Fatal(err)
	}
}

// errorsFor returns edgesim_certdir_errors_total{reason}.
func (h *harness) errorsFor(reason string) float64 {
	return testutil.ToFloat64(h.src.m.errors.WithLabelValues(reason))
}

// warnings returns the warn-level messages logged since the last call, with their folder and
// reason fields.
func (h *harness) warnings() []string {
	var out []string
	for _, e := range h.logs.TakeAll() {
		if e.Level < zap.WarnLevel {
			continue
		}
		m := e.ContextMap()
		out = append(out, fmt.Sprintf("%s folder=%v reason=%v", e.Message, m["folder"], m["reason"]))
	}
	return out
}

func chainPEM(c *tls.Certificate) []byte {
	var out []byte
	for _, der := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

func keyPEM(c *tls.Certificate) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

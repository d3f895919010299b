package domains

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"io/fs"
	"path"
	"sync"

	"github.com/caddyserver/certmagic"
)

// FuzzUpload sends certificate and key PEM, as the admin API receives them from whoever reaches
// it, through Manager.Upload and through the key parser alone. Whatever the bytes, nothing
// panics, every failure is an *Error of a known kind with a 4xx status, and neither an error nor
// a success's details carries key material: no PEM key label and no base64 run of the uploaded
// text. The Manager stores in memory: certmagic.FileStorage syncs every file to disk, which makes
// each accepted upload cost milliseconds and stalls the fuzzer while it minimises the inputs
// that reach that path (the Manager's own tests cover the files).
func FuzzUpload(f *testing.F) {
	ctx := context.Background()
	m, err := New(Config{Storage: &memStorage{files: map[string][]byte{}}, HostsFor: testHosts})
	if err != nil {
		f.Fatal(err)
	}
	if err := m.Load(ctx); err != nil {
		f.Fatal(err)
	}
	for _, d := range []string{"example.com", "csr.example"} {
		if _, err := m.Add(ctx, d); err != nil {
			f.Fatal(err)
		}
	}
	csr, err := m.CSR(ctx, "csr.example", CSROptions{Key: "ecdsa-p256"})
	if err != nil {
		f.Fatal(err)
	}

	ca := newFuzzCA(f)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain := ca.sign(f, &ecKey.PublicKey, []string{"mra.example.com", "example.com"})
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	keyPKCS8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	keySEC1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 1024) // small: a seed, not a certificate to trust
	rsaChain := ca.sign(f, &rsaKey.PublicKey, []string{"*.example.com"})
	keyPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	b, _ := pem.Decode([]byte(csr.CSR))
	req, _ := x509.ParseCertificateRequest(b.Bytes)

	f.Add(chain, keyPKCS8)                                             // made elsewhere, with its key
	f.Add(append(append([]byte{}, chain...), keySEC1...), []byte(nil)) // key inside the certificate PEM
	f.Add(rsaChain, keyPKCS1)                                          // wildcard, PKCS#1 key
	f.Add(chain, keyPKCS1)                                             // the wrong key
	f.Add(ca.sign(f, req.PublicKey, req.DNSNames), []byte(nil))        // signed for the pending CSR of csr.example
	f.Add(keyPKCS8, chain)                                             // swapped
	f.Add([]byte(csr.CSR), []byte(nil))                                // the CSR instead of its certificate
	f.Add(chain, []byte("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAEC\n-----END EC PRIVATE KEY-----\n"))
	f.Add(chain, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	f.Add(chain, append(append([]byte{}, keyPKCS8...), keySEC1...)) // two keys
	f.Add(ca.certDER, []byte(nil))                                  // DER, not PEM
	f.Add([]byte{}, []byte{})

	known := []error{ErrBadDomain, ErrNotFound, ErrNotPEM, ErrNoCertInPEM, ErrBadCert, ErrBadKey, ErrEncryptedKey,
		ErrKeyWithCSR, ErrNoKey, ErrKeyMismatch, ErrExpired, ErrNotYetValid, ErrNamesMismatch}
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		keyRuns, allRuns := uploadRuns(keyPEM, certPEM)
		noSecrets := func(what, out string, runs []string) {
			t.Helper()
			if strings.Contains(out, "PRIVATE KEY") {
				t.Fatalf("%s names a PEM key: %q", what, out)
			}
			for _, r := range runs {
				if strings.Contains(out, r) {
					t.Fatalf("%s quotes the upload (%q): %q", what, r, out)
				}
			}
		}
		if _, err := parseKey(keyPEM); err != nil {
			noSecrets("parseKey error", err.Error(), allRuns)
		}
		for _, d := range []string{"example.com", "csr.example"} {
			det, err := m.Upload(ctx, d, certPEM, keyPEM)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status/100 != 4 || !slicesContainsIs(known, err) {
					t.Fatalf("Upload %s: %T %v, want an *Error of an upload kind with a 4xx status", d, err, err)
				}
				noSecrets("Upload error", err.Error(), allRuns)
				continue
			}
			if d == "csr.example" { // keep a CSR pending there for the next input
				if _, err := m.CSR(ctx, d, CSROptions{Key: "ecdsa-p256"}); err != nil {
					t.Fatal(err)
				}
			}
			out, _ := json.Marshal(det)
			noSecrets("Upload details", string(out), keyRuns)
			shown, err := m.ShowPEM(d)
			if err != nil || bytes.Contains(shown, []byte("PRIVATE KEY")) {
				t.Fatalf("ShowPEM after an upload: %v, %q", err, shown)
			}
		}
	})
}

func slicesContainsIs(kinds []error, err error) bool {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// uploadRuns returns the base64 runs longer than 40 characters in the upload's lines (PEM
// BEGIN and END lines left out): keyRuns those of the key (all of keyPEM, and key blocks inside
// certPEM), allRuns those of both inputs.
func uploadRuns(keyPEM, certPEM []byte) (keyRuns, allRuns []string) {
	k1, k2 := base64Runs(keyPEM)
	c1, c2 := base64Runs(certPEM)
	keyRuns = append(append(k1, k2...), c1...)
	return keyRuns, append(keyRuns, c2...)
}

// base64Runs returns the runs of more than 40 base64 characters in the lines of data that are
// not PEM BEGIN or END lines, inside blocks whose label has PRIVATE KEY or elsewhere.
func base64Runs(data []byte) (inKeys, others []string) {
	inKey := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "-----") {
			inKey = strings.HasPrefix(line, "-----BEGIN") && strings.Contains(line, "PRIVATE KEY")
			continue
		}
		start := -1
		for i := 0; i <= len(line); i++ {
			if i < len(line) && isBase64(line[i]) {
				if start < 0 {
					start = i
				}
				continue
			}
			if start >= 0 && i-start > 40 {
				if inKey {
					inKeys = append(inKeys, line[start:i])
				} else {
					others = append(others, line[start:i])
				}
			}
			start = -1
		}
	}
	return inKeys, others
}

func isBase64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '='
}

// fuzzCA signs the seeds' certificates; long-lived, so the seeds stay valid uploads.
type fuzzCA struct {
	cert    *x509.Certificate
	certDER []byte
	key     crypto.Signer
}

func newFuzzCA(tb testing.TB) *fuzzCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fuzz CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(50, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &fuzzCA{cert: c, certDER: der, key: key}
}

// sign returns the PEM chain (leaf, CA) of a certificate for pub and names.
func (ca *fuzzCA) sign(tb testing.TB, pub crypto.PublicKey, names []string) []byte {
	tb.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(50, 0, 0),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.certDER})...)
}

// memStorage is a certmagic.Storage in memory.
type memStorage struct {
	mu    sync.Mutex
	files map[string][]byte
}

func (s *memStorage) Lock(context.Context, string) error   { return nil }
func (s *memStorage) Unlock(context.Context, string) error { return nil }

func (s *memStorage) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[key] = append([]byte(nil), value...)
	return nil
}

func (s *memStorage) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.files[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), b...), nil
}

func (s *memStorage) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.files { // like FileStorage: a folder goes whole, a missing key is no error
		if k == key || strings.HasPrefix(k, key+"/") {
			delete(s.files, k)
		}
	}
	return nil
}

func (s *memStorage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

func (s *memStorage) List(_ context.Context, dir string, recursive bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for k := range s.files {
		rest, ok := strings.CutPrefix(k, dir+"/")
		if !ok {
			continue
		}
		if !recursive {
			rest, _, _ = strings.Cut(rest, "/")
		}
		if p := path.Join(dir, rest); !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fs.ErrNotExist
	}
	return out, nil
}

func (s *memStorage) Stat(_ context.Context, key string) (certmagic.KeyInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.files[key]; ok {
		return certmagic.KeyInfo{Key: key, Size: int64(len(b)), IsTerminal: true}, nil
	}
	for k := range s.files {
		if strings.HasPrefix(k, key+"/") {
			return certmagic.KeyInfo{Key: key}, nil
		}
	}
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

package tenant

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// provisioned is what one Provision call gave.
type provisioned struct {
	res   *Result
	certs map[string]*tls.Certificate
	roots *x509.CertPool
}

func testOptions(dir string, now time.Time) Options {
	return Options{Dir: dir, KeyType: KeyECDSAP256, KeyPool: 4, Now: func() time.Time { return now }}
}

func provision(t testing.TB, d Directory, o Options) provisioned {
	t.Helper()
	p := provisioned{certs: map[string]*tls.Certificate{}}
	res, err := Provision(d, o, func(host string, c *tls.Certificate) {
		if _, dup := p.certs[host]; dup {
			t.Errorf("add called twice for %s", host)
		}
		p.certs[host] = c
	})
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	// Provision leaves Leaf unset (see servedCert); the tests read the certificates through it.
	for _, c := range append(slices.Collect(maps.Values(p.certs)), res.Platform) {
		if c.Leaf == nil {
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				t.Fatalf("served certificate does not parse: %v", err)
			}
			c.Leaf = leaf
		}
	}
	p.res = res
	p.roots = x509.NewCertPool()
	p.roots.AddCert(res.CA)
	return p
}

func parseYAML(t testing.TB, y string) Directory {
	t.Helper()
	d, err := Parse([]byte(y))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

// testFiles writes a certificate chain (leaf + its own CA) and key for host under dir and returns
// the paths and the CA to verify against.
func testFiles(t testing.TB, dir, host string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "files test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "files.pem"), filepath.Join(dir, "files.key")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	mustWrite(t, certFile, chain)
	mustWrite(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return certFile, keyFile, roots
}

func mustWrite(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

const scenarioYAML = `
provider:
  edge_host: mra-host.sp.com
tenants:
  - domain: valid.example
    users: [bob]
  - domain: expired.example
    certificate: expired
  - domain: wrong.example
    certificate: wrong-name
  - domain: cnonly.example
    certificate: cn-only
  - domain: wild.example
    certificate: wildcard
  - domain: self.example
    certificate: self-signed
  - domain: missing.example
    certificate: missing
  - domain: multi.example
    srv:
      - target: expe1.multi.example
      - target: mra-host.sp.com
  - domain: files.example
    cert_file: CERT
    key_file: KEY
`

func scenarioDirectory(t testing.TB, dir string) (Directory, *x509.CertPool) {
	certFile, keyFile, roots := testFiles(t, dir, "mra-host.files.example")
	y := strings.NewReplacer("CERT", certFile, "KEY", keyFile).Replace(scenarioYAML)
	return parseYAML(t, y), roots
}

func TestProvisionScenarios(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	dir := t.TempDir()
	d, filesRoots := scenarioDirectory(t, dir)
	p := provision(t, d, testOptions(filepath.Join(dir, "data"), now))

	var (
		expired   x509.CertificateInvalidError
		hostname  x509.HostnameError
		authority x509.UnknownAuthorityError
	)
	tests := []struct {
		name    string
		host    string // the add key
		verify  string // DNSName to verify against
		roots   *x509.CertPool
		wantErr any // nil or a pointer to the error type x509.Verify must return
		sans    []string
		cn      string
	}{
		{"valid", "mra-host.valid.example", "mra-host.valid.example", nil, nil,
			[]string{"mra-host.valid.example", "valid.example"}, "mra-host.valid.example"},
		{"expired", "mra-host.expired.example", "mra-host.expired.example", nil, &expired,
			[]string{"mra-host.expired.example", "expired.example"}, "mra-host.expired.example"},
		{"wrong-name", "mra-host.wrong.example", "mra-host.wrong.example", nil, &hostname,
			[]string{"elsewhere.invalid"}, "elsewhere.invalid"},
		{"cn-only", "mra-host.cnonly.example", "mra-host.cnonly.example", nil, &hostname,
			nil, "mra-host.cnonly.example"},
		{"wildcard", "*.wild.example", "mra.wild.example", nil, nil,
			[]string{"*.wild.example", "wild.example"}, "*.wild.example"},
		{"wildcard provider host", "*.wild.example", "mra-host.wild.example", nil, nil,
			[]string{"*.wild.example", "wild.example"}, "*.wild.example"},
		{"self-signed", "mra-host.self.example", "mra-host.self.example", nil, &authority,
			[]string{"mra-host.self.example", "self.example"}, "mra-host.self.example"},
		{"multi in-domain target", "expe1.multi.example", "expe1.multi.example", nil, nil,
			[]string{"expe1.multi.example", "multi.example"}, "expe1.multi.example"},
		{"multi provider target", "mra-host.multi.example", "mra-host.multi.example", nil, nil,
			[]string{"mra-host.multi.example", "multi.example"}, "mra-host.multi.example"},
		{"files", "mra-host.files.example", "mra-host.files.example", filesRoots, nil,
			[]string{"mra-host.files.example"}, "mra-host.files.example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := p.certs[tc.host]
			if !ok {
				t.Fatalf("no certificate added for %s", tc.host)
			}
			if !slices.Equal(c.Leaf.DNSNames, tc.sans) || c.Leaf.Subject.CommonName != tc.cn {
				t.Errorf("names: CN %q SAN %q, want CN %q SAN %q", c.Leaf.Subject.CommonName, c.Leaf.DNSNames, tc.cn, tc.sans)
			}
			roots := tc.roots
			if roots == nil {
				roots = p.roots
			}
			inter := x509.NewCertPool()
			for _, der := range c.Certificate[1:] {
				ic, _ := x509.ParseCertificate(der)
				inter.AddCert(ic)
			}
			_, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: tc.verify, Roots: roots, Intermediates: inter, CurrentTime: now})
			switch want := tc.wantErr.(type) {
			case nil:
				if err != nil {
					t.Errorf("Verify: %v", err)
				}
			default:
				if !errors.As(err, want) {
					t.Errorf("Verify error %v (%T), want %T", err, err, want)
				}
			}
		})
	}

	t.Run("missing", func(t *testing.T) {
		for h := range p.certs {
			if strings.HasSuffix(h, "missing.example") {
				t.Errorf("a certificate was added for %s", h)
			}
		}
	})
	t.Run("cn-only has no SAN extension", func(t *testing.T) {
		for _, e := range p.certs["mra-host.cnonly.example"].Leaf.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
				t.Error("SAN extension present")
			}
		}
	})
	t.Run("expired ended yesterday", func(t *testing.T) {
		if got := p.certs["mra-host.expired.example"].Leaf.NotAfter; !got.Equal(now.Add(-24 * time.Hour)) {
			t.Errorf("NotAfter %v, want %v", got, now.Add(-24*time.Hour))
		}
		if !errors.As(expiredErr(p, now), &expired) || expired.Reason != x509.Expired {
			t.Errorf("reason %v, want Expired", expired.Reason)
		}
	})
	t.Run("self-signed is its own issuer and presents no CA", func(t *testing.T) {
		c := p.certs["mra-host.self.example"]
		if err := c.Leaf.CheckSignature(c.Leaf.SignatureAlgorithm, c.Leaf.RawTBSCertificate, c.Leaf.Signature); err != nil {
			t.Errorf("not self-signed: %v", err)
		}
		if string(c.Leaf.RawIssuer) != string(c.Leaf.RawSubject) || len(c.Certificate) != 1 {
			t.Errorf("chain length %d, want 1", len(c.Certificate))
		}
	})
	t.Run("platform", func(t *testing.T) {
		c := p.res.Platform
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "mra-host.sp.com", Roots: p.roots, CurrentTime: now}); err != nil {
			t.Errorf("platform: %v", err)
		}
		if c.Leaf.Subject.CommonName != "mra-host.sp.com" || !slices.Equal(c.Leaf.DNSNames, []string{"mra-host.sp.com"}) {
			t.Errorf("platform names: CN %q SAN %q", c.Leaf.Subject.CommonName, c.Leaf.DNSNames)
		}
	})
	t.Run("result", func(t *testing.T) {
		want := map[Scenario]int{Valid: 2, Expired: 1, WrongName: 1, CNOnly: 1, Wildcard: 1, SelfSigned: 1, Missing: 1, Files: 1}
		for _, sc := range Scenarios {
			if p.res.Counts[sc] != want[sc] {
				t.Errorf("Counts[%s] = %d, want %d", sc, p.res.Counts[sc], want[sc])
			}
		}
		if len(p.certs) != 10-1 { // valid, expired, wrong, cn-only, wildcard, self, multi x2, files
			t.Errorf("%d hosts added, want 9", len(p.certs))
		}
		if p.res.CAFile != filepath.Join(dir, "data", "ca.pem") {
			t.Errorf("CAFile %s", p.res.CAFile)
		}
		// The files scenario's leaf lasts a day: the earliest expiry, the expired one left out.
		if want := p.certs["mra-host.files.example"].Leaf.NotAfter; !p.res.Expiry.Equal(want) {
			t.Errorf("Expiry %v, want %v", p.res.Expiry, want)
		}
		if p.res.CA.Subject.CommonName != LocalCAName || !p.res.CA.IsCA {
			t.Errorf("CA %v", p.res.CA.Subject)
		}
		if _, ok := p.res.CA.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Errorf("CA key %T, want ECDSA", p.res.CA.PublicKey)
		}
	})
}

func expiredErr(p provisioned, now time.Time) error {
	_, err := p.certs["mra-host.expired.example"].Leaf.Verify(x509.VerifyOptions{
		DNSName: "mra-host.expired.example", Roots: p.roots, CurrentTime: now})
	return err
}

// TestLeafProfile checks what every issued leaf carries, for each key type.
func TestLeafProfile(t *testing.T) {
	now := time.Now()
	d := parseYAML(t, `
tenants:
  - domain: a.example
  - domain: b.example
    certificate: self-signed
  - domain: c.example
    certificate: expired
`)
	for _, kt := range KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			if kt == KeyRSA4096 && testing.Short() {
				t.Skip("rsa-4096 key generation is slow")
			}
			o := testOptions(t.TempDir(), now)
			o.KeyType, o.KeyPool = kt, 1
			p := provision(t, d, o)
			all := []*tls.Certificate{p.res.Platform}
			for _, c := range p.certs {
				all = append(all, c)
			}
			serials := map[string]bool{}
			for _, c := range all {
				l := c.Leaf
				if !slices.Contains(l.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(l.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
					t.Errorf("%s: EKUs %v, want serverAuth and clientAuth", l.Subject.CommonName, l.ExtKeyUsage)
				}
				wantKU := x509.KeyUsageDigitalSignature
				if kt.isRSA() {
					wantKU |= x509.KeyUsageKeyEncipherment
				}
				if l.KeyUsage != wantKU {
					t.Errorf("%s: KeyUsage %b, want %b", l.Subject.CommonName, l.KeyUsage, wantKU)
				}
				if l.IsCA || !l.BasicConstraintsValid {
					t.Errorf("%s: want CA:FALSE", l.Subject.CommonName)
				}
				if l.SerialNumber.Sign() <= 0 || l.SerialNumber.BitLen() > 128 || serials[l.SerialNumber.String()] {
					t.Errorf("%s: serial %v", l.Subject.CommonName, l.SerialNumber)
				}
				serials[l.SerialNumber.String()] = true
				if got := l.NotAfter.Sub(l.NotBefore); got != 365*24*time.Hour {
					t.Errorf("%s: lifetime %v", l.Subject.CommonName, got)
				}
				if !kt.holds(c.PrivateKey.(crypto.Signer)) {
					t.Errorf("%s: key %T is not %s", l.Subject.CommonName, c.PrivateKey, kt)
				}
				if l.Subject.CommonName != "mra.b.example" {
					if len(c.Certificate) != 2 || string(c.Certificate[1]) != string(p.res.CA.Raw) {
						t.Errorf("%s: chain is not leaf + CA", l.Subject.CommonName)
					}
				}
			}
			if nb := p.certs["mra.a.example"].Leaf.NotBefore; !nb.Equal(now.Add(-time.Hour).Truncate(time.Second)) {
				t.Errorf("valid NotBefore %v, want an hour before %v", nb, now)
			}
			handshake(t, p, "mra.a.example")
		})
	}
}

// handshake serves p's certificates on 127.0.0.1 and connects as a client trusting the local CA
// with SNI host, proving the tls.Certificate values are complete (key matches, chain sent).
func handshake(t *testing.T, p provisioned, host string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		srv := tls.Server(conn, &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := p.certs[h.ServerName]; ok {
				return c, nil
			}
			return p.res.Platform, nil
		}})
		srv.Handshake()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: host, RootCAs: p.roots})
	if err != nil {
		t.Fatalf("handshake with %s: %v", host, err)
	}
	conn.Close()
	wg.Wait()
}

func TestProvisionFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	provision(t, parseYAML(t, "tenants: [{domain: a.example}]"), testOptions(dir, time.Now()))
	checkMode := func(path string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	for _, d := range []string{"", "keys", "keys/ecdsa-p256", "certs", "certs/ecdsa-p256"} {
		checkMode(filepath.Join(dir, d), 0o700)
	}
	checkMode(filepath.Join(dir, "ca.key"), 0o600)
	keys, _ := filepath.Glob(filepath.Join(dir, "keys", "ecdsa-p256", "*.key"))
	if len(keys) != 4 {
		t.Errorf("%d pool keys, want 4", len(keys))
	}
	for i, k := range keys {
		if want := fmt.Sprintf("%03d.key", i); filepath.Base(k) != want {
			t.Errorf("pool key file %s, want %s", k, want)
		}
		checkMode(k, 0o600)
	}
}

// snapshot maps host to serial number.
func (p provisioned) serials() map[string]string {
	m := map[string]string{"(platform)": p.res.Platform.Leaf.SerialNumber.String()}
	for h, c := range p.certs {
		m[h] = c.Leaf.SerialNumber.String()
	}
	return m
}

func modTimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	m := map[string]time.Time{}
	filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			fi, _ := e.Info()
			m[path] = fi.ModTime()
		}
		return nil
	})
	return m
}

func TestProvisionReuse(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	d, _ := scenarioDirectory(t, dir)
	data := filepath.Join(dir, "data")
	first := provision(t, d, testOptions(data, now))
	if first.res.Issued == 0 || first.res.Reused != 0 {
		t.Fatalf("first run: issued %d reused %d", first.res.Issued, first.res.Reused)
	}
	before := modTimes(t, data)

	second := provision(t, d, testOptions(data, now.Add(time.Hour)))
	if second.res.Issued != 0 {
		t.Errorf("second run issued %d certificates, want 0", second.res.Issued)
	}
	if want := first.res.Issued - 1; second.res.Reused != want { // the CA is not counted as reused
		t.Errorf("second run reused %d, want %d", second.res.Reused, want)
	}
	if !mapsEqual(first.serials(), second.serials()) {
		t.Errorf("serials changed:\n%v\n%v", first.serials(), second.serials())
	}
	if after := modTimes(t, data); !mapsEqual(before, after) {
		t.Errorf("files were rewritten:\nbefore %v\nafter  %v", before, after)
	}
	if string(first.res.CA.Raw) != string(second.res.CA.Raw) {
		t.Error("CA changed")
	}
	// Shared key objects: every ECDSA leaf's key is one of the 4 pool keys.
	keys := map[crypto.PrivateKey]bool{}
	for h, c := range second.certs {
		if h != "mra-host.files.example" {
			keys[c.PrivateKey] = true
		}
	}
	if len(keys) > 4 {
		t.Errorf("%d distinct key objects, want at most the pool's 4", len(keys))
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestProvisionRegenerates(t *testing.T) {
	now := time.Now()
	d := parseYAML(t, `
tenants:
  - domain: a.example
  - domain: b.example
  - domain: c.example
    certificate: expired
`)
	shardPath := func(dir, domain string) string {
		return filepath.Join(dir, "certs", "ecdsa-p256", shardFile(shardOf(domain)))
	}
	tests := []struct {
		name       string
		damage     func(t *testing.T, dir string)
		at         time.Time
		reissued   []string // hosts expected to get new serials
		caIssued   bool
		wantWarned bool
	}{
		{"untouched", func(*testing.T, string) {}, now, nil, false, false},
		{"truncated bundle", func(t *testing.T, dir string) {
			p := shardPath(dir, "a.example")
			b, _ := os.ReadFile(p)
			mustWrite(t, p, b[:len(b)*2/3])
		}, now, []string{"mra.a.example"}, false, true},
		{"garbage in a certificate", func(t *testing.T, dir string) {
			p := shardPath(dir, "a.example")
			b, _ := os.ReadFile(p)
			s := string(b)
			i := strings.Index(s, "-----BEGIN CERTIFICATE-----\n") + 40
			mustWrite(t, p, []byte(s[:i]+"!!!!"+s[i+4:]))
		}, now, []string{"mra.a.example"}, false, true},
		{"random bytes", func(t *testing.T, dir string) {
			junk := make([]byte, 3000)
			rand.Read(junk)
			mustWrite(t, shardPath(dir, "a.example"), junk)
		}, now, []string{"mra.a.example"}, false, true},
		{"empty file", func(t *testing.T, dir string) {
			mustWrite(t, shardPath(dir, "a.example"), nil)
		}, now, []string{"mra.a.example"}, false, true},
		{"platform bundle removed", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "certs", "ecdsa-p256", "platform.pem"))
		}, now, []string{"(platform)"}, false, false},
		{"expiring within a day", func(*testing.T, string) {}, now.Add(365*24*time.Hour - 24*time.Hour),
			[]string{"(platform)", "mra.a.example", "mra.b.example"}, false, false},
		{"pool key damaged", func(t *testing.T, dir string) {
			mustWrite(t, filepath.Join(dir, "keys", "ecdsa-p256", "000.key"), []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"))
		}, now, []string{"(platform)", "mra.a.example"}, false, true},
		{"CA certificate lost, key kept", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "ca.pem"))
		}, now, nil, true, false},
		{"CA replaced", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "ca.pem"))
			os.Remove(filepath.Join(dir, "ca.key"))
		}, now, []string{"(platform)", "mra.a.example", "mra.b.example", "mra.c.example"}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			first := provision(t, d, testOptions(dir, now))
			tc.damage(t, dir)
			os.WriteFile(filepath.Join(dir, "certs", "ecdsa-p256", ".00.pem"+tempMarker+"123"), []byte("partial"), 0o600)

			core, logs := observer.New(zapcore.DebugLevel)
			o := testOptions(dir, tc.at)
			o.Logger = zap.New(core)
			second := provision(t, d, o)

			a, b := first.serials(), second.serials()
			var changed []string
			for h := range a {
				if a[h] != b[h] {
					changed = append(changed, h)
				}
			}
			slices.Sort(changed)
			if !slices.Equal(changed, tc.reissued) {
				t.Errorf("reissued %v, want %v", changed, tc.reissued)
			}
			wantIssued := len(tc.reissued)
			if tc.caIssued {
				wantIssued++
			}
			if second.res.Issued != wantIssued {
				t.Errorf("Issued %d, want %d", second.res.Issued, wantIssued)
			}
			// The repaired files load cleanly: a third run issues nothing.
			o.Logger = nil
			if third := provision(t, d, o); third.res.Issued != 0 {
				t.Errorf("third run issued %d", third.res.Issued)
			}
			if _, err := os.Stat(filepath.Join(dir, "certs", "ecdsa-p256", ".00.pem"+tempMarker+"123")); !os.IsNotExist(err) {
				t.Error("stale temporary file not removed")
			}
			if warned := logs.FilterLevelExact(zapcore.WarnLevel).Len() > 0; warned != tc.wantWarned {
				t.Errorf("warned %v, want %v: %v", warned, tc.wantWarned, logs.All())
			}
			for _, e := range logs.All() {
				line := e.Message + " " + strings.Join(fieldStrings(e.Context), " ")
				if strings.Contains(line, "c2VjcmV0") || strings.Contains(line, "PRIVATE KEY-----") {
					t.Errorf("log line shows key material: %s", line)
				}
			}
		})
	}
}

func fieldStrings(fs []zapcore.Field) []string {
	var out []string
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fs {
		f.AddTo(enc)
	}
	for k, v := range enc.Fields {
		out = append(out, k+"="+strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(toString(v), "\n", " "), "\t", " ")))
	}
	return out
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if e, ok := v.(error); ok {
		return e.Error()
	}
	return ""
}

func TestProvisionCAErrors(t *testing.T) {
	d := parseYAML(t, "tenants: [{domain: a.example}]")
	tests := []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"key lost", func(dir string) { os.Remove(filepath.Join(dir, "ca.key")) }, "ca.key is missing"},
		{"key damaged", func(dir string) { os.WriteFile(filepath.Join(dir, "ca.key"), []byte("junk"), 0o600) }, "ca.key holds no PEM data"},
		{"pair mismatch", func(dir string) {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			writeKey(filepath.Join(dir, "ca.key"), k)
		}, "do not belong together"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			provision(t, d, testOptions(dir, time.Now()))
			tc.damage(dir)
			_, err := Provision(d, testOptions(dir, time.Now()), func(string, *tls.Certificate) {})
			if !errors.Is(err, ErrLocalCA) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrLocalCA saying %q", err, tc.want)
			}
		})
	}
}

func TestProvisionOptions(t *testing.T) {
	d := parseYAML(t, "tenants: [{domain: a.example}]")
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"bad key type", Options{KeyType: "dsa-1024"}, ErrBadKeyType},
		{"negative pool", Options{KeyPool: -1}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Dir = t.TempDir()
			_, err := Provision(d, tc.o, func(string, *tls.Certificate) {})
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		o, err := Options{}.resolve()
		if err != nil || o.Dir != "edgesim-data" || o.KeyType != KeyRSA2048 || o.KeyPool != 16 || o.Now == nil || o.Logger == nil {
			t.Errorf("resolve() = %+v, %v", o, err)
		}
		o, _ = Options{KeyType: "ECDSA-P384"}.resolve()
		if o.KeyType != KeyECDSAP384 || o.KeyPool != 64 {
			t.Errorf("ecdsa defaults: %s pool %d", o.KeyType, o.KeyPool)
		}
	})
}

func TestProvisionHostClash(t *testing.T) {
	d := parseYAML(t, `
tenants:
  - domain: a.example
    edge_host: mra.sub.a.example
  - domain: sub.a.example
`)
	_, err := Provision(d, testOptions(t.TempDir(), time.Now()), func(string, *tls.Certificate) {})
	if !errors.Is(err, ErrHostClash) || !strings.Contains(err.Error(), "mra.sub.a.example") {
		t.Errorf("err %v, want ErrHostClash naming mra.sub.a.example", err)
	}
}

func TestProvisionSynthetic(t *testing.T) {
	n := 600
	d, err := Synthetic(n, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := provision(t, d, testOptions(dir, time.Now()))
	if len(p.certs) != n || p.res.Counts[Valid] != n {
		t.Fatalf("%d hosts, Counts %v", len(p.certs), p.res.Counts)
	}
	// Tenant K (1-based) is the (K-1)-th in Directory order and uses pool key (K-1) mod 4.
	k1, k5, k2 := p.certs["mra.tenant-1.example"].PrivateKey, p.certs["mra.tenant-5.example"].PrivateKey, p.certs["mra.tenant-2.example"].PrivateKey
	if k1 != k5 || k1 == k2 {
		t.Error("tenants 1 and 5 should share pool key 0, tenant 2 should not")
	}
	for _, h := range []string{"mra.tenant-1.example", "mra.tenant-600.example"} {
		if _, err := p.certs[h].Leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: p.roots}); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}

	// Fewer tenants: bundles of the dropped ones go away, the rest are reused.
	small, _ := Synthetic(3, 1)
	q := provision(t, small, testOptions(dir, time.Now()))
	if q.res.Issued != 0 || len(q.certs) != 3 {
		t.Errorf("issued %d, %d hosts", q.res.Issued, len(q.certs))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "certs", "ecdsa-p256", "*.pem"))
	if len(files) > 4 {
		t.Errorf("%d bundle files left for 3 tenants: %v", len(files), files)
	}
}

// rawDirectory is a Directory whose tenants skipped Config's validation.
type rawDirectory []Tenant

func (d rawDirectory) Provider() Provider {
	return Provider{EdgeHost: DefaultProviderEdgeHost, Domain: "sp.example"}
}
func (d rawDirectory) Len() int                      { return len(d) }
func (d rawDirectory) Lookup(string) (*Tenant, bool) { return nil, false }
func (d rawDirectory) Each(fn func(*Tenant) bool) {
	for i := range d {
		if !fn(&d[i]) {
			return
		}
	}
}

func TestProvisionUnvalidatedDirectory(t *testing.T) {
	t.Run("unset scenario is valid, nil add", func(t *testing.T) {
		res, err := Provision(rawDirectory{{Domain: "a.example"}}, testOptions(t.TempDir(), time.Now()), nil)
		if err != nil || res.Counts[Valid] != 1 || res.Issued != 3 {
			t.Fatalf("res %+v, err %v", res, err)
		}
	})
	t.Run("unknown scenario", func(t *testing.T) {
		_, err := Provision(rawDirectory{{Domain: "a.example", Certificate: "bogus"}}, testOptions(t.TempDir(), time.Now()), nil)
		if !errors.Is(err, ErrBadScenario) {
			t.Fatalf("err %v, want ErrBadScenario", err)
		}
	})
}

package domains

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/caddyserver/certmagic"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestCSROptions(t *testing.T) {
	e := newEnv(t, "", nil)
	tests := []struct {
		name     string
		opts     CSROptions
		key      string
		bits     int
		sig      x509.SignatureAlgorithm
		sans     []string
		subject  string
		warnings bool
	}{
		{"defaults", CSROptions{}, "rsa", 2048, x509.SHA256WithRSA, []string{"mra.a.example", "a.example"}, "CN=mra.a.example", false},
		{"rsa-1024 sha512", CSROptions{Key: "RSA-1024", Digest: "sha512"}, "rsa", 1024, x509.SHA512WithRSA, []string{"mra.a.example", "a.example"}, "CN=mra.a.example", true},
		{"ecdsa-p256 sha384 collab-edge", CSROptions{Key: "ecdsa-p256", Digest: "sha384", SANFormat: "collab-edge"}, "ecdsa", 256, x509.ECDSAWithSHA384, []string{"mra.a.example", "collab-edge.a.example"}, "CN=mra.a.example", false},
		{"ecdsa-p384 subject extra sans", CSROptions{Key: "ecdsa-p384", Subject: Subject{CN: "edge.a.example", O: "Example Ltd", OU: "UC", L: "Leeds", ST: "Yorkshire", C: "gb"}, SANs: []string{"*.a.example", "MRA.a.example", "chat.a.example."}},
			"ecdsa", 384, x509.ECDSAWithSHA256, []string{"mra.a.example", "a.example", "*.a.example", "chat.a.example"}, "CN=edge.a.example,OU=UC,O=Example Ltd,L=Leeds,ST=Yorkshire,C=GB", false},
	}
	if !testing.Short() {
		tests = append(tests, struct {
			name     string
			opts     CSROptions
			key      string
			bits     int
			sig      x509.SignatureAlgorithm
			sans     []string
			subject  string
			warnings bool
		}{"rsa-4096", CSROptions{Key: "rsa-4096"}, "rsa", 4096, x509.SHA256WithRSA, []string{"mra.a.example", "a.example"}, "CN=mra.a.example", false})
	}
	e.ok(t, "POST", "/api/v1/domains", map[string]string{"domain": "a.example"}, 201, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in CSRInfo
			e.ok(t, "POST", "/api/v1/domains/a.example/csr", tt.opts, 201, &in)
			defer e.ok(t, "DELETE", "/api/v1/domains/a.example/csr", nil, 200, nil)
			b, _ := pem.Decode([]byte(in.CSR))
			req, err := x509.ParseCertificateRequest(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := req.CheckSignature(); err != nil {
				t.Fatal(err)
			}
			switch k := req.PublicKey.(type) {
			case *rsa.PublicKey:
				if tt.key != "rsa" || k.N.BitLen() != tt.bits {
					t.Fatalf("key RSA %d, want %s %d", k.N.BitLen(), tt.key, tt.bits)
				}
			case *ecdsa.PublicKey:
				if tt.key != "ecdsa" || k.Curve.Params().BitSize != tt.bits {
					t.Fatalf("key ECDSA %d, want %s %d", k.Curve.Params().BitSize, tt.key, tt.bits)
				}
			}
			if req.SignatureAlgorithm != tt.sig || !slices.Equal(req.DNSNames, tt.sans) || req.Subject.String() != tt.subject {
				t.Fatalf("CSR %v %v %q, want %v %v %q", req.SignatureAlgorithm, req.DNSNames, req.Subject, tt.sig, tt.sans, tt.subject)
			}
			if (len(in.Warnings) > 0) != tt.warnings || tt.warnings && !strings.Contains(in.Warnings[0], "1024-bit RSA key is weak") {
				t.Fatalf("warnings %q", in.Warnings)
			}
			if in.Key != fmt.Sprintf("%s-%s%d", tt.key, map[string]string{"rsa": "", "ecdsa": "p"}[tt.key], tt.bits) {
				t.Fatalf("key named %q", in.Key)
			}
		})
	}
	assertNoKeys(t, e, nil)
}

// state is everything a user can see of a Manager, for comparing before and after a restart.
type state struct {
	List    []Info
	Details map[string]Details
	PEM     map[string]string
	CSR     map[string]CSRInfo
	Hosts   map[string]string // SNI host -> SHA-256 of the leaf installed
}

func snapshot(t *testing.T, e *env) state {
	t.Helper()
	s := state{List: e.m.List(), Details: map[string]Details{}, PEM: map[string]string{}, CSR: map[string]CSRInfo{}, Hosts: map[string]string{}}
	for _, in := range s.List {
		if d, err := e.m.Show(in.Domain); err == nil {
			s.Details[in.Domain] = d
			p, _ := e.m.ShowPEM(in.Domain)
			s.PEM[in.Domain] = string(p)
		}
		if c, err := e.m.PendingCSR(in.Domain); err == nil {
			s.CSR[in.Domain] = c
		}
	}
	for _, h := range e.sni.hosts() {
		s.Hosts[h] = fingerprint(e.sni.leaf(h).Raw)
	}
	return s
}

// TestRestart: domains, certificates and pending CSRs are the same after a new Manager loads the
// same storage, and the CSR kept across the restart still takes its certificate.
func TestRestart(t *testing.T) {
	e := newEnv(t, "", nil)
	ca := newTestCA(t)
	for _, d := range []string{"up.example", "csr.example", "none.example", "own.example", "multi.example"} {
		if _, err := e.m.Add(t.Context(), d); err != nil {
			t.Fatal(err)
		}
	}
	in, err := e.m.CSR(t.Context(), "up.example", CSROptions{Key: "ecdsa-p256"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Upload(t.Context(), "up.example", ca.signCSR(t, []byte(in.CSR), nil), nil); err != nil {
		t.Fatal(err)
	}
	pending, err := e.m.CSR(t.Context(), "csr.example", CSROptions{Key: "ecdsa-p384", Digest: "sha384", SANFormat: "collab-edge"})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := ca.issue(t, []string{"mra.own.example", "own.example"}, nil)
	if _, err := e.m.Upload(t.Context(), "own.example", cert, key); err != nil {
		t.Fatal(err)
	}
	cert, key = ca.issue(t, []string{"mra.multi.example", "expe2.multi.example", "multi.example"}, nil)
	if _, err := e.m.Upload(t.Context(), "multi.example", cert, key); err != nil {
		t.Fatal(err)
	}
	// a pending CSR beside a loaded certificate (renewal)
	if _, err := e.m.CSR(t.Context(), "own.example", CSROptions{Key: "ecdsa-p256"}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, e)
	if len(before.Hosts) != 4 || len(before.CSR) != 2 || len(before.Details) != 3 {
		t.Fatalf("before: %d hosts, %d CSRs, %d certificates", len(before.Hosts), len(before.CSR), len(before.Details))
	}

	e2 := newEnv(t, e.dir, nil)
	after := snapshot(t, e2)
	if !reflect.DeepEqual(before, after) {
		b, _ := json.MarshalIndent(before, "", " ")
		a, _ := json.MarshalIndent(after, "", " ")
		t.Fatalf("state differs after a restart\nbefore: %s\nafter: %s", b, a)
	}
	// the restored CSR's key is the one the certificate needs
	if _, err := e2.m.Upload(t.Context(), "csr.example", ca.signCSR(t, []byte(pending.CSR), nil), nil); err != nil {
		t.Fatal(err)
	}
	handshakeWith(t, e2.sni, "mra.csr.example", ca.pool())
	if strings.Contains(e2.logs.String(), "repair") {
		t.Fatalf("a clean restart repaired something:\n%s", e2.logs.String())
	}
	assertNoKeys(t, e2, [][]byte{key})
}

// TestLoadRepairs: what an interrupted write or a damaged file leaves behind never blocks the
// start, and is finished or cleaned up.
func TestLoadRepairs(t *testing.T) {
	e := newEnv(t, "", nil)
	ca := newTestCA(t)
	ctx := t.Context()
	for _, d := range []string{"good.example", "corrupt.example", "upload.example", "early.example", "consumed.example", "orphan.example", "badcert.example"} {
		if _, err := e.m.Add(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	oldCert, oldKey := ca.issue(t, []string{"mra.good.example"}, nil)
	if _, err := e.m.Upload(ctx, "good.example", oldCert, oldKey); err != nil {
		t.Fatal(err)
	}
	store := func(d, name string, b []byte) {
		t.Helper()
		if err := e.store.Store(ctx, fileKey(d, name), b); err != nil {
			t.Fatal(err)
		}
	}
	// corrupt.example: damaged metadata
	store("corrupt.example", metaFile, []byte("{not json"))
	// upload.example: stopped after cert.pem (key.next.pem holds its key, key.pem not written yet)
	newCert, newKey := ca.issue(t, []string{"mra.upload.example"}, nil)
	store("upload.example", nextKeyFile, newKey)
	store("upload.example", certFile, newCert)
	// early.example: had a certificate; a new upload stopped after key.next.pem
	c1, k1 := ca.issue(t, []string{"mra.early.example"}, nil)
	if _, err := e.m.Upload(ctx, "early.example", c1, k1); err != nil {
		t.Fatal(err)
	}
	_, k2 := ca.issue(t, []string{"mra.early.example"}, nil)
	store("early.example", nextKeyFile, k2)
	// consumed.example: a CSR, then an upload that stopped after cert.pem
	in, err := e.m.CSR(ctx, "consumed.example", CSROptions{Key: "ecdsa-p256"})
	if err != nil {
		t.Fatal(err)
	}
	// as the upload writes: the CSR's key to key.next.pem, then cert.pem; csr.key still there
	csrKey, ok := e.m.domains["consumed.example"]
	if !ok || csrKey.csr == nil {
		t.Fatal("no pending CSR for consumed.example")
	}
	ckp, err := keyPEM(csrKey.csr.key)
	if err != nil {
		t.Fatal(err)
	}
	store("consumed.example", nextKeyFile, ckp)
	store("consumed.example", certFile, ca.signCSR(t, []byte(in.CSR), nil))
	// orphan.example: a CSR that stopped after csr.key
	_, k3 := ca.issue(t, []string{"x.example"}, nil)
	store("orphan.example", csrKeyFile, k3)
	// badcert.example: a damaged cert.pem
	store("badcert.example", certFile, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	// half-added.example: files without metadata (an interrupted add or delete)
	store("half-added.example", certFile, oldCert)

	e2 := newEnv(t, e.dir, nil)
	got := map[string]Info{}
	for _, in := range e2.m.List() {
		got[in.Domain] = in
	}
	if _, ok := got["corrupt.example"]; ok || len(got) != 6 {
		t.Fatalf("loaded %v", got)
	}
	if !strings.Contains(e2.logs.String(), "corrupt.example") || !strings.Contains(e2.logs.String(), "damaged") {
		t.Fatalf("the corrupt domain was not logged:\n%s", e2.logs.String())
	}
	if got["upload.example"].Source != SourceUpload || e2.sni.leaf("mra.upload.example") == nil {
		t.Fatalf("interrupted upload not finished: %+v", got["upload.example"])
	}
	if l := e2.sni.leaf("mra.early.example"); l == nil || !slices.Equal(l.Raw, mustParse(t, c1).Raw) {
		t.Fatal("an upload stopped before cert.pem lost the previous certificate")
	}
	if in := got["consumed.example"]; in.Source != SourceUpload || in.CSRPending {
		t.Fatalf("consumed CSR: %+v", in)
	}
	if in := got["orphan.example"]; in.CSRPending || in.Source != SourceNone {
		t.Fatalf("orphan: %+v", in)
	}
	if in := got["badcert.example"]; in.Source != SourceNone {
		t.Fatalf("badcert: %+v", in)
	}
	for _, k := range []string{fileKey("upload.example", nextKeyFile), fileKey("early.example", nextKeyFile),
		fileKey("consumed.example", csrKeyFile), fileKey("consumed.example", csrFile), fileKey("orphan.example", csrKeyFile), prefix("half-added.example")} {
		if e2.store.Exists(ctx, k) {
			t.Errorf("%s left behind", k)
		}
	}
	// Adding the damaged domain again is refused: it would delete what is stored for it.
	if _, err := e2.m.Add(ctx, "corrupt.example"); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "could not be read") {
		t.Fatalf("re-adding a damaged domain: %v", err)
	}
	if !e2.store.Exists(ctx, metaKey("corrupt.example")) {
		t.Fatal("the damaged domain's files were removed")
	}
	// a third start finds nothing more to repair, and the same state
	e3 := newEnv(t, e.dir, nil)
	if strings.Contains(e3.logs.String(), "repairing") || strings.Contains(e3.logs.String(), "finishing") {
		t.Fatalf("repairs did not stick:\n%s", e3.logs.String())
	}
	if a, b := snapshot(t, e2), snapshot(t, e3); !reflect.DeepEqual(a, b) {
		t.Fatal("the state changed between the second and third start")
	}
	assertNoKeys(t, e2, [][]byte{newKey, k1, k2, k3})
}

func TestKeyFileModes(t *testing.T) {
	e := newEnv(t, "", nil)
	ca := newTestCA(t)
	ctx := t.Context()
	for _, d := range []string{"a.example", "b.example"} {
		if _, err := e.m.Add(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	cert, key := ca.issue(t, []string{"mra.a.example"}, nil)
	if _, err := e.m.Upload(ctx, "a.example", cert, key); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.CSR(ctx, "b.example", CSROptions{Key: "ecdsa-p256"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{fileKey("a.example", keyFile), fileKey("b.example", csrKeyFile)} {
		fi, err := os.Stat(e.store.Filename(f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
		for dir := filepath.Dir(e.store.Filename(f)); dir != filepath.Clean(e.dir); dir = filepath.Dir(dir) {
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("folder %s has mode %v, want 0700", dir, fi.Mode().Perm())
			}
		}
	}
}

// TestJabberSRVName: an SRVName otherName _collab-edge._tls.<domain> satisfies Jabber's check.
func TestJabberSRVName(t *testing.T) {
	e := newEnv(t, "", nil)
	ca := newTestCA(t)
	if _, err := e.m.Add(t.Context(), "srv.example"); err != nil {
		t.Fatal(err)
	}
	cert, key := ca.issue(t, []string{"mra.srv.example"}, func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{{Id: oidSAN, Value: sanWithSRVName(t, "mra.srv.example", "_collab-edge._tls.srv.example")}}
	})
	d, err := e.m.Upload(t.Context(), "srv.example", cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Warnings) != 0 || !slices.Contains(d.SANs, "SRVName:_collab-edge._tls.srv.example") {
		t.Fatalf("SANs %v, warnings %v", d.SANs, d.Warnings)
	}
}

// sanWithSRVName encodes a SubjectAltName with a dNSName and an SRVName otherName.
func sanWithSRVName(t *testing.T, dnsName, srv string) []byte {
	t.Helper()
	ia5, err := asn1.MarshalWithParams(srv, "ia5")
	if err != nil {
		t.Fatal(err)
	}
	oid, _ := asn1.Marshal(oidSRVName)
	val, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: ia5})
	other, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, val...)})
	dns, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(dnsName)})
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(dns, other...)})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// TestConcurrent runs operations on many domains at once (meaningful under -race).
func TestConcurrent(t *testing.T) {
	e := newEnv(t, "", nil)
	ca := newTestCA(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := fmt.Sprintf("t%d.example", i)
			if _, err := e.m.Add(ctx, d); err != nil {
				t.Error(err)
				return
			}
			in, err := e.m.CSR(ctx, d, CSROptions{Key: "ecdsa-p256"})
			if err != nil {
				t.Error(err)
				return
			}
			_ = e.m.List()
			if _, err := e.m.CSR(ctx, d, CSROptions{Key: "ecdsa-p256"}); err == nil {
				t.Error("a second CSR was accepted")
			}
			if _, err := e.m.Upload(ctx, d, ca.signCSR(t, []byte(in.CSR), nil), nil); err != nil {
				t.Error(err)
			}
			if _, err := e.m.Show(d); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				if err := e.m.Delete(ctx, d); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(e.m.List()); n != 4 || len(e.sni.hosts()) != 4 {
		t.Fatalf("%d domains, %d hosts left; want 4 and 4", n, len(e.sni.hosts()))
	}
}

// With the roots clients trust configured, a self-signed upload and a chain without its
// intermediate are accepted with a warning saying clients will refuse them.
func TestTrustWarnings(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	m, err := New(Config{Storage: &certmagic.FileStorage{Path: t.TempDir()}, HostsFor: testHosts, Roots: ca.pool})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := m.Add(ctx, "example.com"); err != nil {
		t.Fatal(err)
	}
	good, goodKey := ca.issue(t, []string{"mra.example.com", "example.com"}, nil)
	d, err := m.Upload(ctx, "example.com", good, goodKey)
	if err != nil || len(d.Warnings) != 0 {
		t.Fatalf("a certificate from a trusted CA: %v, warnings %v", err, d.Warnings)
	}
	foreign, foreignKey := other.issue(t, []string{"mra.example.com", "example.com"}, nil)
	leafOnly := foreign[:bytes.Index(foreign, []byte("-----END CERTIFICATE-----"))+len("-----END CERTIFICATE-----\n")]
	d, err = m.Upload(ctx, "example.com", leafOnly, foreignKey)
	if err != nil || !strings.Contains(strings.Join(d.Warnings, " "), "will not trust the chain") {
		t.Fatalf("a chain to an unknown root: %v, warnings %v", err, d.Warnings)
	}
}

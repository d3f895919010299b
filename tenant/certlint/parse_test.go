package certlint

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// keyPEM returns the leaves' shared RSA key as a PKCS#8 PEM block.
func keyPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(testKey(t, "rsa2048", ""))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestParseChain(t *testing.T) {
	p := newPKI(t)
	leaf := issue(t, spec{cn: "mra.example.com", dns: []string{"mra.example.com"}, parent: p.inter})
	key := keyPEM(t)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(testKey(t, "rsa2048", ""))
	csr, err := x509.CreateCertificateRequest(nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, testKey(t, "p256", ""))
	if err != nil {
		t.Fatal(err)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	badBase64 := []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all!!\n-----END CERTIFICATE-----\n")
	garbageCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("\x30\x03\x02\x01\x01 garbage")})

	tests := []struct {
		name    string
		data    []byte
		want    []string // subjects CNs, leaf first
		wantErr error
		errHas  string
	}{
		{name: "PEM chain", data: cat(leaf.pem(), p.inter.pem()), want: []string{"mra.example.com", "Test Issuing CA"}},
		{name: "PEM with text around", data: cat([]byte("subject=CN = mra\nissuer=...\n"), leaf.pem(), []byte("trailing notes\n")), want: []string{"mra.example.com"}},
		{name: "PEM key first, then certificate", data: cat(key, leaf.pem()), want: []string{"mra.example.com"}},
		{name: "DER", data: leaf.der, want: []string{"mra.example.com"}},
		{name: "concatenated DER", data: cat(leaf.der, p.inter.der), want: []string{"mra.example.com", "Test Issuing CA"}},
		{name: "empty", data: []byte(" \n"), wantErr: ErrEmpty, errHas: "empty"},
		{name: "PEM private key only", data: key, wantErr: ErrPrivateKeyOnly, errHas: "holds a private key and no certificate"},
		{name: "DER private key", data: keyDER, wantErr: ErrPrivateKeyOnly, errHas: "DER private key"},
		{name: "CSR", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), wantErr: ErrNoCertificate, errHas: "signing request"},
		{name: "other PEM blocks", data: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), wantErr: ErrNoCertificate, errHas: "(PUBLIC KEY) but no '-----BEGIN CERTIFICATE-----' block"},
		{name: "text", data: []byte("hello, this is not a certificate\n"), wantErr: ErrNoCertificate, errHas: "not PEM"},
		{name: "garbage bytes", data: []byte{0x30, 0x82, 0xff, 0x00, 0x01}, wantErr: ErrBadCertificate, errHas: "neither PEM"},
		{name: "garbage in a CERTIFICATE block", data: garbageCert, wantErr: ErrBadCertificate, errHas: "PEM block 1 (CERTIFICATE) is not a valid X.509 certificate"},
		{name: "bad base64", data: badBase64, wantErr: ErrBadPEM, errHas: "the first block cannot be decoded"},
		{name: "good then damaged block", data: cat(leaf.pem(), badBase64), wantErr: ErrBadPEM, errHas: "a block after the certificates"},
		{name: "missing END line", data: []byte("-----BEGIN CERTIFICATE-----\nMIIB\n"), wantErr: ErrBadPEM},
	}
	keyBody := keyBodyLines(key)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := ParseChain(tt.data)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errHas) {
					t.Errorf("error %q lacks %q", err, tt.errHas)
				}
				for _, l := range keyBody {
					if strings.Contains(err.Error(), l) {
						t.Errorf("error echoes the private key: %q", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range certs {
				got = append(got, c.Subject.CommonName)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// keyBodyLines returns the base64 lines of a PEM key, to look for in outputs.
func keyBodyLines(key []byte) []string {
	var out []string
	for _, l := range strings.Split(string(key), "\n") {
		if len(l) > 20 && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

func FuzzParseChain(f *testing.F) {
	p := newPKI(f)
	leaf := issue(f, spec{cn: "mra.example.com", dns: []string{"mra.example.com", "*.example.com"}, parent: p.inter,
		others: []otherName{xmppAddr("example.com"), srvName("_collab-edge._tls.example.com")}})
	f.Add(append(leaf.pem(), p.inter.pem()...))
	f.Add(leaf.der)
	f.Add(keyPEM(f))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Add([]byte{})
	if b, err := os.ReadFile(malformedOtherNamePath); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseChain(data)
		if err != nil {
			if certs != nil {
				t.Fatalf("certificates with an error: %v", err)
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
		for _, role := range Roles {
			for _, r := range Lint(certs, Options{Role: role, Roots: p.roots, Now: testNow, Host: "example.com", Domains: []string{"example.com"}}) {
				if r.Name == "" || r.Reason == "" {
					t.Fatalf("rule without name or reason: %+v", r)
				}
			}
		}
	})
}

func TestParseChainLintsGenerated(t *testing.T) {
	// A round trip: what ParseChain reads, Lint checks like the original.
	p := newPKI(t)
	leaf := issue(t, spec{cn: "mra.example.com", dns: []string{"mra.example.com"}, eku: bothEKU, parent: p.inter})
	certs, err := ParseChain(append(leaf.pem(), p.inter.pem()...))
	if err != nil {
		t.Fatal(err)
	}
	if f := Failed(Lint(certs, Options{Roots: p.roots, Now: testNow.Add(time.Hour)})); len(f) > 0 {
		t.Errorf("failed %v", f)
	}
}

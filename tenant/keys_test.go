package tenant

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		in      string
		want    KeyType
		wantErr bool
	}{
		{"", KeyRSA2048, false},
		{"rsa-2048", KeyRSA2048, false},
		{"RSA-4096", KeyRSA4096, false},
		{" ecdsa-p256 ", KeyECDSAP256, false},
		{"ecdsa-p384", KeyECDSAP384, false},
		{"rsa", "", true},
		{"ed25519", "", true},
		{"ecdsa-p521", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseKeyType(tc.in)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("ParseKeyType(%q) = %q, %v", tc.in, got, err)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrBadKeyType) {
				t.Errorf("error %v is not ErrBadKeyType", err)
			}
			for _, k := range KeyTypes {
				if !strings.Contains(err.Error(), string(k)) {
					t.Errorf("error %q does not list %s", err, k)
				}
			}
		})
	}
}

func pemOf(typ string, der []byte, headers map[string]string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der})
}

// secretLine returns a line of the base64 body of a PEM key, to look for in error messages.
func secretLine(p []byte) string {
	lines := strings.Split(string(p), "\n")
	for _, l := range lines {
		if len(l) >= 16 && !strings.HasPrefix(l, "-----") && !strings.Contains(l, ":") {
			return l[:16]
		}
	}
	return "\x00never"
}

func TestParseKeyPEM(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	xKey, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte { der, _ := x509.MarshalPKCS8PrivateKey(k); return der }
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	ecParams := pemOf("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, nil)

	tests := []struct {
		name    string
		in      []byte
		want    crypto.PublicKey
		wantErr string
	}{
		{"pkcs8 rsa", pemOf("PRIVATE KEY", pkcs8(rsaKey), nil), rsaKey.Public(), ""},
		{"pkcs1 rsa", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), nil), rsaKey.Public(), ""},
		{"pkcs8 ecdsa", pemOf("PRIVATE KEY", pkcs8(ecKey), nil), ecKey.Public(), ""},
		{"sec1 ec", pemOf("EC PRIVATE KEY", sec1, nil), ecKey.Public(), ""},
		{"openssl ecparam -genkey", append(ecParams, pemOf("EC PRIVATE KEY", sec1, nil)...), ecKey.Public(), ""},
		{"pkcs8 ed25519", pemOf("PRIVATE KEY", pkcs8(edKey), nil), edKey.Public(), ""},
		{"not pem", x509.MarshalPKCS1PrivateKey(rsaKey), nil, "holds no PEM data"},
		{"empty", nil, nil, "holds no PEM data"},
		{"legacy encrypted", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey),
			map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"}), nil, "password-protected"},
		{"pkcs8 encrypted", pemOf("ENCRYPTED PRIVATE KEY", pkcs8(rsaKey), nil), nil, "password-protected"},
		{"a certificate", pemOf("CERTIFICATE", []byte{1, 2, 3}, nil), nil, "holds a certificate"},
		{"a public key", pemOf("PUBLIC KEY", []byte{1, 2, 3}, nil), nil, "no PRIVATE KEY"},
		{"pkcs1 label on pkcs8", pemOf("RSA PRIVATE KEY", pkcs8(rsaKey), nil), nil, "RSA PRIVATE KEY block that does not decode"},
		{"garbage key", pemOf("PRIVATE KEY", []byte("this is not a key at all, but a secret"), nil), nil, "does not decode"},
		{"x25519", pemOf("PRIVATE KEY", pkcs8(xKey), nil), nil, "use RSA, ECDSA or Ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, err := parseKeyPEM(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.want) {
					t.Error("wrong key")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if s := secretLine(tc.in); strings.Contains(err.Error(), s) {
				t.Errorf("error shows key material: %v", err)
			}
		})
	}
}

// leafFiles returns a self-signed ECDSA certificate for host and its key.
func leafFiles(t *testing.T, host string) (certPEM []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("CERTIFICATE", der, nil), key
}

func TestProvisionFiles(t *testing.T) {
	const host = "mra.files.example"
	certPEM, key := leafFiles(t, host)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(key)
	sec1, _ := x509.MarshalECPrivateKey(key)
	otherCert, _ := leafFiles(t, host)
	block, _ := pem.Decode(certPEM)

	tests := []struct {
		name     string
		cert     []byte // nil: no file
		key      []byte
		wantErr  []string // phrases in the error; empty: success
		wantFile string   // "cert" or "key": the file the error must name
	}{
		{"pkcs8", certPEM, pemOf("PRIVATE KEY", pkcs8, nil), nil, ""},
		{"ec key", certPEM, pemOf("EC PRIVATE KEY", sec1, nil), nil, ""},
		{"key and cert in one file", certPEM, append(pemOf("PRIVATE KEY", pkcs8, nil), certPEM...), nil, ""},
		{"cert not PEM", block.Bytes, pemOf("PRIVATE KEY", pkcs8, nil), []string{"holds no PEM data", "BEGIN CERTIFICATE"}, "cert"},
		{"cert block damaged", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), pemOf("PRIVATE KEY", pkcs8, nil),
			[]string{"certificate 1 of 1 is not valid X.509"}, "cert"},
		{"key not PEM", certPEM, pkcs8, []string{"holds no PEM data"}, "key"},
		{"encrypted key", certPEM, pemOf("ENCRYPTED PRIVATE KEY", pkcs8, nil), []string{"password-protected"}, "key"},
		{"legacy encrypted key", certPEM, pemOf("EC PRIVATE KEY", sec1, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}),
			[]string{"password-protected"}, "key"},
		{"mismatched key", otherCert, pemOf("PRIVATE KEY", pkcs8, nil), []string{"does not match the certificate"}, "key"},
		{"swapped", pemOf("PRIVATE KEY", pkcs8, nil), certPEM, []string{"holds a private key, not a certificate", "swapped"}, "cert"},
		{"missing cert file", nil, pemOf("PRIVATE KEY", pkcs8, nil), []string{"no such file"}, "cert"},
		{"missing key file", certPEM, nil, []string{"no such file"}, "key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			certFile, keyFile := filepath.Join(dir, "domain.pem"), filepath.Join(dir, "domain.key")
			if tc.cert != nil {
				mustWrite(t, certFile, tc.cert)
			}
			if tc.key != nil {
				mustWrite(t, keyFile, tc.key)
			}
			d := parseYAML(t, "tenants: [{domain: files.example, cert_file: "+certFile+", key_file: "+keyFile+"}]")
			var got *tls.Certificate
			_, err := Provision(d, testOptions(filepath.Join(dir, "data"), time.Now()), func(h string, c *tls.Certificate) {
				if h == host {
					got = c
				}
			})
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got == nil || got.Leaf == nil || got.Leaf.Subject.CommonName != host || len(got.Certificate) != 1 { // files scenario: parsed when loaded
					t.Fatalf("certificate for %s: %+v", host, got)
				}
				if !got.PrivateKey.(crypto.Signer).Public().(*ecdsa.PublicKey).Equal(key.Public()) {
					t.Error("wrong key")
				}
				return
			}
			if !errors.Is(err, ErrCertFiles) {
				t.Fatalf("err %v, want ErrCertFiles", err)
			}
			msg := err.Error()
			for _, w := range tc.wantErr {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			file := map[string]string{"cert": certFile, "key": keyFile}[tc.wantFile]
			if !strings.Contains(msg, file) || !strings.Contains(msg, "files.example") {
				t.Errorf("error %q does not name the tenant and %s", msg, file)
			}
			if strings.Contains(msg, secretLine(pemOf("PRIVATE KEY", pkcs8, nil))) || strings.Contains(msg, secretLine(pemOf("EC PRIVATE KEY", sec1, nil))) {
				t.Errorf("error shows key material: %s", msg)
			}
		})
	}
}

func TestKeyPoolReuseAndRepair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	p1, gen, err := loadPool(dir, KeyECDSAP384, 3, zap.NewNop())
	if err != nil || gen != 3 {
		t.Fatalf("first load: %d generated, %v", gen, err)
	}
	// A key of the wrong type, a damaged one, and one more wanted.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := writeKey(filepath.Join(dir, "001.key"), other); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "002.key"), []byte("half a ke"))
	p2, gen, err := loadPool(dir, KeyECDSAP384, 4, zap.NewNop())
	if err != nil || gen != 3 {
		t.Fatalf("second load: %d generated, want 3 (001, 002, 003), %v", gen, err)
	}
	if !p2.keys[0].Public().(*ecdsa.PublicKey).Equal(p1.keys[0].Public()) {
		t.Error("000.key was not reused")
	}
	for i, k := range p2.keys {
		if !KeyECDSAP384.holds(k) {
			t.Errorf("key %d is %T", i, k)
		}
		spki, _ := x509.MarshalPKIXPublicKey(k.Public())
		if got, ok := p2.lookup(spki); !ok || got != k {
			t.Errorf("lookup of key %d failed", i)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "002.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("002.key: %v %v", fi.Mode(), err)
	}
}

package tenant

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDamagedExtensionReissued: a stored certificate whose authority key identifier extension no
// longer parses (a flipped byte on disk) must be issued again, not served: clients cannot parse it.
func TestDamagedExtensionReissued(t *testing.T) {
	dir := t.TempDir()
	d := parseYAML(t, "provider:\n  edge_host: mra-host.sp.com\ntenants:\n  - domain: valid.example\n    users: [bob]\n")
	now := time.Now()
	o := testOptions(filepath.Join(dir, "data"), now)
	if _, err := Provision(d, o, nil); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "data", "certs", "ecdsa-p256", "[0-9a-f][0-9a-f].pem"))
	damaged := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		var out bytes.Buffer
		rest := data
		for {
			i := bytes.Index(rest, []byte("-----BEGIN"))
			if i < 0 {
				out.Write(rest)
				break
			}
			out.Write(rest[:i])
			b, r := pem.Decode(rest[i:])
			rest = r
			aki := []byte{0x06, 0x03, 0x55, 0x1d, 0x23, 0x04} // OID authorityKeyIdentifier, OCTET STRING
			if j := bytes.Index(b.Bytes, aki); j >= 0 {
				k := j + len(aki) + 1 // past the OCTET STRING length: the inner SEQUENCE tag
				if b.Bytes[k] != 0x30 {
					t.Fatalf("unexpected AKI shape")
				}
				b.Bytes[k] = 0x31 // SEQUENCE -> SET
				damaged++
			}
			pem.Encode(&out, b)
		}
		os.WriteFile(f, out.Bytes(), 0o644)
	}
	if damaged == 0 {
		t.Fatal("nothing damaged")
	}
	var served []*tls.Certificate
	res, err := Provision(d, o, func(_ string, c *tls.Certificate) { served = append(served, c) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("damaged %d records; second start: issued %d, reused %d", damaged, res.Issued, res.Reused)
	for _, c := range served {
		if _, err := x509.ParseCertificate(c.Certificate[0]); err != nil {
			t.Errorf("served a certificate clients cannot parse: %v", err)
		}
	}
}

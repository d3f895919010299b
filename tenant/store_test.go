package tenant

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBundleRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "00.pem")
	header := bundleHeader(KeyECDSAP256, "0123456789abcdef")
	recs := []record{
		{domain: "a.example", host: "mra.a.example", scenario: Valid, der: []byte("first certificate")},
		{domain: "b.example", host: "*.b.example", scenario: Wildcard, der: bytes.Repeat([]byte{0xff}, 700)},
	}
	if err := writeBundle(path, header, recs); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "# edgesim-certs/1 key-type=ecdsa-p256 ca=0123456789abcdef\n# a.example mra.a.example valid\n-----BEGIN CERTIFICATE-----\n") {
		t.Errorf("layout:\n%s", data)
	}

	tests := []struct {
		name       string
		data       []byte
		header     string
		wantRecs   int
		wantIntact bool
	}{
		{"intact", data, header, 2, true},
		{"other CA", data, bundleHeader(KeyECDSAP256, "fedcba9876543210"), 0, false},
		{"other key type", data, bundleHeader(KeyRSA2048, "0123456789abcdef"), 0, false},
		{"truncated in the second block", data[:len(data)-100], header, 1, false},
		{"truncated after a comment", data[:bytes.LastIndex(data, []byte("# b.example"))+20], header, 1, false},
		{"header only", []byte(header + "\n"), header, 0, true},
		{"empty", nil, header, 0, false},
		{"comment with two fields", bytes.Replace(data, []byte(" valid\n"), []byte("\n"), 1), header, 0, false},
		// A damaged first block must not pair its comment with the second certificate.
		{"damaged first block", bytes.Replace(data, []byte("\n-----END CERTIFICATE-----\n#"), []byte("\n-----END CERTIFICATX-----\n#"), 1), header, 0, false},
		{"END line glued to the base64", bytes.Replace(data, []byte("\n-----END CERTIFICATE-----\n# b"), []byte("-----END CERTIFICATE-----\n# b"), 1), header, 0, false},
		{"headers in a block", bytes.Replace(data, []byte("-----BEGIN CERTIFICATE-----\n"), []byte("-----BEGIN CERTIFICATE-----\nA: b\n\n"), 1), header, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, intact := parseBundle(tc.data, tc.header)
			if len(got) != tc.wantRecs || intact != tc.wantIntact {
				t.Fatalf("%d records, intact %v; want %d, %v", len(got), intact, tc.wantRecs, tc.wantIntact)
			}
			for i, r := range got {
				if r.key() != recs[i].key() || !bytes.Equal(r.der, recs[i].der) {
					t.Errorf("record %d = %s, want %s", i, r.key(), recs[i].key())
				}
			}
		})
	}
}

func TestWriteFileAtomicLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pem")
	if err := writeFileAtomic(path, 0o644, false, func(w *fileWriter) error { _, err := w.WriteString("x"); return err }); err != nil {
		t.Fatal(err)
	}
	failed := writeFileAtomic(path, 0o644, false, func(w *fileWriter) error { w.WriteString("half"); return os.ErrClosed })
	if failed == nil {
		t.Fatal("want the fill error")
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"x.pem"}) {
		t.Errorf("directory holds %v", names)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Errorf("a failed write changed the file: %q", b)
	}
}

func FuzzParseBundle(f *testing.F) {
	header := bundleHeader(KeyRSA2048, "0123456789abcdef")
	var buf bytes.Buffer
	buf.WriteString(header + "\n# a.example mra.a.example valid\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n")
	f.Add(buf.Bytes())
	f.Add([]byte(header + "\n# a b c\n-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, _ := parseBundle(data, header)
		for _, r := range recs {
			if r.domain == "" || r.host == "" || r.scenario == "" || strings.ContainsAny(r.key(), "\n") {
				t.Fatalf("bad record %q", r.key())
			}
		}
	})
}

func FuzzParseKeyPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAEC\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nMAA=\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := parseKeyPEM(data)
		if (key == nil) == (err == nil) {
			t.Fatalf("key %v, err %v", key, err)
		}
	})
}

func TestReadOptional(t *testing.T) {
	dir := t.TempDir()
	if b, err := readOptional(filepath.Join(dir, "missing")); b != nil || err != nil {
		t.Fatalf("missing file: %v, %v", b, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := readOptional(empty); b == nil || len(b) != 0 || err != nil {
		t.Fatalf("empty file: %v, %v (want a non-nil empty slice: present, not missing)", b, err)
	}
}

package certlint

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/edgesim/edgesim/internal/san"
)

func TestWildcardProblem(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"example.com", true},
		{"*.example.com", true},
		{"*.EXAMPLE.com.", true},
		{"f*.example.com", false},
		{"*f.example.com", false},
		{"*.*.example.com", false},
		{"a.*.example.com", false},
		{"a.b.*", false},
		{"*.com", false},
		{"*", false},
		{"*..com", false},
	}
	for _, tt := range tests {
		if p := san.WildcardProblem(tt.name); (p == "") != tt.ok {
			t.Errorf("san.WildcardProblem(%q) = %q, want ok=%v", tt.name, p, tt.ok)
		}
	}
}

func TestMatchName(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"mra.example.com", "MRA.Example.com.", true},
		{"*.example.com", "mra.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"f*.example.com", "foo.example.com", false},
		{"*.com", "example.com", false},
		{"", "example.com", false},
		{"example.com", "", false},
	}
	for _, tt := range tests {
		if got := san.MatchName(tt.pattern, tt.host); got != tt.want {
			t.Errorf("san.MatchName(%q, %q) = %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
}

func TestSRVNameTarget(t *testing.T) {
	for in, want := range map[string]string{
		"_xmpp-client.example.com":      "example.com",
		"_collab-edge._tls.example.com": "example.com",
		"example.com":                   "example.com",
		"_only":                         "",
	} {
		if got := srvNameTarget(in); got != want {
			t.Errorf("srvNameTarget(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSANOtherNames(t *testing.T) {
	good := marshalSAN(t, []string{"a.example.com"}, nil, []otherName{xmppAddr("example.com"), srvName("_xmpp-server.example.com")})
	var on otherNames
	san.ParseExtension(good, &on)
	if !slices.Equal(on.XMPPAddr, []string{"example.com"}) || !slices.Equal(on.SRVName, []string{"_xmpp-server.example.com"}) {
		t.Errorf("parsed %+v", on)
	}

	unknownOID := marshalSAN(t, nil, nil, []otherName{{asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}, "upn@example.com"}})
	malformed := map[string][]byte{
		"nil":              nil,
		"not a sequence":   {0x04, 0x01, 0x00},
		"truncated":        good[:len(good)-3],
		"trailing data":    append(append([]byte{}, good...), 0x00),
		"unknown OID":      unknownOID,
		"otherName no OID": {0x30, 0x04, 0xa0, 0x02, 0x05, 0x00},
		"otherName no value": func() []byte {
			oid, _ := asn1.Marshal(oidXMPPAddr)
			b, _ := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: oid}})
			return b
		}(),
		"value not a string": func() []byte {
			oid, _ := asn1.Marshal(oidXMPPAddr)
			n, _ := asn1.Marshal(42)
			v, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: n})
			b, _ := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, v...)}})
			return b
		}(),
		"huge length": {0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0xa0},
	}
	for name, der := range malformed {
		var on otherNames
		san.ParseExtension(der, &on) // must not panic
		if len(on.XMPPAddr)+len(on.SRVName) != 0 {
			t.Errorf("%s: parsed %+v from malformed input", name, on)
		}
	}
}

func FuzzParseSANOtherNames(f *testing.F) {
	f.Add(marshalSAN(f, []string{"a.example.com"}, nil, []otherName{xmppAddr("example.com"), srvName("_xmpp-server.example.com")}))
	f.Add([]byte{0x30, 0x04, 0xa0, 0x02, 0x05, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		var on otherNames
		san.ParseExtension(der, &on)
	})
}

var update = flag.Bool("update", false, "rewrite the generated files in testdata/")

// malformedOtherNamePath holds a self-signed certificate whose SAN list crypto/x509 accepts but
// whose otherNames are broken in every way but one: xmppAddr with an INTEGER value, SRVName with
// no value, an otherName with no OID, xmppAddr "example.com" under the wrong explicit tag, and
// one good xmppAddr good.example.com. Rewrite it with 'go test -run MalformedOtherName -update'.
var malformedOtherNamePath = filepath.Join("testdata", "malformed-othername.pem")

func TestMalformedOtherNameCertificate(t *testing.T) {
	if *update {
		writeMalformedOtherName(t)
	}
	data, err := os.ReadFile(malformedOtherNamePath)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseChain(data)
	if err != nil {
		t.Fatal(err)
	}
	on := parseOtherNames(certs[0])
	if !slices.Equal(on.XMPPAddr, []string{"good.example.com"}) || len(on.SRVName) != 0 {
		t.Errorf("parsed %+v, want only xmppAddr good.example.com", on)
	}
	roots := x509.NewCertPool()
	roots.AddCert(certs[0])
	now := certs[0].NotBefore.Add(time.Hour)
	for host, want := range map[string]bool{"good.example.com": true, "example.com": false, "mra.example.net": true} {
		rules := Lint(certs, Options{Role: RoleXMPP, Host: host, Roots: roots, Now: now})
		if rules[0].Name != RuleSAN || rules[0].Pass != want {
			t.Errorf("host %s: %+v, want pass=%v", host, rules[0], want)
		}
	}
}

func writeMalformedOtherName(t *testing.T) {
	t.Helper()
	raw := func(class, tag int, compound bool, b []byte) []byte {
		out, err := asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: compound, Bytes: b})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	oidX, _ := asn1.Marshal(oidXMPPAddr)
	oidS, _ := asn1.Marshal(oidSRVName)
	integer, _ := asn1.Marshal(5)
	utf8 := func(s string) []byte { return raw(asn1.ClassUniversal, asn1.TagUTF8String, false, []byte(s)) }
	other := func(b []byte) []byte { return raw(asn1.ClassContextSpecific, 0, true, b) }
	explicit := func(tag int, b []byte) []byte { return raw(asn1.ClassContextSpecific, tag, true, b) }
	san := raw(asn1.ClassUniversal, asn1.TagSequence, true, cat(
		raw(asn1.ClassContextSpecific, 2, false, []byte("mra.example.net")),
		other(cat(oidX, explicit(0, integer))),
		other(oidS),
		other(explicit(0, utf8("no-oid.example.com"))),
		other(cat(oidX, explicit(1, utf8("example.com")))),
		other(cat(oidX, explicit(0, utf8("good.example.com")))),
	))
	key := testKey(t, "p256", "")
	tmpl := &x509.Certificate{
		SerialNumber:    big.NewInt(1),
		Subject:         pkix.Name{CommonName: "malformed otherNames"},
		NotBefore:       time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:        time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{{Id: oidSubjectAltName, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(malformedOtherNamePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(malformedOtherNamePath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

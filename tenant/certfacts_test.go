package tenant

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// checkStoredCert fails unless readStoredCert agrees with x509.ParseCertificate on der.
func checkStoredCert(t *testing.T, der []byte) {
	t.Helper()
	want, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("test certificate does not parse: %v", err)
	}
	got, err := readStoredCert(der)
	if err != nil {
		t.Fatalf("readStoredCert: %v (x509 parses it: CN %q)", err, want.Subject.CommonName)
	}
	cn := want.Subject.CommonName
	if len(want.Subject.Names) != 1 {
		cn = "" // readStoredCert reads a CN only from a name that is nothing else
	}
	switch {
	case !bytes.Equal(got.rawIssuer, want.RawIssuer), !bytes.Equal(got.rawSubject, want.RawSubject),
		!bytes.Equal(got.rawSPKI, want.RawSubjectPublicKeyInfo):
		t.Errorf("raw fields differ from x509's")
	case !got.notBefore.Equal(want.NotBefore) || !got.notAfter.Equal(want.NotAfter):
		t.Errorf("validity %v..%v, x509 %v..%v", got.notBefore, got.notAfter, want.NotBefore, want.NotAfter)
	case got.commonName != cn:
		t.Errorf("CN %q, want %q", got.commonName, cn)
	case !slices.Equal(got.dnsNames, want.DNSNames):
		t.Errorf("DNS names %q, x509 %q", got.dnsNames, want.DNSNames)
	}
}

// TestReadStoredCertScenarios: every certificate Provision issues reads the same as through
// x509, and a provisioned directory is reused whole on the next start.
func TestReadStoredCertScenarios(t *testing.T) {
	dir := t.TempDir()
	d, _ := scenarioDirectory(t, dir)
	now := time.Now()
	p := provision(t, d, testOptions(filepath.Join(dir, "data"), now))
	if len(p.certs) < 8 {
		t.Fatalf("only %d certificates", len(p.certs))
	}
	for host, c := range p.certs {
		t.Run(host, func(t *testing.T) { checkStoredCert(t, c.Certificate[0]) })
	}
	again := provision(t, d, testOptions(filepath.Join(dir, "data"), now))
	if again.res.Issued != 0 || again.res.Reused != p.res.Issued-1 { // the CA is not a reuse
		t.Errorf("second start: issued %d, reused %d; want 0 and %d", again.res.Issued, again.res.Reused, p.res.Issued-1)
	}
}

// TestReadStoredCertShapes covers what Provision does not issue: GeneralizedTime after 2049,
// 1950s UTCTime, a UTF-8 CN, a subject of several attributes, SANs of other kinds.
func TestReadStoredCertShapes(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		subject  pkix.Name
		from, to time.Time
		dns      []string
	}{
		{"generalized time", pkix.Name{CommonName: "a.example"}, time.Date(2049, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2051, 6, 7, 8, 9, 10, 0, time.UTC), []string{"a.example"}},
		{"1950s", pkix.Name{CommonName: "b.example"}, time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), nil},
		{"utf-8 CN", pkix.Name{CommonName: "café.example"}, time.Now(), time.Now().Add(time.Hour), []string{"xn--caf-dma.example", "c.example"}},
		{"several attributes", pkix.Name{CommonName: "d.example", Organization: []string{"Org"}}, time.Now(), time.Now().Add(time.Hour), []string{"d.example"}},
		{"empty subject", pkix.Name{}, time.Now(), time.Now().Add(time.Hour), []string{"e.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: tc.subject,
				NotBefore: tc.from.Truncate(time.Second), NotAfter: tc.to.Truncate(time.Second), DNSNames: tc.dns,
				IPAddresses: []net.IP{net.IPv4(192, 0, 2, 1)}, EmailAddresses: []string{"x@example.com"}}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			checkStoredCert(t, der)
		})
	}
}

func TestReadStoredCertRefuses(t *testing.T) {
	dir := t.TempDir()
	d, _ := scenarioDirectory(t, dir)
	p := provision(t, d, testOptions(filepath.Join(dir, "data"), time.Now()))
	der := p.certs["mra-host.valid.example"].Certificate[0]
	// rebuild re-encodes der's three parts after edit changes them.
	rebuild := func(edit func(tbs, alg, sig *[]byte)) []byte {
		in := cryptobyte.String(der)
		var cert, tbs, alg, sig cryptobyte.String
		if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) ||
			!cert.ReadASN1Element(&alg, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&sig, cbasn1.BIT_STRING) {
			t.Fatal("test certificate does not split")
		}
		tb, ab, sb := []byte(tbs), []byte(alg), []byte(sig)
		edit(&tb, &ab, &sb)
		var out cryptobyte.Builder
		out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(tb); b.AddBytes(ab); b.AddBytes(sb) })
		return out.BytesOrPanic()
	}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"truncated":      der[:len(der)/2],
		"trailing bytes": append(slices.Clone(der), 0),
		"not DER":        []byte("-----BEGIN CERTIFICATE-----"),
		"signature algorithm differs from the TBS's": rebuild(func(_, alg, _ *[]byte) {
			*alg = slices.Clone(*alg)
			(*alg)[len(*alg)-1]++ // ecdsa-with-SHA256 -> another OID
		}),
		"signature not a BIT STRING": rebuild(func(_, _, sig *[]byte) {
			*sig = slices.Clone(*sig)
			(*sig)[0] = byte(cbasn1.OCTET_STRING)
		}),
		"something after the signature": rebuild(func(_, _, sig *[]byte) { *sig = append(slices.Clone(*sig), 0x05, 0x00) }),
	} {
		if _, err := readStoredCert(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for _, v := range []string{"991332000000Z", "990230000000Z", "9912312359Z", "99123123595 Z", "2051010100000Z"} {
		if _, ok := fastTime([]byte(v), len(v) == 13); ok {
			t.Errorf("fastTime(%q) accepted", v)
		}
	}
}

// FuzzReadStoredCert: whatever x509 accepts, readStoredCert reads alike; nothing panics.
func FuzzReadStoredCert(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "f.example"},
		NotBefore: time.Unix(0, 0).UTC(), NotAfter: time.Date(2060, 1, 1, 0, 0, 0, 0, time.UTC), DNSNames: []string{"f.example"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := readStoredCert(b)
		want, xerr := x509.ParseCertificate(b)
		if xerr != nil || err != nil {
			return // x509 refuses more (signature algorithms, keys); ours refuses odd shapes
		}
		if !bytes.Equal(got.rawSPKI, want.RawSubjectPublicKeyInfo) || !got.notAfter.Equal(want.NotAfter) ||
			!got.notBefore.Equal(want.NotBefore) || !slices.Equal(got.dnsNames, want.DNSNames) {
			t.Errorf("readStoredCert and x509 disagree")
		}
	})
}

package driver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"testing"
	"time"
)

// testNow is the time certificate tests check against.
var testNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// testCA is a certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// pool returns a pool holding only the CA.
func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// newKey makes a P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestCA makes a self-signed CA valid around testNow and the wall clock.
func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             testNow.AddDate(-5, 0, 0),
		NotAfter:              testNow.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// certSpec says what a test leaf certificate carries.
type certSpec struct {
	CN        string
	DNS       []string
	XMPPAddr  []string // otherName id-on-xmppAddr, UTF8String
	SRVName   []string // otherName id-on-dnsSRV, IA5String
	IPs       []net.IP
	NotBefore time.Time // zero: a year before testNow
	NotAfter  time.Time // zero: a year after testNow
}

// otherNameDER encodes one otherName GeneralName: [0] { type-id, [0] EXPLICIT value }.
func otherNameDER(t testing.TB, oid asn1.ObjectIdentifier, tag int, value string) []byte {
	t.Helper()
	str, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: []byte(value)})
	if err != nil {
		t.Fatal(err)
	}
	explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: str})
	if err != nil {
		t.Fatal(err)
	}
	oidDER, err := asn1.Marshal(oid)
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oidDER, explicit...)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sanExtension builds a SubjectAltName extension with dNSNames, iPAddresses and otherNames.
func sanExtension(t testing.TB, s certSpec) pkix.Extension {
	t.Helper()
	var body []byte
	add := func(rv asn1.RawValue) {
		b, err := asn1.Marshal(rv)
		if err != nil {
			t.Fatal(err)
		}
		body = append(body, b...)
	}
	for _, d := range s.DNS {
		add(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	for _, ip := range s.IPs {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		add(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: ip})
	}
	for _, a := range s.XMPPAddr {
		body = append(body, otherNameDER(t, oidXMPPAddr, asn1.TagUTF8String, a)...)
	}
	for _, n := range s.SRVName {
		body = append(body, otherNameDER(t, oidSRVName, asn1.TagIA5String, n)...)
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: seq}
}

// leafTemplate is the template of a server certificate for s.
func leafTemplate(t testing.TB, s certSpec) *x509.Certificate {
	t.Helper()
	nb, na := s.NotBefore, s.NotAfter
	if nb.IsZero() {
		nb = testNow.AddDate(-1, 0, 0)
	}
	if na.IsZero() {
		na = testNow.AddDate(1, 0, 0)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.CN},
		NotBefore:    nb,
		NotAfter:     na,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if len(s.DNS)+len(s.XMPPAddr)+len(s.SRVName)+len(s.IPs) > 0 {
		tmpl.ExtraExtensions = []pkix.Extension{sanExtension(t, s)}
	}
	return tmpl
}

// issue makes a leaf certificate for s signed by ca, with its key.
func (ca *testCA) issue(t testing.TB, s certSpec) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, leafTemplate(t, s), ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// selfSigned makes a self-signed leaf certificate for s.
func selfSigned(t testing.TB, s certSpec) *x509.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := leafTemplate(t, s)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// tlsServerConfig returns a server configuration presenting a fresh certificate for names
// (valid around the wall clock), issued by ca.
func (ca *testCA) tlsServerConfig(t testing.TB, names ...string) *tls.Config {
	t.Helper()
	now := time.Now()
	cert, key := ca.issue(t, certSpec{CN: names[0], DNS: names, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw, ca.cert.Raw}, PrivateKey: key, Leaf: cert}}}
}

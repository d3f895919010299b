package certlint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// testNow is the clock of every test: certificates are made relative to it.
var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// keys are made once per type: RSA generation is slow under -race.
var (
	keysMu sync.Mutex
	keys   = map[string]crypto.Signer{}
)

// testKey returns the key of type typ kept under name; "" is the key leaves share.
func testKey(t testing.TB, typ, name string) crypto.Signer {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[typ+"/"+name]; ok {
		return k
	}
	var k crypto.Signer
	var err error
	switch typ {
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "", "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p521":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key type %q", typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	keys[typ+"/"+name] = k
	return k
}

// otherName is one SAN otherName to put in a test certificate.
type otherName struct {
	oid   asn1.ObjectIdentifier
	value string
}

func xmppAddr(v string) otherName { return otherName{oidXMPPAddr, v} }
func srvName(v string) otherName  { return otherName{oidSRVName, v} }

// spec describes a test certificate; the zero value is an RSA 2048 self-signed leaf for
// mra.example.com with no EKU, valid from a day before testNow for a year.
type spec struct {
	cn        string
	dns       []string
	ips       []net.IP
	others    []otherName
	key       string // rsa1024, rsa2048 (default), p256, p384, p521, ed25519
	keyName   string // a key of its own, kept under this name ("" shares the leaves' key)
	eku       []x509.ExtKeyUsage
	notBefore time.Time
	notAfter  time.Time
	ca        bool
	parent    *issued // nil: self-signed
}

// issued is a made certificate with its key.
type issued struct {
	cert *x509.Certificate
	der  []byte
	key  crypto.Signer
}

func (i *issued) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.der})
}

var serial int64

func issue(t testing.TB, s spec) *issued {
	t.Helper()
	if s.notBefore.IsZero() {
		s.notBefore = testNow.Add(-24 * time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = testNow.Add(365 * 24 * time.Hour)
	}
	key := testKey(t, s.key, s.keyName)
	keysMu.Lock()
	serial++
	sn := serial
	keysMu.Unlock()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(sn),
		Subject:               pkix.Name{CommonName: s.cn},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		DNSNames:              s.dns,
		IPAddresses:           s.ips,
		ExtKeyUsage:           s.eku,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  s.ca,
	}
	if s.ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	}
	if len(s.others) > 0 {
		tmpl.DNSNames, tmpl.IPAddresses = nil, nil
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Value: marshalSAN(t, s.dns, s.ips, s.others)}}
	}
	parent, signer := tmpl, key
	if s.parent != nil {
		parent, signer = s.parent.cert, s.parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issued{cert: c, der: der, key: key}
}

// marshalSAN builds a SubjectAltName extension value with dNSNames, iPAddresses and otherNames
// (UTF8String values), which crypto/x509 cannot write itself.
func marshalSAN(t testing.TB, dns []string, ips []net.IP, others []otherName) []byte {
	t.Helper()
	var names []asn1.RawValue
	for _, d := range dns {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(d)})
	}
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 7, Bytes: ip})
	}
	for _, o := range others {
		oid, err := asn1.Marshal(o.oid)
		if err != nil {
			t.Fatal(err)
		}
		tag := asn1.TagUTF8String
		if o.oid.Equal(oidSRVName) {
			tag = asn1.TagIA5String
		}
		str, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: []byte(o.value)})
		if err != nil {
			t.Fatal(err)
		}
		val, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: str})
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, val...)})
	}
	b, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testPKI is a root, an intermediate under it, and a pool trusting the root.
type testPKI struct {
	root, inter *issued
	roots       *x509.CertPool
}

func newPKI(t testing.TB) testPKI {
	t.Helper()
	root := issue(t, spec{cn: "Test Root CA", ca: true, keyName: "root",
		notBefore: testNow.Add(-365 * 24 * time.Hour), notAfter: testNow.Add(10 * 365 * 24 * time.Hour)})
	inter := issue(t, spec{cn: "Test Issuing CA", ca: true, keyName: "inter", parent: root,
		notBefore: testNow.Add(-365 * 24 * time.Hour), notAfter: testNow.Add(5 * 365 * 24 * time.Hour)})
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	return testPKI{root: root, inter: inter, roots: pool}
}

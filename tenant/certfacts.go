package tenant

import (
	"bytes"
	"errors"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// storedCert is what Provision checks of a stored certificate before serving it again, read
// straight from the DER. x509.ParseCertificate decodes everything (every extension, the public
// key as a curve point, names into strings and slices) and was 38% of a one-core start at a
// million tenants (6.0 of 16.1 s, CPU profile); this walk reads the handful of fields reuse needs
// and allocates nothing beyond the DNS names.
//
// It also checks the shape x509.ParseCertificate would refuse, so that a damaged record is issued
// again rather than served to clients that cannot parse it: the signature algorithm repeated after
// the TBSCertificate and a BIT STRING signature, nothing after them; every extension an OID,
// optional critical flag and OCTET STRING, each OID once; and the value of each extension issue
// writes is one whole element of its type. Like x509.ParseCertificate, it does not check the
// signature.
type storedCert struct {
	rawIssuer, rawSubject, rawSPKI []byte // DER elements, slices of the input
	notBefore, notAfter            time.Time
	commonName                     string // the subject's single CN, or "" when it has another shape
	dnsNames                       []string
	authorityKeyID                 []byte // the AKI extension's keyIdentifier, if any
}

var errStoredCert = errors.New("tenant: stored certificate does not parse")

// The contents octets of the OBJECT IDENTIFIERs compared against.
var (
	oidCommonName = []byte{0x55, 0x04, 0x03} // 2.5.4.3
	oidSAN        = []byte{0x55, 0x1d, 0x11} // 2.5.29.17
	oidAKI        = []byte{0x55, 0x1d, 0x23} // 2.5.29.35
)

// extensionTags are the extensions x509.CreateCertificate writes for Provision, with the type of
// their value: key usage, extended key usage, basic constraints, subject and authority key
// identifiers, subject alternative names.
var extensionTags = []struct {
	oid []byte
	tag cbasn1.Tag
}{
	{[]byte{0x55, 0x1d, 0x0f}, cbasn1.BIT_STRING},
	{[]byte{0x55, 0x1d, 0x25}, cbasn1.SEQUENCE},
	{[]byte{0x55, 0x1d, 0x13}, cbasn1.SEQUENCE},
	{[]byte{0x55, 0x1d, 0x0e}, cbasn1.OCTET_STRING},
	{oidAKI, cbasn1.SEQUENCE},
	{oidSAN, cbasn1.SEQUENCE},
}

// readStoredCert reads der (one X.509 certificate, as x509.CreateCertificate writes them).
func readStoredCert(der []byte) (storedCert, error) {
	var c storedCert
	in := cryptobyte.String(der)
	var cert, tbs, outerAlg, sig cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() || !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!cert.ReadASN1Element(&outerAlg, cbasn1.SEQUENCE) || !cert.ReadASN1(&sig, cbasn1.BIT_STRING) || !cert.Empty() ||
		len(sig) < 2 || sig[0] != 0 {
		return c, errStoredCert
	}
	var tbsAlg, issuer, validity, subject, spki cryptobyte.String
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) || // version
		!tbs.SkipASN1(cbasn1.INTEGER) || // serial
		!tbs.ReadASN1Element(&tbsAlg, cbasn1.SEQUENCE) || !bytes.Equal(tbsAlg, outerAlg) ||
		!tbs.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&validity, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&subject, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return c, errStoredCert
	}
	c.rawIssuer, c.rawSubject, c.rawSPKI = issuer, subject, spki
	var ok bool
	if c.notBefore, ok = readTime(&validity); !ok {
		return c, errStoredCert
	}
	if c.notAfter, ok = readTime(&validity); !ok || !validity.Empty() {
		return c, errStoredCert
	}
	c.commonName = singleCN(subject)
	// issuerUniqueID [1], subjectUniqueID [2], then extensions [3].
	if !tbs.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific()) || !tbs.SkipOptionalASN1(cbasn1.Tag(2).ContextSpecific()) {
		return c, errStoredCert
	}
	var exts cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(3).Constructed().ContextSpecific()) || !tbs.Empty() {
		return c, errStoredCert
	}
	if !present {
		return c, nil
	}
	if !exts.ReadASN1(&exts, cbasn1.SEQUENCE) || exts.Empty() {
		return c, errStoredCert
	}
	var seenBuf [8][]byte // the six extensions issue writes fit: no allocation
	seen := seenBuf[:0]
	for !exts.Empty() {
		var ext, oid, value cryptobyte.String
		if !exts.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
			!ext.SkipOptionalASN1(cbasn1.BOOLEAN) || !ext.ReadASN1(&value, cbasn1.OCTET_STRING) || !ext.Empty() {
			return c, errStoredCert
		}
		for _, o := range seen {
			if bytes.Equal(o, oid) {
				return c, errStoredCert // x509 refuses a repeated extension
			}
		}
		seen = append(seen, oid)
		for _, e := range extensionTags {
			if bytes.Equal(oid, e.oid) {
				v := value
				var inner cryptobyte.String
				if !v.ReadASN1(&inner, e.tag) || !v.Empty() {
					return c, errStoredCert
				}
			}
		}
		switch {
		case bytes.Equal(oid, oidSAN):
			var names cryptobyte.String
			if !value.ReadASN1(&names, cbasn1.SEQUENCE) {
				return c, errStoredCert
			}
			for !names.Empty() {
				var name cryptobyte.String
				var tag cbasn1.Tag
				if !names.ReadAnyASN1(&name, &tag) {
					return c, errStoredCert
				}
				if tag == cbasn1.Tag(2).ContextSpecific() { // dNSName
					c.dnsNames = append(c.dnsNames, string(name))
				}
			}
		case bytes.Equal(oid, oidAKI):
			var aki, id cryptobyte.String
			var hasID bool
			if !value.ReadASN1(&aki, cbasn1.SEQUENCE) || !aki.ReadOptionalASN1(&id, &hasID, cbasn1.Tag(0).ContextSpecific()) {
				return c, errStoredCert
			}
			c.authorityKeyID = id
		}
	}
	return c, nil
}

// readTime reads a UTCTime or GeneralizedTime. The forms x509.CreateCertificate writes
// (YYMMDDHHMMSSZ, YYYYMMDDHHMMSSZ) are read by hand: cryptobyte's readers go through
// time.Parse, 8% of a one-core start at a million tenants. Anything else goes to them.
func readTime(s *cryptobyte.String) (time.Time, bool) {
	var t time.Time
	var tag cbasn1.Tag
	var elem cryptobyte.String
	if !s.PeekASN1Tag(cbasn1.UTCTime) && !s.PeekASN1Tag(cbasn1.GeneralizedTime) {
		return t, false
	}
	before := *s
	if !s.ReadAnyASN1Element(&elem, &tag) {
		return t, false
	}
	var v cryptobyte.String
	if !elem.ReadAnyASN1(&v, &tag) {
		return t, false
	}
	if t, ok := fastTime(v, tag == cbasn1.UTCTime); ok {
		return t, true
	}
	*s = before
	if tag == cbasn1.UTCTime {
		return t, s.ReadASN1UTCTime(&t)
	}
	return t, s.ReadASN1GeneralizedTime(&t)
}

// fastTime reads YYMMDDHHMMSSZ (utc) or YYYYMMDDHHMMSSZ; false for any other form or an
// impossible date, which the caller then hands to the strict readers.
func fastTime(v []byte, utc bool) (time.Time, bool) {
	n := 15
	if utc {
		n = 13
	}
	if len(v) != n || v[n-1] != 'Z' {
		return time.Time{}, false
	}
	var d [6]int // year, month, day, hour, minute, second
	digits := v[:n-1]
	for _, c := range digits {
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
	}
	num := func(b []byte) int {
		x := 0
		for _, c := range b {
			x = x*10 + int(c-'0')
		}
		return x
	}
	i := 4
	if utc {
		i = 2
		d[0] = num(digits[:2])
		if d[0] >= 50 { // RFC 5280 §4.1.2.5.1
			d[0] += 1900
		} else {
			d[0] += 2000
		}
	} else {
		d[0] = num(digits[:4])
	}
	for k := 1; k <= 5; k++ {
		d[k] = num(digits[i : i+2])
		i += 2
	}
	t := time.Date(d[0], time.Month(d[1]), d[2], d[3], d[4], d[5], 0, time.UTC)
	if t.Year() != d[0] || int(t.Month()) != d[1] || t.Day() != d[2] || t.Hour() != d[3] || t.Minute() != d[4] || t.Second() != d[5] {
		return time.Time{}, false // out of range, normalised by time.Date
	}
	return t, true
}

// singleCN returns the CN of a name made of exactly one attribute, the common name, as
// x509.CreateCertificate writes pkix.Name{CommonName: cn}; "" for any other name.
func singleCN(name cryptobyte.String) string {
	var rdns, set, atv, oid, value cryptobyte.String
	var tag cbasn1.Tag
	if !name.ReadASN1(&rdns, cbasn1.SEQUENCE) || !rdns.ReadASN1(&set, cbasn1.SET) || !rdns.Empty() ||
		!set.ReadASN1(&atv, cbasn1.SEQUENCE) || !set.Empty() || !atv.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
		!bytes.Equal(oid, oidCommonName) || !atv.ReadAnyASN1(&value, &tag) || !atv.Empty() {
		return ""
	}
	if tag != cbasn1.PrintableString && tag != cbasn1.UTF8String {
		return ""
	}
	return string(value)
}

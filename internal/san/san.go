// Package san reads the SubjectAltName otherNames Jabber and Expressway check and crypto/x509
// does not expose: xmppAddr (RFC 6120) and SRVName (RFC 4985). It is a leaf shared by the
// driver, the certificate linter and the domain-certificate manager. Its functions never panic.
package san

import (
	"crypto/x509"
	"encoding/asn1"
)

// Object identifiers of the SubjectAltName extension and the otherName forms read here.
var (
	OIDSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	OIDXMPPAddr       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5} // id-on-xmppAddr, UTF8String
	OIDSRVName        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7} // id-on-dnsSRV, IA5String
)

// OtherNames are a certificate's xmppAddr and SRVName otherNames, in the order they appear.
type OtherNames struct {
	XMPPAddr []string
	SRVName  []string
}

// Parse reads the otherNames of every SubjectAltName extension of cert (nil gives none).
func Parse(cert *x509.Certificate) OtherNames {
	var out OtherNames
	if cert == nil {
		return out
	}
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDSubjectAltName) {
			ParseExtension(ext.Value, &out)
		}
	}
	return out
}

// ParseExtension adds the otherNames of a DER SubjectAltName extension value (a SEQUENCE OF
// GeneralName) to out. A malformed extension is skipped, a malformed entry ends the walk, and
// an entry of another form, type or string kind is ignored.
func ParseExtension(der []byte, out *OtherNames) {
	var seq asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 ||
		seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return
	}
	for rest := seq.Bytes; len(rest) > 0; {
		var gn asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
			return
		}
		// otherName is [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }.
		if gn.Class != asn1.ClassContextSpecific || gn.Tag != 0 || !gn.IsCompound {
			continue
		}
		var oid asn1.ObjectIdentifier
		inner, err := asn1.Unmarshal(gn.Bytes, &oid)
		if err != nil {
			continue
		}
		var explicit asn1.RawValue
		if _, err := asn1.Unmarshal(inner, &explicit); err != nil ||
			explicit.Class != asn1.ClassContextSpecific || explicit.Tag != 0 || !explicit.IsCompound {
			continue
		}
		var str asn1.RawValue
		if _, err := asn1.Unmarshal(explicit.Bytes, &str); err != nil || str.Class != asn1.ClassUniversal || str.IsCompound {
			continue
		}
		switch str.Tag {
		case asn1.TagUTF8String, asn1.TagIA5String, asn1.TagPrintableString:
		default:
			continue
		}
		switch {
		case oid.Equal(OIDXMPPAddr):
			out.XMPPAddr = append(out.XMPPAddr, string(str.Bytes))
		case oid.Equal(OIDSRVName):
			out.SRVName = append(out.SRVName, string(str.Bytes))
		}
	}
}

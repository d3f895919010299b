package certlint

import (
	"crypto/x509"
	"encoding/asn1"
	"net"
	"strings"
)

// Object identifiers of the SubjectAltName extension and the otherName forms Jabber reads.
var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidXMPPAddr       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5} // RFC 6120 id-on-xmppAddr, UTF8String
	oidSRVName        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7} // RFC 4985 id-on-dnsSRV, IA5String
)

// otherNames holds the otherName SANs of a certificate that crypto/x509 does not expose.
type otherNames struct {
	XMPPAddr []string
	SRVName  []string
}

// parseOtherNames reads the xmppAddr and SRVName otherNames of cert. It never panics.
func parseOtherNames(cert *x509.Certificate) otherNames {
	var out otherNames
	if cert == nil {
		return out
	}
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			parseSANOtherNames(ext.Value, &out)
		}
	}
	return out
}

// parseSANOtherNames adds the xmppAddr and SRVName otherNames of a DER SubjectAltName extension
// value (a SEQUENCE OF GeneralName) to out. It never panics: a malformed extension is skipped, a
// malformed entry ends the walk, and an entry of another form or type is ignored.
func parseSANOtherNames(der []byte, out *otherNames) {
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
		case oid.Equal(oidXMPPAddr):
			out.XMPPAddr = append(out.XMPPAddr, string(str.Bytes))
		case oid.Equal(oidSRVName):
			out.SRVName = append(out.SRVName, string(str.Bytes))
		}
	}
}

// normName lower-cases a host name and drops spaces around it and one trailing dot.
func normName(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

// matchName reports whether the certificate name pattern matches host: case-insensitive,
// trailing dot ignored, and a wildcard honoured only where wildcardProblem finds none, matching
// exactly one label ("*.example.com" matches "a.example.com", not "example.com" nor
// "a.b.example.com").
func matchName(pattern, host string) bool {
	pattern, host = normName(pattern), normName(host)
	if pattern == "" || host == "" {
		return false
	}
	if !strings.Contains(pattern, "*") {
		return pattern == host
	}
	if wildcardProblem(pattern) != "" {
		return false
	}
	label, tail, ok := strings.Cut(host, ".")
	return ok && label != "" && tail == pattern[2:]
}

// wildcardProblem says what is wrong with where name puts its '*', or "" when name has no
// wildcard or has it as the whole left-most label of a name with at least two more labels.
func wildcardProblem(name string) string {
	name = normName(name)
	if !strings.Contains(name, "*") {
		return ""
	}
	labels := strings.Split(name, ".")
	if labels[0] != "*" {
		if strings.Contains(labels[0], "*") {
			return "'*' must be the whole left-most label, not part of it"
		}
		return "'*' is allowed only in the left-most label"
	}
	for _, l := range labels[1:] {
		if strings.Contains(l, "*") {
			return "only one '*' is allowed, as the left-most label"
		}
		if l == "" {
			return "empty label after the wildcard"
		}
	}
	if len(labels) < 3 {
		return "a wildcard needs at least two labels after it (it would cover a whole top-level domain)"
	}
	return ""
}

// srvNameTarget strips the leading "_service" (and "_proto") labels of an SRVName.
func srvNameTarget(s string) string {
	for strings.HasPrefix(s, "_") {
		_, rest, ok := strings.Cut(s, ".")
		if !ok {
			return ""
		}
		s = rest
	}
	return s
}

// jabberMatch reports by which name leaf identifies host under Jabber's rules for role (HTTP:
// SAN dNSName, then Subject CN; XMPP: SAN xmppAddr, SAN SRVName, SAN dNSName, then Subject CN),
// and whether that was the Subject CN. An IP host matches a SAN iPAddress only.
func jabberMatch(leaf *x509.Certificate, host string, role Role) (how string, byCN, ok bool) {
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		for _, a := range leaf.IPAddresses {
			if a.Equal(ip) {
				return "SAN iPAddress " + a.String(), false, true
			}
		}
		return "", false, false
	}
	if role == RoleXMPP {
		on := parseOtherNames(leaf)
		for _, a := range on.XMPPAddr {
			if normName(a) == normName(host) {
				return "SAN xmppAddr " + a, false, true
			}
		}
		for _, s := range on.SRVName {
			if t := srvNameTarget(normName(s)); t != "" && t == normName(host) {
				return "SAN SRVName " + s, false, true
			}
		}
	}
	for _, d := range leaf.DNSNames {
		if matchName(d, host) {
			return "SAN dNSName " + d, false, true
		}
	}
	if cn := leaf.Subject.CommonName; matchName(cn, host) {
		return "Subject CN " + cn, true, true
	}
	return "", false, false
}

// hasDNSName reports whether name is literally (no wildcard) one of leaf's SAN dNSNames, and
// returns it as spelled in the certificate.
func hasDNSName(leaf *x509.Certificate, name string) (string, bool) {
	for _, d := range leaf.DNSNames {
		if normName(d) == normName(name) {
			return d, true
		}
	}
	return "", false
}

// wildcardCovering returns the leaf's wildcard dNSNames that would match name.
func wildcardCovering(leaf *x509.Certificate, name string) []string {
	var out []string
	for _, d := range leaf.DNSNames {
		if strings.Contains(d, "*") && matchName(d, name) {
			out = append(out, d)
		}
	}
	return out
}

// describeNames lists what leaf names, for people: "CN x; SAN dNSName a, b; xmppAddr c; SRVName d".
func describeNames(leaf *x509.Certificate) string {
	var parts []string
	if leaf.Subject.CommonName != "" {
		parts = append(parts, "Subject CN "+leaf.Subject.CommonName)
	}
	if len(leaf.DNSNames) > 0 {
		parts = append(parts, "SAN dNSName "+strings.Join(leaf.DNSNames, ", "))
	}
	on := parseOtherNames(leaf)
	if len(on.XMPPAddr) > 0 {
		parts = append(parts, "SAN xmppAddr "+strings.Join(on.XMPPAddr, ", "))
	}
	if len(on.SRVName) > 0 {
		parts = append(parts, "SAN SRVName "+strings.Join(on.SRVName, ", "))
	}
	if len(leaf.IPAddresses) > 0 {
		var ips []string
		for _, ip := range leaf.IPAddresses {
			ips = append(ips, ip.String())
		}
		parts = append(parts, "SAN iPAddress "+strings.Join(ips, ", "))
	}
	if len(parts) == 0 {
		return "no names at all"
	}
	return strings.Join(parts, "; ")
}

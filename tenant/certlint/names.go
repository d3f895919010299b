package certlint

import (
	"crypto/x509"
	"net"
	"strings"

	"github.com/edgesim/edgesim/internal/san"
)

// otherNames are the otherName SANs crypto/x509 does not expose (internal/san reads them).
type otherNames = san.OtherNames

// The object identifiers, for this package's tests and checks.
var (
	oidSubjectAltName = san.OIDSubjectAltName
	oidXMPPAddr       = san.OIDXMPPAddr
	oidSRVName        = san.OIDSRVName
)

// parseOtherNames reads the xmppAddr and SRVName otherNames of cert. It never panics.
func parseOtherNames(cert *x509.Certificate) otherNames { return san.Parse(cert) }

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
			if san.NormName(a) == san.NormName(host) {
				return "SAN xmppAddr " + a, false, true
			}
		}
		for _, s := range on.SRVName {
			if t := srvNameTarget(san.NormName(s)); t != "" && t == san.NormName(host) {
				return "SAN SRVName " + s, false, true
			}
		}
	}
	for _, d := range leaf.DNSNames {
		if san.MatchName(d, host) {
			return "SAN dNSName " + d, false, true
		}
	}
	if cn := leaf.Subject.CommonName; san.MatchName(cn, host) {
		return "Subject CN " + cn, true, true
	}
	return "", false, false
}

// hasDNSName reports whether name is literally (no wildcard) one of leaf's SAN dNSNames, and
// returns it as spelled in the certificate.
func hasDNSName(leaf *x509.Certificate, name string) (string, bool) {
	for _, d := range leaf.DNSNames {
		if san.NormName(d) == san.NormName(name) {
			return d, true
		}
	}
	return "", false
}

// wildcardCovering returns the leaf's wildcard dNSNames that would match name.
func wildcardCovering(leaf *x509.Certificate, name string) []string {
	var out []string
	for _, d := range leaf.DNSNames {
		if strings.Contains(d, "*") && san.MatchName(d, name) {
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

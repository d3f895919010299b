package driver

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/edgesim/edgesim/internal/san"
)

// rules picks which certificate names identify a server, as the Jabber certificate validation
// guide lists them per protocol.
type rules int

const (
	// rulesHTTP: SAN dNSName, then Subject CN (HTTPS edge and SIP).
	rulesHTTP rules = iota
	// rulesXMPP: SAN otherName xmppAddr, SAN otherName SRVName, SAN dNSName, then Subject CN.
	rulesXMPP
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

// namesHost reports whether leaf identifies host under rules r, and by which name.
func namesHost(leaf *x509.Certificate, host string, r rules) (string, bool) {
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		for _, a := range leaf.IPAddresses {
			if a.Equal(ip) {
				return "SAN iPAddress " + a.String(), true
			}
		}
		return "", false
	}
	if r == rulesXMPP {
		on := parseOtherNames(leaf)
		for _, a := range on.XMPPAddr {
			if san.NormName(a) == san.NormName(host) {
				return "SAN xmppAddr " + a, true
			}
		}
		for _, s := range on.SRVName {
			if t := srvNameTarget(s); t != "" && san.NormName(t) == san.NormName(host) {
				return "SAN SRVName " + s, true
			}
		}
	}
	for _, d := range leaf.DNSNames {
		if san.MatchName(d, host) {
			return "SAN dNSName " + d, true
		}
	}
	if cn := leaf.Subject.CommonName; cn != "" && san.MatchName(cn, host) {
		return "Subject CN " + cn, true
	}
	return "", false
}

// certNames lists what a certificate names, for people: "CN x, SAN a b, xmppAddr c, SRVName d".
func certNames(leaf *x509.Certificate, r rules) string {
	var parts []string
	if leaf.Subject.CommonName != "" {
		parts = append(parts, "CN "+leaf.Subject.CommonName)
	}
	if len(leaf.DNSNames) > 0 {
		parts = append(parts, "SAN dNSName "+strings.Join(leaf.DNSNames, " "))
	}
	if r == rulesXMPP {
		on := parseOtherNames(leaf)
		if len(on.XMPPAddr) > 0 {
			parts = append(parts, "xmppAddr "+strings.Join(on.XMPPAddr, " "))
		}
		if len(on.SRVName) > 0 {
			parts = append(parts, "SRVName "+strings.Join(on.SRVName, " "))
		}
	}
	for _, ip := range leaf.IPAddresses {
		parts = append(parts, "IP "+ip.String())
	}
	if len(parts) == 0 {
		return "no names at all"
	}
	return strings.Join(parts, ", ")
}

// issuerName names who issued cert: "self-signed", the issuer's CN, or its whole DN.
func issuerName(cert *x509.Certificate) string {
	if bytes.Equal(cert.RawSubject, cert.RawIssuer) {
		return "self-signed"
	}
	if cert.Issuer.CommonName != "" {
		return cert.Issuer.CommonName
	}
	return cert.Issuer.String()
}

// describeCert is the one-line summary of a certificate that a passing step reports:
// "CN=mra.example.com, SAN mra.example.com example.com, issued by edgesim local CA, valid until 2027-11-24".
func describeCert(leaf *x509.Certificate) string {
	var b strings.Builder
	if leaf.Subject.CommonName != "" {
		b.WriteString("CN=" + leaf.Subject.CommonName + ", ")
	}
	var sans []string
	sans = append(sans, leaf.DNSNames...)
	on := parseOtherNames(leaf)
	for _, a := range on.XMPPAddr {
		sans = append(sans, "xmppAddr:"+a)
	}
	for _, s := range on.SRVName {
		sans = append(sans, "SRVName:"+s)
	}
	for _, ip := range leaf.IPAddresses {
		sans = append(sans, ip.String())
	}
	if len(sans) > 0 {
		b.WriteString("SAN " + strings.Join(sans, " ") + ", ")
	} else {
		b.WriteString("no SAN, ")
	}
	if iss := issuerName(leaf); iss == "self-signed" {
		b.WriteString("self-signed")
	} else {
		b.WriteString("issued by " + iss)
	}
	b.WriteString(", valid until " + leaf.NotAfter.UTC().Format(time.DateOnly))
	return b.String()
}

// verifyPeer checks a presented chain the way Jabber does, for a connection whose SNI was host,
// reached through the SRV target edgeHost (which may equal host). roots nil means the system
// pool. On success it returns ClassNone and a one-line description of the certificate
// (describeCert); on failure, the class and a sentence saying what was wrong.
//
// Order: no certificate (ClassHandshake); the platform certificate, naming edgeHost but not host
// (ClassPlatformCert); chain, validity and usage (ClassExpired, ClassUntrusted); the name under
// rules r (ClassNameMismatch).
func verifyPeer(chain []*x509.Certificate, host, edgeHost string, r rules, roots *x509.CertPool, now time.Time) (Class, string) {
	if len(chain) == 0 || chain[0] == nil {
		return ClassHandshake, "the edge presented no certificate"
	}
	leaf := chain[0]
	_, hostOK := namesHost(leaf, host, r)
	if !hostOK && edgeHost != "" && san.NormName(edgeHost) != san.NormName(host) {
		if _, ok := namesHost(leaf, edgeHost, r); ok {
			return ClassPlatformCert, fmt.Sprintf("the edge presented its platform certificate (%s): no domain certificate for %s",
				san.NormName(edgeHost), san.NormName(host))
		}
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range chain[1:] {
		if c != nil {
			opts.Intermediates.AddCert(c)
		}
	}
	if _, err := leaf.Verify(opts); err != nil {
		return classifyVerifyError(err, leaf, host, now)
	}
	if !hostOK {
		return ClassNameMismatch, fmt.Sprintf("the certificate does not name %s: it names %s (%s rules)",
			san.NormName(host), certNames(leaf, r), rulesName(r))
	}
	return ClassNone, describeCert(leaf)
}

// rulesName names a rule set for details.
func rulesName(r rules) string {
	if r == rulesXMPP {
		return "XMPP: xmppAddr, SRVName, dNSName, then CN"
	}
	return "HTTP: dNSName, then CN"
}

// classifyVerifyError turns an x509 verification error into a class and a sentence.
func classifyVerifyError(err error, leaf *x509.Certificate, host string, now time.Time) (Class, string) {
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		c := inv.Cert
		if c == nil {
			c = leaf
		}
		what := "certificate for " + san.NormName(host)
		if c != leaf {
			what = "certificate " + c.Subject.String() + " in the chain for " + san.NormName(host)
		}
		if now.Before(c.NotBefore) {
			return ClassExpired, fmt.Sprintf("%s is not valid before %s (now %s)", what, day(c.NotBefore), day(now))
		}
		return ClassExpired, fmt.Sprintf("%s expired on %s (now %s)", what, day(c.NotAfter), day(now))
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		c := ua.Cert
		if c == nil {
			c = leaf
		}
		switch {
		case c == leaf && bytes.Equal(c.RawSubject, c.RawIssuer):
			return ClassUntrusted, fmt.Sprintf("certificate for %s is self-signed (%s) and not a trusted root",
				san.NormName(host), c.Subject.String())
		case bytes.Equal(c.RawSubject, c.RawIssuer):
			return ClassUntrusted, fmt.Sprintf("certificate for %s chains to the root %q, which is not trusted (if it is yours, pass its PEM file with --ca)",
				san.NormName(host), c.Subject.String())
		}
		return ClassUntrusted, fmt.Sprintf("certificate for %s was issued by %q, which is not a trusted authority (pass the issuing CA's PEM file with --ca)",
			san.NormName(host), issuerName(c))
	}
	var sr x509.SystemRootsError
	if errors.As(err, &sr) {
		return ClassUntrusted, "no trusted roots to check the certificate against: " + err.Error()
	}
	return ClassUntrusted, fmt.Sprintf("certificate for %s did not verify: %v", san.NormName(host), err)
}

// checkEdgeDomain is Jabber's extra check: the service domain the user typed must be among the
// leaf's SANs, literally as dNSName domain, as dNSName collab-edge.<domain>, or as SRVName
// otherName _collab-edge._tls.<domain>. A wildcard SAN does not count. On failure the class is
// ClassEdgeDomain and the detail follows Jabber's message.
func checkEdgeDomain(leaf *x509.Certificate, domain string) (Class, string) {
	d := san.NormName(domain)
	srv := "_collab-edge._tls." + d
	if leaf == nil {
		return ClassEdgeDomain, fmt.Sprintf("Edge domain '%s' not checked: the edge presented no certificate", d)
	}
	var wild []string
	for _, n := range leaf.DNSNames {
		switch san.NormName(n) {
		case d:
			return ClassNone, fmt.Sprintf("edge domain %s is in the certificate as dNSName %s", d, n)
		case "collab-edge." + d:
			return ClassNone, fmt.Sprintf("edge domain %s is in the certificate as dNSName %s (CollabEdgeDNS form)", d, n)
		}
		if strings.HasPrefix(n, "*") && (san.MatchName(n, d) || san.MatchName(n, "collab-edge."+d)) {
			wild = append(wild, n)
		}
	}
	on := parseOtherNames(leaf)
	for _, s := range on.SRVName {
		if san.NormName(s) == srv {
			return ClassNone, fmt.Sprintf("edge domain %s is in the certificate as SRVName %s", d, s)
		}
	}
	var sans []string
	sans = append(sans, leaf.DNSNames...)
	for _, s := range on.SRVName {
		sans = append(sans, "SRVName:"+s)
	}
	for _, a := range on.XMPPAddr {
		sans = append(sans, "xmppAddr:"+a)
	}
	list := strings.Join(sans, ", ")
	if list == "" {
		list = "none"
	}
	msg := fmt.Sprintf("Edge domain '%s' and corresponding SRVName '%s' not found in certificate SAN list (SANs: %s)", d, srv, list)
	if len(wild) > 0 {
		msg += fmt.Sprintf("; the wildcard SAN %s does not count", strings.Join(wild, ", "))
	}
	return ClassEdgeDomain, msg
}

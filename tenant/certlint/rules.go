package certlint

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/edgesim/edgesim/internal/san"
)

// checkSAN is RuleSAN: every name in o must be covered. Expressway roles read the SAN list only
// (a name only in the Subject CN fails, and says so) and take no wildcard for a required name;
// http and xmpp follow Jabber's identity rules for Host, and Jabber's edge-domain check for
// Domains.
func checkSAN(leaf *x509.Certificate, o Options) Rule {
	var missing, found []string
	note := func(ok bool, s string) {
		if ok {
			found = append(found, s)
		} else {
			missing = append(missing, s)
		}
	}
	on := parseOtherNames(leaf)
	for _, d := range cleanNames(o.Domains) {
		note(coverDomain(leaf, on, d, o.Role))
	}
	for _, l := range []struct {
		what  string
		names []string
	}{
		{"XMPP federation domain", o.XMPPDomains},
		{"chat node alias", o.ChatAliases},
		{"phone security profile", o.SecurityProfiles},
	} {
		for _, n := range cleanNames(l.names) {
			note(coverLiteral(leaf, l.what, n))
		}
	}
	if h := san.NormName(o.Host); h != "" {
		note(coverHost(leaf, h, o.Role))
	}
	switch {
	case len(missing) > 0:
		r := fail(RuleSAN, "%s", strings.Join(missing, "; "))
		if len(found) > 0 {
			r.Reason += "; found " + strings.Join(found, "; ")
		}
		return r
	case len(found) > 0:
		return pass(RuleSAN, "%s", strings.Join(found, "; "))
	case o.Role.expressway() && len(leaf.DNSNames) == 0:
		cn := ""
		if leaf.Subject.CommonName != "" {
			cn = " (only Subject CN " + leaf.Subject.CommonName + ")"
		}
		return fail(RuleSAN, "the certificate has no SAN dNSName%s: Expressway checks SAN, not CN", cn)
	case o.Role.expressway():
		return pass(RuleSAN, "no names given to check; the SAN list holds dNSName %s", strings.Join(leaf.DNSNames, ", "))
	}
	names := describeNames(leaf)
	if names == "no names at all" {
		return fail(RuleSAN, "the certificate names no host: no SAN and no Subject CN")
	}
	return pass(RuleSAN, "no host given to check; the certificate names %s", names)
}

// cleanNames normalises a list of names and drops empty ones.
func cleanNames(in []string) []string {
	var out []string
	for _, n := range in {
		if n = san.NormName(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// coverDomain checks a registration (or service) domain d: dNSName d, dNSName collab-edge.d, or
// SRVName _collab-edge._tls.d. A wildcard SAN does not count, nor does the Subject CN.
func coverDomain(leaf *x509.Certificate, on otherNames, d string, role Role) (bool, string) {
	what := "registration domain " + d
	if !role.expressway() {
		what = "service domain " + d
	}
	plain, hasPlain := hasDNSName(leaf, d)
	collab, hasCollab := hasDNSName(leaf, collabEdgeLabel+d)
	switch {
	case hasPlain && hasCollab:
		return true, fmt.Sprintf("%s as dNSName %s and as %s (CollabEdgeDNS form)", what, plain, collab)
	case hasPlain:
		return true, fmt.Sprintf("%s as dNSName %s", what, plain)
	case hasCollab:
		return true, fmt.Sprintf("%s as dNSName %s (CollabEdgeDNS form)", what, collab)
	}
	for _, s := range on.SRVName {
		if san.NormName(s) == collabEdgeSRV+d {
			return true, fmt.Sprintf("%s as SRVName %s (Jabber accepts it; Expressway's own CSR writes dNSNames)", what, s)
		}
	}
	var msg string
	if role.expressway() {
		msg = fmt.Sprintf("%s missing: neither %s nor %s%s is a SAN dNSName", what, d, collabEdgeLabel, d)
	} else {
		msg = fmt.Sprintf("Edge domain '%s' and corresponding SRVName '%s%s' not found in certificate SAN list (Jabber's edge-domain check: dNSName %s, dNSName %s%s or that SRVName)",
			d, collabEdgeSRV, d, d, collabEdgeLabel, d)
	}
	if cn := san.NormName(leaf.Subject.CommonName); cn == d || cn == collabEdgeLabel+d {
		if role.expressway() {
			msg += fmt.Sprintf("; it is only in the Subject CN (%s), and Expressway checks SAN, not CN", leaf.Subject.CommonName)
		} else {
			msg += fmt.Sprintf("; it is only in the Subject CN (%s), and this check reads the SAN list only", leaf.Subject.CommonName)
		}
	}
	if w := append(wildcardCovering(leaf, d), wildcardCovering(leaf, collabEdgeLabel+d)...); len(w) > 0 {
		msg += "; the wildcard SAN " + strings.Join(w, ", ") + " does not count"
	}
	return false, msg
}

// coverLiteral checks that name is itself one of leaf's SAN dNSNames.
func coverLiteral(leaf *x509.Certificate, what, name string) (bool, string) {
	if got, ok := hasDNSName(leaf, name); ok {
		return true, fmt.Sprintf("%s %s as dNSName %s", what, name, got)
	}
	msg := fmt.Sprintf("%s %s is not a SAN dNSName", what, name)
	return false, msg + missingNotes(leaf, name)
}

// missingNotes explains near misses for a name Expressway needs in the SAN list: it is only in
// the CN, or only a wildcard covers it.
func missingNotes(leaf *x509.Certificate, name string) string {
	var s string
	if san.NormName(leaf.Subject.CommonName) == name {
		s += fmt.Sprintf("; it is only in the Subject CN (%s), and Expressway checks SAN, not CN", leaf.Subject.CommonName)
	}
	if w := wildcardCovering(leaf, name); len(w) > 0 {
		s += "; the wildcard SAN " + strings.Join(w, ", ") + " does not count: list the name itself"
	}
	return s
}

// coverHost checks the host a client connects to: literally in the SAN list for Expressway
// roles, under Jabber's rules for http and xmpp.
func coverHost(leaf *x509.Certificate, host string, role Role) (bool, string) {
	ip := net.ParseIP(strings.Trim(host, "[]"))
	if role.expressway() && ip == nil {
		if got, ok := hasDNSName(leaf, host); ok {
			return true, fmt.Sprintf("host %s as dNSName %s", host, got)
		}
		return false, fmt.Sprintf("host %s is not a SAN dNSName", host) + missingNotes(leaf, host)
	}
	how, byCN, ok := jabberMatch(leaf, host, role)
	rules := "HTTP rules: SAN dNSName, then Subject CN"
	if role == RoleXMPP {
		rules = "XMPP rules: SAN xmppAddr, SAN SRVName, SAN dNSName, then Subject CN"
	}
	switch {
	case ok && byCN:
		return true, fmt.Sprintf("host %s only by %s (Jabber's last resort; Expressway and most other clients read SAN only, so add it as a SAN dNSName)", host, how)
	case ok:
		return true, fmt.Sprintf("host %s by %s", host, how)
	case ip != nil && len(leaf.DNSNames) > 0:
		return false, fmt.Sprintf("host %s is an address the certificate does not name: it names %s; connect by FQDN, not IP", host, describeNames(leaf))
	}
	return false, fmt.Sprintf("host %s is not covered under Jabber's %s; the certificate names %s", host, rules, describeNames(leaf))
}

// checkCollabEdge is RuleCollabEdge, for expressway-e: which domains use the CollabEdgeDNS form
// collab-edge.<domain>. It is informational and always passes: Expressway and Jabber accept the
// plain domain as well, and a domain in neither form is RuleSAN's failure, reported once there.
func checkCollabEdge(leaf *x509.Certificate, o Options) Rule {
	var used, plain, neither []string
	domains := cleanNames(o.Domains)
	if len(domains) == 0 {
		for _, d := range leaf.DNSNames {
			if strings.HasPrefix(san.NormName(d), collabEdgeLabel) {
				used = append(used, d)
			}
		}
	}
	for _, d := range domains {
		if got, ok := hasDNSName(leaf, collabEdgeLabel+d); ok {
			used = append(used, got)
		} else if _, ok := hasDNSName(leaf, d); ok {
			plain = append(plain, d)
		} else {
			neither = append(neither, d)
		}
	}
	var parts []string
	if len(used) > 0 {
		parts = append(parts, strings.Join(used, ", ")+" present")
	}
	if len(plain) > 0 {
		parts = append(parts, "not used for "+strings.Join(plain, ", ")+": plain domains are accepted too")
	}
	if len(neither) > 0 {
		parts = append(parts, "neither form for "+strings.Join(neither, ", ")+" (see "+RuleSAN+")")
	}
	if len(parts) == 0 {
		parts = append(parts, "not used: plain domains are accepted too")
	}
	return pass(RuleCollabEdge, "%s", strings.Join(parts, "; "))
}

// checkEKU is RuleEKU: Expressway roles need TLS Web Server and Client Authentication (Expressway
// is a TLS client to its peers once UC features are on); http and xmpp need server
// authentication. A certificate without the extension may be used for any purpose.
func checkEKU(leaf *x509.Certificate, role Role) Rule {
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return pass(RuleEKU, "no extended key usage extension: the certificate may serve any purpose, server and client authentication included")
	}
	var server, client bool
	for _, u := range leaf.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageAny:
			server, client = true, true
		case x509.ExtKeyUsageServerAuth:
			server = true
		case x509.ExtKeyUsageClientAuth:
			client = true
		}
	}
	if !role.expressway() {
		if server {
			return pass(RuleEKU, "serverAuth (TLS Web Server Authentication) present")
		}
		return fail(RuleEKU, "no serverAuth EKU (TLS Web Server Authentication): Jabber refuses it as a server certificate")
	}
	switch {
	case server && client:
		return pass(RuleEKU, "serverAuth and clientAuth (TLS Web Server and Client Authentication) present")
	case server:
		return fail(RuleEKU, "no clientAuth EKU (TLS Web Client Authentication): Expressway needs it besides serverAuth once UC features are on, as it is a TLS client to its peers")
	case client:
		return fail(RuleEKU, "no serverAuth EKU (TLS Web Server Authentication): clients refuse it as a server certificate")
	}
	return fail(RuleEKU, "neither serverAuth nor clientAuth EKU: Expressway needs both (TLS Web Server and Client Authentication)")
}

// checkWildcard is RuleWildcard. A '*' may only be the whole left-most label of a name with two
// more labels. On Expressway roles any wildcard fails: Cisco documents that Expressway-E does
// not support wildcard certificates for MRA, and Jabber's edge-domain check ignores wildcard
// SANs, so each name must be listed.
func checkWildcard(leaf *x509.Certificate, role Role) Rule {
	type name struct{ where, n string }
	var wild []name
	for _, d := range leaf.DNSNames {
		if strings.Contains(d, "*") {
			wild = append(wild, name{"SAN dNSName", d})
		}
	}
	if cn := leaf.Subject.CommonName; strings.Contains(cn, "*") {
		wild = append(wild, name{"Subject CN", cn})
	}
	if len(wild) == 0 {
		return pass(RuleWildcard, "no wildcard names")
	}
	var bad, good []string
	for _, w := range wild {
		if p := san.WildcardProblem(w.n); p != "" {
			bad = append(bad, fmt.Sprintf("%s %s: %s", w.where, w.n, p))
		} else {
			good = append(good, w.n)
		}
	}
	if role.expressway() {
		all := make([]string, 0, len(wild))
		for _, w := range wild {
			all = append(all, w.n)
		}
		who := "Expressway-E does not support wildcard certificates for MRA (Cisco)"
		if role == RoleExpresswayC {
			who = "Cisco does not support wildcard certificates on Expressway for MRA (documented for Expressway-E)"
		}
		msg := fmt.Sprintf("wildcard %s: %s, Expressway matches peers against listed SANs, and Jabber's edge-domain check ignores wildcard SANs; list each name as a SAN dNSName",
			strings.Join(all, ", "), who)
		if len(bad) > 0 {
			msg += "; besides, " + strings.Join(bad, "; ")
		}
		return fail(RuleWildcard, "%s", msg)
	}
	if len(bad) > 0 {
		return fail(RuleWildcard, "%s", strings.Join(bad, "; "))
	}
	return pass(RuleWildcard, "%s well placed: a wildcard covers exactly one left-most label (not the bare domain, not two labels)",
		strings.Join(good, ", "))
}

// checkKey is RuleKey: RSA of 2048 bits or more (what Expressway recommends), or ECDSA P-256 or
// P-384 (accepted, with a note); anything else fails.
func checkKey(leaf *x509.Certificate) Rule {
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits >= minRSABits {
			return pass(RuleKey, "RSA %d bits (RSA recommended)", bits)
		}
		return fail(RuleKey, "RSA %d bits is too short: use at least %d (Expressway's CSR offers 2048 and 4096; current clients refuse shorter keys)", bits, minRSABits)
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return pass(RuleKey, "ECDSA %s (accepted; note that Expressway recommends RSA, 2048 bits or more)", k.Curve.Params().Name)
		}
		return fail(RuleKey, "ECDSA %s is not supported: use RSA 2048 or more (recommended), or ECDSA P-256 or P-384", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return fail(RuleKey, "Ed25519 is not supported by Expressway or Jabber: use RSA 2048 or more")
	}
	return fail(RuleKey, "%s key is not supported: use RSA 2048 or more", leaf.PublicKeyAlgorithm)
}

// checkValidity is RuleValidity over every certificate in the chain: not yet valid or expired
// fails and says the dates; expiring within 30 days passes with a note (ACME certificates spend
// their last third like that, and work until the end).
func checkValidity(chain []*x509.Certificate, now time.Time) Rule {
	var problems, notes []string
	for i, c := range chain {
		if c == nil {
			continue
		}
		what := "the certificate"
		if i > 0 {
			what = fmt.Sprintf("chain certificate %d (%s)", i+1, subjectName(c))
		}
		switch left := c.NotAfter.Sub(now); {
		case now.Before(c.NotBefore):
			problems = append(problems, fmt.Sprintf("%s is not valid before %s (now %s)", what, day(c.NotBefore), day(now)))
		case left < 0:
			problems = append(problems, fmt.Sprintf("%s expired on %s, %s ago", what, day(c.NotAfter), nDays(days(-left))))
		case left < expiryWarning:
			notes = append(notes, fmt.Sprintf("%s expires on %s, in %s: renew it soon", what, day(c.NotAfter), nDays(days(left))))
		}
	}
	if len(problems) > 0 {
		return fail(RuleValidity, "%s", strings.Join(problems, "; "))
	}
	leaf := chain[0]
	r := pass(RuleValidity, "valid from %s until %s (%s left)", day(leaf.NotBefore), day(leaf.NotAfter), nDays(days(leaf.NotAfter.Sub(now))))
	if len(notes) > 0 {
		r.Reason += "; note: " + strings.Join(notes, "; ")
	}
	return r
}

// checkChain is RuleChain: the leaf verifies, at o.Now, to o.Roots (the system's when nil)
// through the file's other certificates. Key usage is RuleEKU's business, not this rule's.
func checkChain(chain []*x509.Certificate, o Options) Rule {
	leaf := chain[0]
	if leaf.BasicConstraintsValid && leaf.IsCA && len(chain) > 1 {
		return fail(RuleChain, "the file starts with a CA certificate (%s): put the server certificate first, then its intermediates", subjectName(leaf))
	}
	opts := x509.VerifyOptions{
		Roots:         o.Roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   o.Now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	for _, c := range chain[1:] {
		if c != nil {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err == nil {
		return pass(RuleChain, "%s", describeVerified(chains[0]))
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		msg := fmt.Sprintf("does not verify at %s: %s is outside its validity period (see %s)",
			day(o.Now), subjectName(certOr(inv.Cert, leaf)), RuleValidity)
		// Say whether that is all: verify again at a moment every certificate is valid.
		if at, ok := commonValidTime(chain); ok {
			opts.CurrentTime = at
			if chains, err := leaf.Verify(opts); err == nil {
				msg += "; otherwise " + describeVerified(chains[0])
			} else if !errors.As(err, &inv) || inv.Reason != x509.Expired {
				msg += "; besides, " + verifyProblem(err, chain)
			}
		}
		return fail(RuleChain, "%s", msg)
	}
	return fail(RuleChain, "%s", verifyProblem(err, chain))
}

// describeVerified says how a verified chain ends: "verifies to trusted root CN=x through CN=y".
func describeVerified(c []*x509.Certificate) string {
	if len(c) == 1 {
		return fmt.Sprintf("the certificate (%s) is itself a trusted root", subjectName(c[0]))
	}
	s := "verifies to trusted root " + subjectName(c[len(c)-1])
	if len(c) > 2 {
		var mid []string
		for _, m := range c[1 : len(c)-1] {
			mid = append(mid, subjectName(m))
		}
		s += " through " + strings.Join(mid, ", ")
	}
	return s
}

// verifyProblem turns a verification error into a sentence that says what to do.
func verifyProblem(err error, chain []*x509.Certificate) string {
	leaf := chain[0]
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		c := certOr(ua.Cert, leaf)
		// crypto/x509 does not consider a non-CA as an issuer at all: name it.
		for _, p := range chain[1:] {
			if p != nil && p != c && bytes.Equal(p.RawSubject, c.RawIssuer) && !(p.BasicConstraintsValid && p.IsCA) {
				return fmt.Sprintf("%s in the file issued %s but is not a CA (no basicConstraints CA:TRUE), so it cannot sign certificates",
					subjectName(p), subjectName(c))
			}
		}
		if bytes.Equal(c.RawSubject, c.RawIssuer) {
			if c == leaf {
				return fmt.Sprintf("unknown authority: the certificate is self-signed (%s) and not a trusted root; clients will refuse it unless it is installed as a root, so use a CA-signed certificate", subjectName(c))
			}
			return fmt.Sprintf("unknown authority: the chain ends at the self-signed %s, which is not a trusted root", subjectName(c))
		}
		return fmt.Sprintf("unknown authority: %s was issued by %q, which is neither in the file nor a trusted root; append the intermediate CA certificates to the file after the leaf, or trust the issuing root",
			subjectName(c), issuerName(c))
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.NotAuthorizedToSign {
		return fmt.Sprintf("%s signed a certificate but is not a CA (basicConstraints CA:FALSE or no keyCertSign usage)", subjectName(certOr(inv.Cert, leaf)))
	}
	var sys x509.SystemRootsError
	if errors.As(err, &sys) {
		return "no system roots to verify against: give the trusted roots explicitly"
	}
	return "does not verify: " + err.Error()
}

// commonValidTime returns a moment at which every certificate of chain is within its validity.
func commonValidTime(chain []*x509.Certificate) (time.Time, bool) {
	var from, until time.Time
	for i, c := range chain {
		if c == nil {
			continue
		}
		if i == 0 || c.NotBefore.After(from) {
			from = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	if until.Before(from) {
		return time.Time{}, false
	}
	return from.Add(until.Sub(from) / 2), true
}

func certOr(c, def *x509.Certificate) *x509.Certificate {
	if c == nil {
		return def
	}
	return c
}

// subjectName is "CN=x" when the subject has a CN, else the whole DN.
func subjectName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "CN=" + c.Subject.CommonName
	}
	if s := c.Subject.String(); s != "" {
		return s
	}
	return "a certificate with an empty subject"
}

// issuerName is the issuer's CN when it has one, else its whole DN.
func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// Package certlint checks a certificate chain against the rules a Cisco Expressway and a Jabber
// client apply to it: which names the SAN list must hold, the extended key usages, where a
// wildcard may stand, key type and size, validity, and the chain to a trusted root.
//
// Lint is a pure function of its arguments (the clock is Options.Now), safe for concurrent use;
// there is nothing to start or stop. ParseChain reads the PEM or DER file to give it.
package certlint

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors from ParseChain and ParseRole; the messages say what the input held instead.
var (
	// ErrEmpty: the file has no bytes, or only white space.
	ErrEmpty = errors.New("certlint: empty file")
	// ErrNoCertificate: the file is readable but holds no certificate (other PEM blocks, text).
	ErrNoCertificate = errors.New("certlint: no certificate")
	// ErrPrivateKeyOnly: the file holds a private key and nothing else of use.
	ErrPrivateKeyOnly = errors.New("certlint: private key, no certificate")
	// ErrBadPEM: a PEM block cannot be decoded.
	ErrBadPEM = errors.New("certlint: damaged PEM")
	// ErrBadCertificate: the bytes that should be a certificate are not valid X.509 DER.
	ErrBadCertificate = errors.New("certlint: malformed certificate")
	// ErrBadRole: ParseRole got a name not in Roles.
	ErrBadRole = errors.New("certlint: unknown role")
)

// Role says what the certificate is for, which decides the rules applied.
type Role string

// Roles. The zero Role means RoleExpresswayE.
const (
	// RoleExpresswayE: the Expressway-E server (or domain) certificate Jabber meets over MRA.
	RoleExpresswayE Role = "expressway-e"
	// RoleExpresswayC: the Expressway-C server certificate (phone security profiles, chat aliases).
	RoleExpresswayC Role = "expressway-c"
	// RoleHTTP: any certificate Jabber meets over HTTPS (or SIP): SAN dNSName, then CN.
	RoleHTTP Role = "http"
	// RoleXMPP: a certificate Jabber meets over XMPP: xmppAddr, SRVName, dNSName, then CN.
	RoleXMPP Role = "xmpp"
)

// Roles lists the roles in the order a usage text shows them.
var Roles = []Role{RoleExpresswayE, RoleExpresswayC, RoleHTTP, RoleXMPP}

// ParseRole maps a name ("expressway-e", case-insensitive) to a Role; "" is RoleExpresswayE.
func ParseRole(s string) (Role, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return RoleExpresswayE, nil
	}
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of %s)", ErrBadRole, s, rolesList())
}

func rolesList() string {
	var s []string
	for _, r := range Roles {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}

// expressway reports whether the role is a certificate Expressway itself presents and
// validates peers with (SAN only, no wildcards, both EKUs).
func (r Role) expressway() bool { return r == RoleExpresswayE || r == RoleExpresswayC }

// Options says what to check the certificate against. The zero value checks an Expressway-E
// certificate, with no names required, against the system roots, now.
type Options struct {
	Role Role // what the certificate is for; default RoleExpresswayE

	// Names the SAN list must cover. Domains are Unified CM registration domains (Expressway
	// roles) or the service domains users type (http, xmpp: Jabber's edge-domain check); each
	// is covered as dNSName <domain>, dNSName collab-edge.<domain> or SRVName
	// _collab-edge._tls.<domain>. The others must be SAN dNSNames, literally.
	Domains          []string
	XMPPDomains      []string // XMPP federation domains
	ChatAliases      []string // IM and Presence chat node aliases
	SecurityProfiles []string // Unified CM phone security profile names (Expressway-C)

	// Host is the name a client connects to. Expressway roles: it must be a SAN dNSName.
	// http, xmpp: it must be covered under Jabber's identity rules for that protocol.
	Host string

	Roots *x509.CertPool // trusted roots; nil means the system's
	Now   time.Time      // the clock; zero means time.Now()
}

// Rule is the outcome of one check: its name, whether it passed, and a sentence saying why.
type Rule struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Reason string `json:"reason"`
}

// Rule names, in the order Lint reports them. Rules that do not apply to a role are left out.
const (
	RuleSAN         = "san"             // the names the SAN list must cover
	RuleCollabEdge  = "collab-edge-dns" // expressway-e: which form the domains use; informational, never fails
	RuleEKU         = "eku"             // serverAuth (and clientAuth for Expressway roles)
	RuleWildcard    = "wildcard"        // where a '*' stands; none at all on Expressway roles
	RuleKey         = "key"             // key type and size
	RuleValidity    = "validity"        // not before, not after, 30 days' warning
	RuleChain       = "chain"           // verifies to a trusted root with the file's intermediates
	expiryWarning   = 30 * 24 * time.Hour
	minRSABits      = 2048
	dateLayout      = time.DateOnly
	collabEdgeLabel = "collab-edge."
	collabEdgeSRV   = "_collab-edge._tls."
)

// Lint checks chain (leaf first, then intermediates) under o and returns one Rule per check,
// in the order of the Rule* constants. An empty chain gives one failed RuleChain.
func Lint(chain []*x509.Certificate, o Options) []Rule {
	if o.Role == "" {
		o.Role = RoleExpresswayE
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if len(chain) == 0 || chain[0] == nil {
		return []Rule{{Name: RuleChain, Reason: "no certificate to check"}}
	}
	leaf := chain[0]
	rules := []Rule{checkSAN(leaf, o)}
	if o.Role == RoleExpresswayE {
		rules = append(rules, checkCollabEdge(leaf, o))
	}
	return append(rules,
		checkEKU(leaf, o.Role),
		checkWildcard(leaf, o.Role),
		checkKey(leaf),
		checkValidity(chain, o.Now),
		checkChain(chain, o),
	)
}

// Failed returns the names of the rules that did not pass.
func Failed(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		if !r.Pass {
			out = append(out, r.Name)
		}
	}
	return out
}

func pass(name, format string, args ...any) Rule {
	return Rule{Name: name, Pass: true, Reason: fmt.Sprintf(format, args...)}
}

func fail(name, format string, args ...any) Rule {
	return Rule{Name: name, Reason: fmt.Sprintf(format, args...)}
}

func day(t time.Time) string { return t.UTC().Format(dateLayout) }

// days is how many whole days d spans, rounded down.
func days(d time.Duration) int { return int(d / (24 * time.Hour)) }

// nDays is "1 day" or "n days".
func nDays(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

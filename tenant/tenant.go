// Package tenant is edgesim's tenant model: the service domains an edge serves, their users, how
// the outside world finds them (SRV targets) and which domain-certificate scenario each rehearses.
//
// Tenants come from a YAML file (Load, Parse) or are synthesised (Synthetic); either way the
// result is a Directory, which the DNS server, the TLS listeners and the certificate provisioner
// read. A Directory is immutable once built and safe for concurrent use.
package tenant

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Scenario names the domain certificate a tenant's edge host presents.
type Scenario string

// The certificate scenarios QA can rehearse.
const (
	Valid      Scenario = "valid"       // CA-signed, SAN = SNI host and the service domain
	Missing    Scenario = "missing"     // no domain certificate: the platform certificate is served
	Expired    Scenario = "expired"     // validity ended yesterday
	WrongName  Scenario = "wrong-name"  // SAN names another host
	CNOnly     Scenario = "cn-only"     // the name only in Subject CN, no SAN
	Wildcard   Scenario = "wildcard"    // SAN *.<domain>
	SelfSigned Scenario = "self-signed" // issued by itself, trusted by nobody
	Files      Scenario = "files"       // cert_file/key_file from disk
)

// Scenarios lists the scenarios accepted in a tenants file, in documentation order.
var Scenarios = []Scenario{Valid, Missing, Expired, WrongName, CNOnly, Wildcard, SelfSigned, Files}

// Defaults used when a config or the synthetic generator says nothing.
const (
	DefaultProviderEdgeHost = "mra.sp.example"
	DefaultEdgePort         = 8443
	DefaultUsers            = 10
	SyntheticDomainPrefix   = "tenant-"
	SyntheticDomainSuffix   = ".example"
	SyntheticUserPrefix     = "user"
)

// Errors a caller can test for.
var (
	ErrNoTenants   = errors.New("tenant: no tenants")
	ErrBadDomain   = errors.New("tenant: bad domain name")
	ErrBadScenario = errors.New("tenant: unknown certificate scenario")
	ErrDuplicate   = errors.New("tenant: duplicate domain")
)

// Provider is the HCS provider that runs the shared edge.
type Provider struct {
	// EdgeHost is the SRV target for tenants served by the provider's edge (multitenant
	// deployment), e.g. mra-host.sp.com. Default mra.sp.example.
	EdgeHost string `yaml:"edge_host"`
	// Domain is the provider's own DNS zone; default: EdgeHost without its first label.
	Domain string `yaml:"domain,omitempty"`
}

// SRVTarget is one _collab-edge._tls SRV record.
type SRVTarget struct {
	Target   string `yaml:"target"`
	Port     uint16 `yaml:"port,omitempty"` // 0: the HTTPS listener's real port
	Priority uint16 `yaml:"priority,omitempty"`
	Weight   uint16 `yaml:"weight,omitempty"`
}

// Tenant is one customer: a service domain with its users and edge certificate.
type Tenant struct {
	// Domain is the service domain users type after the @ (lower case, no trailing dot).
	Domain string `yaml:"domain"`
	// Users are the user names (left of @) the edge knows; none listed means user1 … user10.
	Users []string `yaml:"users,omitempty"`
	// Passwords optionally pins a password per user; a known user without one is accepted with
	// any password, so load runs need no secrets.
	Passwords map[string]string `yaml:"passwords,omitempty"`
	// Certificate is the domain-certificate scenario; default valid.
	Certificate Scenario `yaml:"certificate,omitempty"`
	// CertFile and KeyFile load the domain certificate (PEM chain) and key from disk; setting
	// them implies the files scenario.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`
	// EdgeHost is the SRV target; empty means the provider's edge host (multitenant). A host in
	// the service domain (expe1.example.com) models a single-tenant deployment.
	EdgeHost string `yaml:"edge_host,omitempty"`
	// SRV, when set, replaces the single default record with these targets.
	SRV []SRVTarget `yaml:"srv,omitempty"`
	// ACME asks for the domain certificate to be issued and renewed through ACME ('edgesim
	// serve --acme-ca URL'); until it is issued the scenario's certificate is served.
	ACME bool `yaml:"acme,omitempty"`
}

// Targets returns the tenant's SRV records, resolving defaults against the provider.
func (t *Tenant) Targets(p Provider) []SRVTarget {
	if len(t.SRV) > 0 {
		return t.SRV
	}
	host := t.EdgeHost
	if host == "" {
		host = p.EdgeHost
	}
	return []SRVTarget{{Target: host, Priority: 10, Weight: 10}}
}

// SNIHosts returns the SNI host names a client derives for this tenant's SRV targets
// (DESIGN.md, call flow step 3), without duplicates.
func (t *Tenant) SNIHosts(p Provider) []string {
	var out []string
	for _, tg := range t.Targets(p) {
		h := SNIHost(tg.Target, t.Domain)
		dup := false
		for _, o := range out {
			dup = dup || o == h
		}
		if !dup {
			out = append(out, h)
		}
	}
	return out
}

// HasUser reports whether user is known and, if the tenant pins a password for it, whether
// password matches. Unknown users are refused.
func (t *Tenant) HasUser(user, password string) (known, ok bool) {
	for _, u := range t.Users {
		if strings.EqualFold(u, user) {
			want, pinned := t.Passwords[u]
			return true, !pinned || want == password
		}
	}
	return false, false
}

// SNIHost applies the client's SNI rule: a target inside the service domain is used unchanged,
// otherwise its first label is joined to the service domain (mra-host.sp.com for example.com
// becomes mra-host.example.com).
func SNIHost(target, domain string) string {
	target = Normalize(target)
	domain = Normalize(domain)
	if target == domain || strings.HasSuffix(target, "."+domain) {
		return target
	}
	first, _, _ := strings.Cut(target, ".")
	return first + "." + domain
}

// Normalize lower-cases a host name and drops a trailing dot.
func Normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// ValidateDomain checks that name is a plausible DNS host name (LDH labels, 1..63 octets each,
// at most 253 in all, at least two labels). A leading "*." is not allowed here.
func ValidateDomain(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadDomain)
	}
	if len(name) > 253 {
		return fmt.Errorf("%w: %q is longer than 253 characters", ErrBadDomain, name)
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%w: %q needs at least two labels, like example.com", ErrBadDomain, name)
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return fmt.Errorf("%w: %q looks like an address; a name is needed here (DNS names end in a label with a letter)", ErrBadDomain, name)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("%w: %q has an empty or over-long label", ErrBadDomain, name)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(l)-1
			if !ok {
				return fmt.Errorf("%w: %q: label %q may hold only letters, digits and inner hyphens", ErrBadDomain, name, l)
			}
		}
	}
	return nil
}

// Directory is the set of tenants an edge serves. Implementations are immutable and safe for
// concurrent use.
type Directory interface {
	// Provider returns the provider running the shared edge.
	Provider() Provider
	// Lookup finds a tenant by service domain (any case, trailing dot allowed).
	Lookup(domain string) (*Tenant, bool)
	// Len is the number of tenants.
	Len() int
	// Each calls fn for every tenant in a stable order until fn returns false.
	Each(fn func(*Tenant) bool)
}

// SyntheticDomain returns the K-th synthetic service domain (1-based): tenant-K.example.
func SyntheticDomain(k int) string {
	return SyntheticDomainPrefix + strconv.Itoa(k) + SyntheticDomainSuffix
}

// SyntheticUser returns the M-th synthetic user name (1-based): userM.
func SyntheticUser(m int) string { return SyntheticUserPrefix + strconv.Itoa(m) }

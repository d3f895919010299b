package tenant

import (
	"fmt"
	"strconv"
	"strings"
)

// Synthetic returns n generated tenants tenant-1.example … tenant-n.example, each with users
// user1 … userM (m users), served by the provider edge host mra.sp.example with valid
// certificates. Tenants are computed on demand, so a million of them cost no memory here.
func Synthetic(n, m int) (Directory, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: --tenants must be at least 1, got %d", ErrNoTenants, n)
	}
	if m < 1 {
		return nil, fmt.Errorf("tenant: --users must be at least 1, got %d", m)
	}
	users := make([]string, m)
	for i := range users {
		users[i] = SyntheticUser(i + 1)
	}
	p, _ := Provider{EdgeHost: DefaultProviderEdgeHost}.resolve()
	return &syntheticDirectory{provider: p, n: n, users: users}, nil
}

type syntheticDirectory struct {
	provider Provider
	n        int
	users    []string // shared by every tenant, never modified
}

func (d *syntheticDirectory) Provider() Provider { return d.provider }
func (d *syntheticDirectory) Len() int           { return d.n }

func (d *syntheticDirectory) tenant(k int) *Tenant {
	return &Tenant{Domain: SyntheticDomain(k), Users: d.users, Certificate: Valid}
}

func (d *syntheticDirectory) Lookup(domain string) (*Tenant, bool) {
	domain = Normalize(domain)
	rest, ok := strings.CutPrefix(domain, SyntheticDomainPrefix)
	if !ok {
		return nil, false
	}
	num, ok := strings.CutSuffix(rest, SyntheticDomainSuffix)
	if !ok || num == "" || num[0] == '0' {
		return nil, false
	}
	k, err := strconv.Atoi(num)
	if err != nil || k < 1 || k > d.n {
		return nil, false
	}
	return d.tenant(k), true
}

func (d *syntheticDirectory) Each(fn func(*Tenant) bool) {
	for k := 1; k <= d.n; k++ {
		if !fn(d.tenant(k)) {
			return
		}
	}
}

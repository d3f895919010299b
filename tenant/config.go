package tenant

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the tenants file:
//
//	provider:
//	  edge_host: mra-host.sp.com
//	tenants:
//	  - domain: example.com
//	    users: [bob, alice]
//	    certificate: valid
type Config struct {
	Provider Provider `yaml:"provider"`
	Tenants  []Tenant `yaml:"tenants"`
}

// Load reads and validates a tenants file.
func Load(path string) (Directory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenant: read config: %w", err)
	}
	c, err := decode(data)
	if err == nil {
		c.resolvePaths(filepath.Dir(path))
		var d Directory
		if d, err = c.Directory(); err == nil {
			return d, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", path, err)
}

// resolvePaths makes relative cert_file and key_file paths relative to the config's folder.
func (c *Config) resolvePaths(base string) {
	for i := range c.Tenants {
		for _, p := range []*string{&c.Tenants[i].CertFile, &c.Tenants[i].KeyFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(base, *p)
			}
		}
	}
}

// Parse decodes and validates a tenants file. Unknown keys are an error, so a typo does not
// silently fall back to a default.
func Parse(data []byte) (Directory, error) {
	c, err := decode(data)
	if err != nil {
		return nil, err
	}
	return c.Directory()
}

func decode(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the config is empty; it needs a tenants: list", ErrNoTenants)
		}
		return nil, fmt.Errorf("tenant: parse config: %w", err)
	}
	return &c, nil
}

// Directory validates the config, fills in defaults and returns it as a Directory.
func (c Config) Directory() (Directory, error) {
	p, err := c.Provider.resolve()
	if err != nil {
		return nil, err
	}
	if len(c.Tenants) == 0 {
		return nil, fmt.Errorf("%w: the config lists none under tenants:", ErrNoTenants)
	}
	d := &listDirectory{provider: p, byDomain: make(map[string]*Tenant, len(c.Tenants))}
	d.tenants = make([]Tenant, len(c.Tenants))
	for i, t := range c.Tenants {
		if err := t.resolve(); err != nil {
			return nil, fmt.Errorf("tenants[%d]: %w", i, err)
		}
		if _, dup := d.byDomain[t.Domain]; dup {
			return nil, fmt.Errorf("tenants[%d]: %w %s", i, ErrDuplicate, t.Domain)
		}
		d.tenants[i] = t
		d.byDomain[t.Domain] = &d.tenants[i]
	}
	return d, nil
}

func (p Provider) resolve() (Provider, error) {
	p.EdgeHost = Normalize(p.EdgeHost)
	if p.EdgeHost == "" {
		p.EdgeHost = DefaultProviderEdgeHost
	}
	if err := ValidateDomain(p.EdgeHost); err != nil {
		return p, fmt.Errorf("provider.edge_host: %w", err)
	}
	p.Domain = Normalize(p.Domain)
	if p.Domain == "" {
		_, p.Domain, _ = strings.Cut(p.EdgeHost, ".")
	}
	if err := ValidateDomain(p.Domain); err != nil {
		return p, fmt.Errorf("provider.domain: %w", err)
	}
	return p, nil
}

func (t *Tenant) resolve() error {
	t.Domain = Normalize(t.Domain)
	if err := ValidateDomain(t.Domain); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	if t.CertFile != "" || t.KeyFile != "" {
		if t.Certificate != "" && t.Certificate != Files {
			return fmt.Errorf("%s: cert_file/key_file and certificate: %s contradict each other; drop one", t.Domain, t.Certificate)
		}
		if t.CertFile == "" || t.KeyFile == "" {
			return fmt.Errorf("%s: cert_file and key_file go together", t.Domain)
		}
		t.Certificate = Files
	}
	if t.Certificate == "" {
		t.Certificate = Valid
	}
	if !slices.Contains(Scenarios, t.Certificate) {
		return fmt.Errorf("%s: %w %q (want one of %s)", t.Domain, ErrBadScenario, t.Certificate, scenarioList())
	}
	if t.Certificate == Files && t.CertFile == "" {
		return fmt.Errorf("%s: certificate: files needs cert_file and key_file", t.Domain)
	}
	if t.EdgeHost != "" {
		t.EdgeHost = Normalize(t.EdgeHost)
		if err := ValidateDomain(t.EdgeHost); err != nil {
			return fmt.Errorf("%s: edge_host: %w", t.Domain, err)
		}
	}
	for i := range t.SRV {
		t.SRV[i].Target = Normalize(t.SRV[i].Target)
		if err := ValidateDomain(t.SRV[i].Target); err != nil {
			return fmt.Errorf("%s: srv[%d].target (SRV targets are names, never addresses): %w", t.Domain, i, err)
		}
	}
	if t.ACME && (t.CertFile != "" || t.KeyFile != "") {
		return fmt.Errorf("%s: acme: true and cert_file/key_file both given: ACME issues the certificate, so drop the files (or acme)", t.Domain)
	}
	if len(t.Users) == 0 {
		t.Users = defaultUsers
	}
	for _, u := range t.Users {
		if u == "" || strings.ContainsAny(u, "@ \t:/") {
			return fmt.Errorf("%s: user %q: give the part before @ only, without spaces, ':' or '/'", t.Domain, u)
		}
	}
	for u := range t.Passwords {
		if !slices.Contains(t.Users, u) {
			return fmt.Errorf("%s: passwords: %q is not in users", t.Domain, u)
		}
	}
	return nil
}

// defaultUsers are the users of a tenant whose entry lists none, as for synthetic tenants.
var defaultUsers = func() []string {
	u := make([]string, DefaultUsers)
	for i := range u {
		u[i] = SyntheticUser(i + 1)
	}
	return u
}()

func scenarioList() string {
	s := make([]string, len(Scenarios))
	for i, v := range Scenarios {
		s[i] = string(v)
	}
	return strings.Join(s, "|")
}

type listDirectory struct {
	provider Provider
	tenants  []Tenant
	byDomain map[string]*Tenant
}

func (d *listDirectory) Provider() Provider { return d.provider }
func (d *listDirectory) Len() int           { return len(d.tenants) }

func (d *listDirectory) Lookup(domain string) (*Tenant, bool) {
	t, ok := d.byDomain[domain]
	if !ok {
		t, ok = d.byDomain[Normalize(domain)]
	}
	return t, ok
}

func (d *listDirectory) Each(fn func(*Tenant) bool) {
	for i := range d.tenants {
		if !fn(&d.tenants[i]) {
			return
		}
	}
}

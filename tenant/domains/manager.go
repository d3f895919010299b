// Package domains manages domain certificates as Expressway-E does (Maintenance > Security >
// Domain certificates): add a domain, make a CSR for it whose private key never leaves the
// server, upload the signed certificate (or a certificate and its key made elsewhere), view it
// decoded or as PEM, delete the domain, or let ACME request and deploy its certificate.
//
// Build a Manager with New, call Load once to restore what storage holds, then use its methods
// or serve Handler (the admin JSON API under /api/v1). A Manager is safe for concurrent use and
// needs no stopping. Certificates reach the TLS listeners through Config.Install and leave
// through Config.Remove; no method, response, log line or error ever carries a private key.
package domains

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/edgesim/edgesim/tenant"
)

// Config configures New. Storage is required; the zero value of every other field means its
// default.
type Config struct {
	// Storage keeps domains between runs, under keys "edgesim/domains/<domain>/...":
	// domain.json (metadata, written last), cert.pem (the chain), key.pem (its private key),
	// csr.pem and csr.key (a pending CSR). certmagic.FileStorage writes files 0600 in folders
	// 0700, each through a temporary file and a rename.
	Storage certmagic.Storage
	// HostsFor returns the SNI host names a domain's certificate is served for (from the tenant
	// directory). Default: the domain itself.
	HostsFor func(domain string) []string
	// Install puts a certificate into the SNI store for host; the next handshake sees it.
	// Default: nothing.
	Install func(host string, c *tls.Certificate)
	// Remove takes a host's domain certificate out of the SNI store; the caller restores what
	// was there before the first Install. Default: nothing.
	Remove func(host string)
	// ACME requests and renews certificates; nil means ACME is not available (the API answers
	// 501 for it).
	ACME ACME
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Roots, when set, gives the roots clients trust (the edge's local CA and the system's): a
	// certificate that does not verify to them is accepted with a warning saying so. It is
	// called when a certificate is checked, so that the system's roots (about 1 MB) are loaded
	// only by an edge that is given certificates to check.
	Roots func() *x509.CertPool
	// Logger gets one line per change and per problem found by Load; default: none.
	Logger *zap.Logger
}

// Manager holds the domains and their certificates. Build it with New.
type Manager struct {
	cfg     Config
	log     *zap.Logger
	mu      sync.Mutex
	domains map[string]*entry
	// broken are stored domains Load could not read: their files are kept untouched, and Add
	// refuses them, so a damaged domain.json never costs a good certificate and key.
	broken map[string]error
}

// entry is one domain's state.
type entry struct {
	domain    string
	added     time.Time
	acme      bool
	cert      *tls.Certificate // the uploaded chain and key, Leaf set; nil when none
	uploaded  time.Time
	csr       *pendingCSR
	acmeCert  *tls.Certificate // deployed by ACME while acme is on
	installed []string         // hosts the served certificate is installed on
	busy      bool             // a CSR key is being generated
}

// pendingCSR is a CSR waiting for its certificate; key never leaves the Manager.
type pendingCSR struct {
	der     []byte
	req     *x509.CertificateRequest
	key     crypto.Signer
	created time.Time
}

// New checks cfg and returns a Manager with no domains; call Load to restore stored ones.
func New(cfg Config) (*Manager, error) {
	if cfg.Storage == nil {
		return nil, fmt.Errorf("domains: Config.Storage is required")
	}
	if cfg.HostsFor == nil {
		cfg.HostsFor = func(d string) []string { return []string{d} }
	}
	if cfg.Install == nil {
		cfg.Install = func(string, *tls.Certificate) {}
	}
	if cfg.Remove == nil {
		cfg.Remove = func(string) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Manager{cfg: cfg, log: cfg.Logger.Named("domains"), domains: map[string]*entry{}}, nil
}

// Info is one row of List: a domain and the certificate it serves.
type Info struct {
	Domain     string     `json:"domain"`
	Hosts      []string   `json:"hosts"`
	Source     string     `json:"source"` // upload, acme or none
	Subject    string     `json:"subject,omitempty"`
	SANs       []string   `json:"sans,omitempty"`
	Issuer     string     `json:"issuer,omitempty"`
	NotAfter   time.Time  `json:"not_after,omitzero"`
	Expired    bool       `json:"expired,omitempty"`
	CSRPending bool       `json:"csr_pending"`
	ACME       ACMEStatus `json:"acme"`
}

// Sources of the certificate a domain serves.
const (
	SourceUpload = "upload"
	SourceACME   = "acme"
	SourceNone   = "none"
)

// served returns the certificate the domain's hosts present and where it came from.
func (e *entry) served() (*tls.Certificate, string) {
	if e.acme && e.acmeCert != nil {
		return e.acmeCert, SourceACME
	}
	if e.cert != nil {
		return e.cert, SourceUpload
	}
	return nil, SourceNone
}

// info describes e; the caller holds m.mu.
func (m *Manager) info(e *entry) Info {
	in := Info{Domain: e.domain, Hosts: m.hosts(e.domain), CSRPending: e.csr != nil, ACME: m.acmeStatus(e)}
	c, src := e.served()
	in.Source = src
	if c != nil {
		in.Subject = c.Leaf.Subject.String()
		in.SANs = sanList(c.Leaf)
		in.Issuer = c.Leaf.Issuer.String()
		in.NotAfter = c.Leaf.NotAfter.UTC()
		in.Expired = m.cfg.Now().After(c.Leaf.NotAfter)
	}
	return in
}

// hosts returns the domain's SNI hosts, normalised and without duplicates.
func (m *Manager) hosts(domain string) []string {
	var out []string
	for _, h := range m.cfg.HostsFor(domain) {
		if h = tenant.Normalize(h); h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// List returns every domain, sorted by name.
func (m *Manager) List() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Info, 0, len(m.domains))
	for _, e := range m.domains {
		out = append(out, m.info(e))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// Get returns one domain's row.
func (m *Manager) Get(domain string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(domain)
	if err != nil {
		return Info{}, err
	}
	return m.info(e), nil
}

// checkDomain normalises and validates a domain name from a user.
func checkDomain(domain string) (string, error) {
	d := tenant.Normalize(domain)
	if strings.HasPrefix(d, "*.") {
		return "", fail(ErrBadDomain, "%q: add the domain itself (%s), not a wildcard; a wildcard certificate can be uploaded for it", domain, d[2:])
	}
	if err := tenant.ValidateDomain(d); err != nil {
		msg := strings.TrimPrefix(err.Error(), tenant.ErrBadDomain.Error()+": ")
		return "", fail(ErrBadDomain, "bad domain name: %s", msg)
	}
	return d, nil
}

// lookup finds an added domain; the caller holds m.mu.
func (m *Manager) lookup(domain string) (*entry, error) {
	d, err := checkDomain(domain)
	if err != nil {
		return nil, err
	}
	e, ok := m.domains[d]
	if !ok {
		return nil, fail(ErrNotFound, "domain %s is not added; add it first (POST /api/v1/domains, or 'edgesim domains add %s')", d, d)
	}
	return e, nil
}

// Add adds a domain with no certificate.
func (m *Manager) Add(ctx context.Context, domain string) (Info, error) {
	d, err := checkDomain(domain)
	if err != nil {
		return Info{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.domains[d]; ok {
		return Info{}, fail(ErrExists, "domain %s is already added; delete it first to start over", d)
	}
	if err, ok := m.broken[d]; ok {
		return Info{}, fail(ErrExists, "domain %s has stored files that could not be read at start (%v): repair or remove them under the data directory's certmagic/%s folder, then restart; adding it again would delete its certificate and key", d, err, prefix(d))
	}
	e := &entry{domain: d, added: m.cfg.Now().UTC()}
	// Leftovers of an interrupted delete must not come back with the new domain.
	if err := m.cfg.Storage.Delete(ctx, prefix(d)); err != nil {
		return Info{}, storageErr("clear old files", d, err)
	}
	if err := m.saveMeta(ctx, e); err != nil {
		return Info{}, err
	}
	m.domains[d] = e
	m.log.Info("domain added", zap.String("domain", d))
	return m.info(e), nil
}

// Delete removes a domain: its hosts get back what they served before, its files are removed
// and ACME stops for it.
func (m *Manager) Delete(ctx context.Context, domain string) error {
	e, err := m.delete(ctx, domain)
	if err != nil {
		return err
	}
	// Without the lock: an ACME implementation may wait on work that calls DeployACME.
	if e.acme && m.cfg.ACME != nil {
		m.cfg.ACME.Disable(e.domain)
	}
	return nil
}

func (m *Manager) delete(ctx context.Context, domain string) (*entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(domain)
	if err != nil {
		return nil, err
	}
	if e.busy {
		return nil, fail(ErrUnavailable, "a CSR is being generated for %s; try again in a moment", e.domain)
	}
	// The metadata goes first: without it a half-deleted domain is not loaded again.
	if err := m.cfg.Storage.Delete(ctx, metaKey(e.domain)); err != nil {
		return nil, storageErr("delete the domain", e.domain, err)
	}
	if err := m.cfg.Storage.Delete(ctx, prefix(e.domain)); err != nil {
		m.log.Warn("files left behind; they are removed on the next start or add", zap.String("domain", e.domain), zap.Error(err))
	}
	m.uninstall(e)
	delete(m.domains, e.domain)
	m.log.Info("domain deleted", zap.String("domain", e.domain))
	return e, nil
}

// apply installs the certificate e serves on all its hosts, or removes it from them when it
// serves none; the caller holds m.mu. An expired certificate is not installed.
func (m *Manager) apply(e *entry) {
	c, _ := e.served()
	if c == nil || m.cfg.Now().After(c.Leaf.NotAfter) {
		m.uninstall(e)
		return
	}
	// The handshake needs the chain and the key; the parsed leaf stays with the Manager.
	tc := &tls.Certificate{Certificate: c.Certificate, PrivateKey: c.PrivateKey}
	hosts := m.hosts(e.domain)
	for _, h := range e.installed {
		if !slices.Contains(hosts, h) {
			m.cfg.Remove(h)
		}
	}
	for _, h := range hosts {
		m.cfg.Install(h, tc)
	}
	e.installed = hosts
}

// uninstall removes e's certificate from the hosts it was installed on.
func (m *Manager) uninstall(e *entry) {
	for _, h := range e.installed {
		m.cfg.Remove(h)
	}
	e.installed = nil
}

// Package acme issues and renews edgesim's per-domain certificates through ACME, as the
// Expressway-E's ACME client does since X12.5: each enabled domain gets a certificate for its
// names (the SNI host and the service domain), renewed when two thirds of its life have passed,
// and deployed without a restart through the OnCertificate callback (which feeds the sni store).
//
// certmagic does the certificate management (storage, locking, renewal, the maintenance loop);
// acmez places the orders. Challenges are answered by edgesim's own servers through Challenges:
// TLS-ALPN-01 by the edge's HTTPS listener, DNS-01 by edgesim's DNS, HTTP-01 by an HTTP
// listener if there is one. The package never opens a socket of its own except to the CA.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	acmeproto "github.com/mholt/acmez/v3/acme"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
)

// Errors returned by the package.
var (
	// ErrStopped is returned once the Manager has been stopped.
	ErrStopped = errors.New("acme: manager stopped")
	// ErrNotManaged is returned by Renew for a domain that is not enabled.
	ErrNotManaged = errors.New("acme: domain is not managed by ACME; enable it first")
	// ErrBadDomain is returned for a name that cannot be on a certificate.
	ErrBadDomain = errors.New("acme: not a domain name")
	// ErrBadCA is returned by New when the directory URL (--acme-ca) is missing or not http(s).
	ErrBadCA = errors.New("acme: the ACME directory URL (--acme-ca) must be an https URL")
	// ErrNoStorage is returned by New without a Storage.
	ErrNoStorage = errors.New("acme: no certificate storage configured")
	// ErrBadSolver is returned by New for a challenge type it does not know.
	ErrBadSolver = errors.New("acme: unknown challenge type; use tls-alpn-01, dns-01 or http-01")
	// ErrNoResolvers is returned by New when dns-01 is asked for without DNSResolvers.
	ErrNoResolvers = errors.New("acme: dns-01 needs DNSResolvers (the address of edgesim's DNS) to find each zone")
)

// The challenge types a Manager can offer (Config.Solvers).
const (
	SolverTLSALPN = "tls-alpn-01"
	SolverDNS     = "dns-01"
	SolverHTTP    = "http-01"
)

// Config configures a Manager. Zero values mean the default given beside each field.
type Config struct {
	CA    string         // ACME directory URL (--acme-ca); required
	Roots *x509.CertPool // trust for the CA's HTTPS (--acme-ca-root); nil: the system roots
	Email string         // account contact; may be empty

	// Storage holds certificates, keys and the account key; shared with the rest of edgesim
	// (a certmagic.FileStorage under the data directory). Required.
	Storage certmagic.Storage
	// Challenges is where the answers to pending challenges are published for the DNS server
	// and the listeners; nil: a new one, see Manager.Challenges.
	Challenges *Challenges
	// Solvers are the challenge types offered: SolverTLSALPN, SolverDNS, SolverHTTP. Default:
	// tls-alpn-01, plus dns-01 when DNSResolvers is set. http-01 only works when an HTTP
	// listener on port 80 calls Challenges.ServeHTTPChallenge.
	Solvers []string
	// Workers bounds how many domains are loaded, ordered or renewed at once. Default 4.
	Workers int
	// Names lists the names a domain's certificate carries; the domain itself always comes
	// first and is added if missing. Default: the domain alone.
	Names func(domain string) []string
	// OnCertificate is called when a domain's certificate is obtained, renewed or loaded from
	// storage, with Leaf set, once per certificate. Calls are serialised: keep it quick, and do
	// not call Enable or Renew from it. May be nil.
	OnCertificate func(domain string, c *tls.Certificate)

	Logger     *zap.Logger           // nil: no logs
	Registerer prometheus.Registerer // gets the edgesim_acme_* metrics; nil: none

	// DNSResolvers ("host:port") answer the SOA lookups certmagic's DNS-01 solver makes to find
	// each name's zone, and its propagation checks: edgesim's own DNS server. Never the system
	// resolvers, which would take the lookups off the host.
	DNSResolvers []string
	// PropagationTimeout bounds the DNS-01 propagation check; 0 skips it, which is right when
	// the DNS server reads Challenges directly (the record is visible at once).
	PropagationTimeout time.Duration

	KeyType            certmagic.KeyType // certificate keys; default RSA 2048, as Expressway recommends
	RenewCheckInterval time.Duration     // how often certmagic looks for certificates to renew; default 10 min
	OrderTimeout       time.Duration     // one issuance or renewal, all challenges included; default 5 min
	RetryInterval      time.Duration     // first retry after a failure, doubling up to an hour; default 1 min
}

// Manager issues and renews domain certificates. Build it with New, turn domains on with Enable,
// and call Stop when done. All methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	log   *zap.Logger
	met   *metrics
	iss   *issuer
	cache *certmagic.Cache
	magic *certmagic.Config

	ctx    context.Context // cancelled by Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   sync.Once

	deliverMu sync.Mutex // serialises OnCertificate

	mu      sync.Mutex
	cond    *sync.Cond // a domain was queued, or the Manager stopped
	stopped bool
	queue   []string
	domains map[string]*domainState
	expiry  expiryHeap
	managed int
}

type domainState struct {
	st       Status
	gen      int  // bumped by Enable and Disable; outcomes of older generations are dropped
	queued   bool // in Manager.queue
	cancel   context.CancelFunc
	retry    *time.Timer
	failures int
	// delivered identifies the certificate last handed to OnCertificate (issuer and serial);
	// Disable clears it, so enabling again deploys the certificate again.
	delivered string
}

// New checks cfg and returns a Manager with its workers running.
func New(cfg Config) (*Manager, error) {
	key, err := issuerKeyFor(cfg.CA)
	if err != nil {
		return nil, err
	}
	if cfg.Storage == nil {
		return nil, ErrNoStorage
	}
	if cfg.Challenges == nil {
		cfg.Challenges = &Challenges{}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.KeyType == "" {
		cfg.KeyType = certmagic.RSA2048
	}
	if cfg.OrderTimeout <= 0 {
		cfg.OrderTimeout = 5 * time.Minute
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Minute
	}
	if cfg.RenewCheckInterval <= 0 {
		cfg.RenewCheckInterval = certmagic.DefaultRenewCheckInterval
	}
	if len(cfg.Solvers) == 0 {
		cfg.Solvers = []string{SolverTLSALPN}
		if len(cfg.DNSResolvers) > 0 {
			cfg.Solvers = append(cfg.Solvers, SolverDNS)
		}
	}
	log := cfg.Logger.Named("acme")
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}

	m := &Manager{cfg: cfg, log: log, met: met, domains: make(map[string]*domainState)}
	m.cond = sync.NewCond(&m.mu)
	m.ctx, m.cancel = context.WithCancel(context.Background())

	solvers := make(map[string]acmez.Solver, len(cfg.Solvers))
	for _, s := range cfg.Solvers {
		var solver acmez.Solver
		switch s {
		case SolverTLSALPN:
			solver = &alpnSolver{c: cfg.Challenges}
		case SolverHTTP:
			solver = httpSolver{c: cfg.Challenges}
		case SolverDNS:
			if len(cfg.DNSResolvers) == 0 {
				return nil, ErrNoResolvers
			}
			timeout := cfg.PropagationTimeout
			if timeout <= 0 {
				timeout = -1 // certmagic: no propagation check
			}
			solver = &certmagic.DNS01Solver{DNSManager: certmagic.DNSManager{
				DNSProvider:        cfg.Challenges,
				Resolvers:          cfg.DNSResolvers,
				PropagationTimeout: timeout,
				Logger:             log.Named("dns01"),
			}}
		default:
			return nil, fmt.Errorf("%w: %q", ErrBadSolver, s)
		}
		solvers[s] = observingSolver{Solver: solver, typ: s, observe: m.observe}
	}

	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment, // never used for loopback
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.Roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   2 * cfg.Workers,
		IdleConnTimeout:       time.Minute,
	}
	client := &acmez.Client{
		Client: &acmeproto.Client{
			Directory:   cfg.CA,
			HTTPClient:  &http.Client{Transport: transport},
			UserAgent:   "edgesim",
			PollTimeout: cfg.OrderTimeout,
			Logger: slog.New(zapslog.NewHandler(log.Named("acmez").Core(),
				zapslog.WithName(log.Name()+".acmez"))),
		},
		ChallengeSolvers: solvers,
	}
	m.iss = &issuer{
		key:     key,
		client:  client,
		names:   m.names,
		keys:    &keyMemory{gen: certmagic.StandardKeyGenerator{KeyType: cfg.KeyType}},
		store:   cfg.Storage,
		email:   cfg.Email,
		met:     met,
		log:     log,
		observe: m.observe,
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: cfg.RenewCheckInterval,
		Logger:             log.Named("cache"),
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage:    cfg.Storage,
		Issuers:    []certmagic.Issuer{m.iss},
		KeySource:  m.iss.keys,
		OnEvent:    m.onEvent,
		DisableARI: true,                                        // the issuer is not certmagic's ACMEIssuer
		OCSP:       certmagic.OCSPConfig{DisableStapling: true}, // no responder on the loopback CA; none needed
		Logger:     log.Named("certmagic"),
	})

	for range cfg.Workers {
		m.wg.Add(1)
		go m.worker()
	}
	return m, nil
}

// Challenges returns the store the Manager publishes challenge answers in.
func (m *Manager) Challenges() *Challenges { return m.cfg.Challenges }

// names returns the names of domain's certificate, domain first.
func (m *Manager) names(domain string) []string {
	names := []string{domain}
	if m.cfg.Names != nil {
		for _, n := range m.cfg.Names(domain) {
			n = canonName(n)
			if n != "" && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

// canonDomain lower-cases domain, drops a trailing dot, and checks it can be on a certificate.
func canonDomain(domain string) (string, error) {
	d := canonName(strings.TrimSpace(domain))
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") || !certmagic.SubjectQualifiesForCert(d) ||
		net.ParseIP(d) != nil {
		return "", fmt.Errorf("%w: %q", ErrBadDomain, domain)
	}
	return d, nil
}

// Enable starts managing domain's certificate; enabling a managed domain does nothing. A
// certificate already in storage is loaded and handed to OnCertificate before Enable returns,
// with no order (it is renewed in the background if it is due or lacks one of the domain's
// names); otherwise the domain is queued for issuance.
func (m *Manager) Enable(domain string) error {
	d, err := canonDomain(domain)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return ErrStopped
	}
	ds := m.domains[d]
	if ds != nil && ds.st.State != StateDisabled {
		m.mu.Unlock()
		return nil
	}
	if ds == nil {
		ds = &domainState{st: Status{Domain: d}}
		m.domains[d] = ds
	}
	ds.gen++
	ds.failures = 0
	ds.st.State, ds.st.LastError, ds.st.NextRetry, ds.st.Updated = StateQueued, "", time.Time{}, time.Now()
	m.managed++
	m.met.managed.Set(float64(m.managed))
	gen := ds.gen
	m.mu.Unlock()

	cert, err := m.magic.CacheManagedCertificate(m.ctx, d)
	switch {
	case err == nil:
		m.deliver(d, cert.Certificate)
		if m.current(d, cert) {
			m.settle(d, gen, nil)
			return nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		m.log.Warn("loading stored certificate", zap.String("domain", d), zap.Error(err))
	}
	m.enqueue(d, gen)
	return nil
}

// Disable stops managing domain: a pending order is cancelled and the certificate is no longer
// renewed. Storage is kept, so enabling the domain again loads the certificate without an order.
func (m *Manager) Disable(domain string) {
	d, err := canonDomain(domain)
	if err != nil {
		return
	}
	m.mu.Lock()
	ds := m.domains[d]
	if ds == nil || ds.st.State == StateDisabled {
		m.mu.Unlock()
		return
	}
	ds.gen++
	ds.queued = false
	if ds.cancel != nil {
		ds.cancel()
		ds.cancel = nil
	}
	if ds.retry != nil {
		ds.retry.Stop()
		ds.retry = nil
	}
	ds.delivered = ""
	ds.st.State, ds.st.NextRetry, ds.st.Updated = StateDisabled, time.Time{}, time.Now()
	m.managed--
	m.met.managed.Set(float64(m.managed))
	m.updateExpiry()
	m.mu.Unlock()
	m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: d, IssuerKey: m.iss.key}})
}

// Status reports domain's state; a domain never enabled is StateUnmanaged.
func (m *Manager) Status(domain string) Status {
	d, err := canonDomain(domain)
	if err != nil {
		return Status{Domain: domain, State: StateUnmanaged}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ds := m.domains[d]
	if ds == nil {
		return Status{Domain: d, State: StateUnmanaged}
	}
	st := ds.st
	st.Names = slices.Clone(st.Names)
	return st
}

// Statuses reports every domain this Manager has seen, sorted by name.
func (m *Manager) Statuses() []Status {
	m.mu.Lock()
	out := make([]Status, 0, len(m.domains))
	for _, ds := range m.domains {
		st := ds.st
		st.Names = slices.Clone(st.Names)
		out = append(out, st)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Domain, b.Domain) })
	return out
}

// Renew renews domain's certificate now, in the caller's goroutine, and deploys it. Unless force
// is set, a certificate that is not yet due is left alone. A domain without a certificate gets
// one.
func (m *Manager) Renew(ctx context.Context, domain string, force bool) error {
	d, err := canonDomain(domain)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return ErrStopped
	}
	ds := m.domains[d]
	if ds == nil || ds.st.State == StateDisabled {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotManaged, d)
	}
	ds.st.State, ds.st.Updated = StateOrdering, time.Now()
	gen := ds.gen
	m.mu.Unlock()

	err = m.magic.RenewCertSync(ctx, d, force)
	if err == nil {
		err = m.install(ctx, d)
	}
	m.settle(d, gen, err)
	return err
}

// Stop cancels pending orders, waits for the workers and stops certmagic's maintenance. Storage
// and Challenges are left as they are. Stop may be called more than once.
func (m *Manager) Stop() {
	m.stop.Do(func() {
		m.mu.Lock()
		m.stopped = true
		for _, ds := range m.domains {
			if ds.retry != nil {
				ds.retry.Stop()
			}
		}
		m.cond.Broadcast()
		m.mu.Unlock()
		m.cancel()
		m.wg.Wait()
		m.cache.Stop()
	})
}

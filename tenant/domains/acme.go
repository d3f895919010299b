package domains

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"go.uber.org/zap"
)

// ACME requests, deploys and renews domain certificates through an ACME CA (Expressway-E's
// per-domain ACME switch); the acme package's Manager does this work behind a small adapter.
// An implementation hands each certificate it obtains, renews or loads to Manager.DeployACME,
// possibly from within Enable. Enable and Disable are called without the Manager's lock held;
// Status is called with it held, so it must not call into the Manager. Implementations must be
// safe for concurrent use.
type ACME interface {
	// Enable starts requesting and renewing the domain's certificate, for the names
	// Manager.ACMENames gives. An error means the work cannot even start; its message is shown
	// to the user.
	Enable(domain string) error
	// Disable stops renewing the domain's certificate.
	Disable(domain string)
	// Status reports where the domain's ACME work stands.
	Status(domain string) ACMEStatus
}

// ACMEStatus is the ACME column of the domain list.
type ACMEStatus struct {
	// State is "off" when ACME is not on for the domain, "unavailable" when it is on but this
	// edge has no ACME configured; otherwise the implementation's word, such as "pending",
	// "issued", "renewing" or "failed".
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"` // a sentence, e.g. the last error
}

// States the Manager itself reports.
const (
	ACMEOff         = "off"
	ACMEUnavailable = "unavailable"
)

func (m *Manager) acmeStatus(e *entry) ACMEStatus {
	switch {
	case !e.acme:
		return ACMEStatus{State: ACMEOff}
	case m.cfg.ACME == nil:
		return ACMEStatus{State: ACMEUnavailable, Detail: "ACME is on for this domain but not configured on this edge"}
	}
	return m.cfg.ACME.Status(e.domain)
}

// ACMENames are the names an ACME certificate for domain carries: its SNI hosts and the domain
// itself (the check Jabber makes). It takes no lock; an ACME implementation may call it at any
// time.
func (m *Manager) ACMENames(domain string) []string {
	names := m.hosts(domain)
	for _, n := range names {
		if n == domain {
			return names
		}
	}
	return append(names, domain)
}

// EnableACME turns ACME on for domain: its certificate is requested and, once issued, served
// instead of an uploaded one.
func (m *Manager) EnableACME(ctx context.Context, domain string) (ACMEStatus, error) {
	m.mu.Lock()
	e, err := m.lookup(domain)
	switch {
	case err != nil:
	case m.cfg.ACME == nil:
		err = fail(ErrNoACME, "ACME is not configured on this edge (start 'edgesim serve' with --acme-ca URL); or upload a certificate for %s instead (make a CSR, have it signed, upload it)", e.domain)
	case e.acme:
		st := m.acmeStatus(e)
		m.mu.Unlock()
		return st, nil
	default:
		// On first, so that a certificate ACME hands over from within Enable is taken.
		e.acme = true
		if err = m.saveMeta(ctx, e); err != nil {
			e.acme = false
		}
	}
	m.mu.Unlock()
	if err != nil {
		return ACMEStatus{}, err
	}
	if err := m.cfg.ACME.Enable(e.domain); err != nil {
		m.mu.Lock()
		if m.domains[e.domain] == e {
			e.acme, e.acmeCert = false, nil
			if serr := m.saveMeta(ctx, e); serr != nil {
				m.log.Warn("could not record ACME off", zap.String("domain", e.domain), zap.Error(serr))
			}
			m.apply(e)
		}
		m.mu.Unlock()
		return ACMEStatus{}, fail(ErrACME, "ACME could not start for %s: %v", e.domain, err)
	}
	m.log.Info("ACME on", zap.String("domain", e.domain))
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acmeStatus(e), nil
}

// DisableACME turns ACME off for domain; an uploaded certificate, if any, is served again.
func (m *Manager) DisableACME(ctx context.Context, domain string) (ACMEStatus, error) {
	m.mu.Lock()
	e, err := m.lookup(domain)
	if err != nil {
		m.mu.Unlock()
		return ACMEStatus{}, err
	}
	if !e.acme {
		st := m.acmeStatus(e)
		m.mu.Unlock()
		return st, nil
	}
	e.acme = false
	if err := m.saveMeta(ctx, e); err != nil {
		e.acme = true
		m.mu.Unlock()
		return ACMEStatus{}, err
	}
	e.acmeCert = nil
	m.apply(e)
	m.mu.Unlock()
	if m.cfg.ACME != nil {
		m.cfg.ACME.Disable(e.domain)
	}
	m.log.Info("ACME off", zap.String("domain", e.domain))
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acmeStatus(e), nil
}

// ACMEState returns the ACME status of domain.
func (m *Manager) ACMEState(domain string) (ACMEStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(domain)
	if err != nil {
		return ACMEStatus{}, err
	}
	return m.acmeStatus(e), nil
}

// DeployACME is how the ACME implementation hands over a certificate it obtained or renewed:
// it is served at once on the domain's hosts while ACME stays on. The ACME implementation keeps
// the certificate and key in its own storage and deploys them again after a restart.
func (m *Manager) DeployACME(domain string, c *tls.Certificate) error {
	if c == nil || len(c.Certificate) == 0 || c.PrivateKey == nil {
		return fmt.Errorf("domains: DeployACME %s: a certificate chain and its key are needed", domain)
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("domains: DeployACME %s: %w", domain, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(domain)
	if err != nil {
		return err
	}
	if !e.acme {
		return fmt.Errorf("domains: DeployACME %s: ACME is off for this domain", e.domain)
	}
	e.acmeCert = &tls.Certificate{Certificate: c.Certificate, PrivateKey: c.PrivateKey, Leaf: leaf}
	m.apply(e)
	m.log.Info("ACME certificate deployed", zap.String("domain", e.domain), zap.Time("not_after", leaf.NotAfter))
	return nil
}

package acme

import (
	"container/heap"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// This file is the Manager's work loop: the queue and its workers, loading, obtaining and
// renewing through certmagic, and deploying certificates through OnCertificate.

// enqueue queues d for a worker unless it is already queued or changed generation.
func (m *Manager) enqueue(d string, gen int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ds := m.domains[d]
	if m.stopped || ds == nil || ds.gen != gen || ds.queued || ds.st.State == StateDisabled {
		return
	}
	ds.retry = nil
	ds.queued = true
	ds.st.State, ds.st.Updated = StateQueued, time.Now()
	m.queue = append(m.queue, d)
	m.cond.Signal()
}

func (m *Manager) worker() {
	defer m.wg.Done()
	for {
		m.mu.Lock()
		for len(m.queue) == 0 && !m.stopped {
			m.cond.Wait()
		}
		if m.stopped {
			m.mu.Unlock()
			return
		}
		d := m.queue[0]
		m.queue[0] = ""
		m.queue = m.queue[1:]
		ds := m.domains[d]
		if ds == nil || !ds.queued {
			m.mu.Unlock()
			continue
		}
		ds.queued = false
		ds.st.State, ds.st.Updated = StateOrdering, time.Now()
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.OrderTimeout)
		ds.cancel = cancel
		gen := ds.gen
		m.mu.Unlock()

		err := m.manage(ctx, d)
		cancel()
		m.settle(d, gen, err)
	}
}

// manage loads d's certificate from storage, renewing it if due or if it lacks one of d's
// names (Config.Names changed), or obtains one.
func (m *Manager) manage(ctx context.Context, d string) error {
	cert, err := m.magic.CacheManagedCertificate(ctx, d)
	switch {
	case err == nil && m.current(d, cert):
		m.deliver(d, cert.Certificate)
		return nil
	case err == nil:
		m.deliver(d, cert.Certificate) // it serves until the new one is there
		err = m.magic.RenewCertSync(ctx, d, !m.covers(d, cert))
	case errors.Is(err, fs.ErrNotExist):
		err = m.magic.ObtainCertSync(ctx, d)
	}
	if err != nil {
		return err
	}
	return m.install(ctx, d)
}

// current reports whether cert can stay: not due for renewal and carrying all of d's names.
func (m *Manager) current(d string, cert certmagic.Certificate) bool {
	return !cert.NeedsRenewal(m.magic) && m.covers(d, cert)
}

// covers reports whether cert carries every name d's certificate should.
func (m *Manager) covers(d string, cert certmagic.Certificate) bool {
	for _, n := range m.names(d) {
		if !slices.Contains(cert.Names, n) {
			return false
		}
	}
	return true
}

// install puts d's certificate from storage into certmagic's cache in place of the old one, so
// that its maintenance renews it, and deploys it.
func (m *Manager) install(ctx context.Context, d string) error {
	m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: d, IssuerKey: m.iss.key}})
	cert, err := m.magic.CacheManagedCertificate(ctx, d)
	if err != nil {
		return fmt.Errorf("acme: %s: loading the new certificate: %w", d, err)
	}
	if len(cert.Names) > 0 && cert.Names[0] != d {
		// certmagic renews a certificate under its first name
		m.log.Warn("certificate's first name is not its domain; background renewal will miss it",
			zap.String("domain", d), zap.Strings("names", cert.Names))
	}
	m.deliver(d, cert.Certificate)
	return nil
}

// settle records the outcome of an attempt on d, scheduling a retry after a failure.
func (m *Manager) settle(d string, gen int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ds := m.domains[d]
	if ds == nil || ds.gen != gen || ds.st.State == StateDisabled {
		return
	}
	ds.cancel = nil
	now := time.Now()
	ds.st.Updated = now
	if err == nil {
		ds.failures = 0
		ds.st.State, ds.st.LastError, ds.st.NextRetry = StateValid, "", time.Time{}
		return
	}
	ds.st.LastError = errorText(err)
	if ds.st.NotAfter.After(now) {
		ds.st.State = StateValid // the deployed certificate still serves
	} else {
		ds.st.State = StateFailed
	}
	if m.stopped {
		return
	}
	delay := m.cfg.RetryInterval << min(ds.failures, 10)
	delay = min(delay, time.Hour)
	ds.failures++
	ds.st.NextRetry = now.Add(delay)
	if ds.retry != nil {
		ds.retry.Stop()
	}
	ds.retry = time.AfterFunc(delay, func() { m.enqueue(d, gen) })
	m.log.Warn("certificate attempt failed", zap.String("domain", d), zap.Duration("retry_in", delay), zap.Error(err))
}

// errorText makes err readable in a status column: certmagic's "[name] Obtain: " prefix goes.
func errorText(err error) string {
	s := err.Error()
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "] "); i > 0 {
			s = s[i+2:]
			for _, p := range []string{"Obtain: ", "Renew: "} {
				s = strings.TrimPrefix(s, p)
			}
		}
	}
	return s
}

// observe records what the issuer did for domain.
func (m *Manager) observe(domain string, ev issueEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ds := m.domains[domain]
	if ds == nil {
		return
	}
	if ev.order {
		ds.st.Orders++
	}
	if ev.challenge != "" {
		ds.st.Challenge = ev.challenge
	}
}

// onEvent follows certmagic: a certificate obtained or renewed (also by its background
// maintenance) is deployed; a failure is noted.
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	d, _ := data["identifier"].(string)
	switch event {
	case "cert_obtained":
		certPath, _ := data["certificate_path"].(string)
		keyPath, _ := data["private_key_path"].(string)
		certPEM, err := m.cfg.Storage.Load(ctx, certPath)
		if err != nil {
			m.log.Error("reading new certificate", zap.String("domain", d), zap.Error(err))
			return nil
		}
		keyPEM, err := m.cfg.Storage.Load(ctx, keyPath)
		if err != nil {
			m.log.Error("reading new certificate key", zap.String("domain", d), zap.Error(err))
			return nil
		}
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			m.log.Error("decoding new certificate", zap.String("domain", d), zap.Error(err))
			return nil
		}
		m.deliver(d, c)
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil {
			return nil
		}
		m.mu.Lock()
		if ds := m.domains[d]; ds != nil && ds.st.State != StateDisabled {
			ds.st.LastError, ds.st.Updated = errorText(err), time.Now()
		}
		m.mu.Unlock()
	}
	return nil
}

// deliver records c as d's certificate and hands it to OnCertificate, once per certificate.
func (m *Manager) deliver(d string, c tls.Certificate) {
	if c.Leaf == nil && len(c.Certificate) > 0 {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			m.log.Error("parsing certificate", zap.String("domain", d), zap.Error(err))
			return
		}
		c.Leaf = leaf
	}
	if c.Leaf == nil {
		return
	}
	serial := c.Leaf.SerialNumber.Text(16)
	id := c.Leaf.Issuer.CommonName + "/" + serial

	m.deliverMu.Lock()
	defer m.deliverMu.Unlock()
	m.mu.Lock()
	ds := m.domains[d]
	if m.stopped || ds == nil || ds.st.State == StateDisabled || ds.delivered == id {
		m.mu.Unlock()
		return
	}
	ds.delivered = id
	ds.st.Names = slices.Clone(c.Leaf.DNSNames)
	ds.st.NotBefore, ds.st.NotAfter = c.Leaf.NotBefore, c.Leaf.NotAfter
	ds.st.Serial, ds.st.Issuer = serial, c.Leaf.Issuer.CommonName
	ds.st.Updated = time.Now()
	heap.Push(&m.expiry, expiryEntry{notAfter: c.Leaf.NotAfter, domain: d, id: id})
	m.updateExpiry()
	m.mu.Unlock()

	if m.cfg.OnCertificate != nil {
		m.cfg.OnCertificate(d, &c)
	}
}

// updateExpiry sets the expiry gauge to the earliest NotAfter of the enabled domains' current
// certificates, dropping heap entries that are no longer current. Called with m.mu held.
func (m *Manager) updateExpiry() {
	for m.expiry.Len() > 0 {
		e := m.expiry[0]
		ds := m.domains[e.domain]
		if ds != nil && ds.st.State != StateDisabled && ds.delivered == e.id {
			m.met.expiry.Set(float64(e.notAfter.Unix()))
			return
		}
		heap.Pop(&m.expiry)
	}
	m.met.expiry.Set(0)
}

// expiryHeap is a min-heap of certificates by NotAfter, with stale entries dropped lazily.
type expiryHeap []expiryEntry

type expiryEntry struct {
	notAfter time.Time
	domain   string
	id       string // domainState.delivered
}

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].notAfter.Before(h[j].notAfter) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/edgesim/edgesim/acme"
	"github.com/edgesim/edgesim/tenant"
	"github.com/edgesim/edgesim/tenant/domains"
)

// acmeOptions are the ACME flags of 'edgesim serve'.
type acmeOptions struct {
	ca, caRoot, email, solvers string
}

func (o *acmeOptions) register(fs *flagSet) {
	fs.StringVar(&o.ca, "acme-ca", "", "ACME directory `URL` to obtain and renew domain certificates from, for tenants with 'acme: true' and domains switched to ACME ('edgesim domains acme'); none: ACME off")
	fs.StringVar(&o.caRoot, "acme-ca-root", "", "PEM `FILE` of roots to trust for the ACME server's HTTPS (a test CA such as Pebble); default the system's")
	fs.StringVar(&o.email, "acme-email", "", "contact address for the ACME account")
	fs.StringVar(&o.solvers, "acme-challenges", "tls-alpn-01,dns-01", "ACME challenges to answer: tls-alpn-01 (on the HTTPS listener), dns-01 (in the embedded DNS)")
}

// acmeAdapter lets the domain-certificate manager drive the acme package.
type acmeAdapter struct{ m *acme.Manager }

func (a acmeAdapter) Enable(domain string) error { return a.m.Enable(domain) }
func (a acmeAdapter) Disable(domain string)      { a.m.Disable(domain) }
func (a acmeAdapter) Status(domain string) domains.ACMEStatus {
	st := a.m.Status(domain)
	out := domains.ACMEStatus{State: string(st.State), Detail: st.LastError}
	switch st.State {
	case acme.StateValid:
		out.State = "issued"
		if out.Detail == "" && !st.NotAfter.IsZero() {
			out.Detail = fmt.Sprintf("issued by %s, valid until %s", st.Issuer, st.NotAfter.UTC().Format(time.DateTime))
		}
	case acme.StateQueued, acme.StateOrdering:
		out.State = "pending"
	}
	return out
}

// newACME builds the ACME manager when --acme-ca is set (nil otherwise). dm is filled in before
// any certificate can arrive.
func (s *server) newACME(o acmeOptions, storage certmagic.Storage, dm **domains.Manager) (*acme.Manager, error) {
	if o.ca == "" {
		return nil, nil
	}
	var roots *x509.CertPool
	if o.caRoot != "" {
		pem, err := os.ReadFile(o.caRoot)
		if err != nil {
			return nil, usagef("--acme-ca-root: %v", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, usagef("--acme-ca-root %s holds no PEM certificate", o.caRoot)
		}
	}
	var solvers []string
	for _, f := range strings.Split(o.solvers, ",") {
		if f = strings.TrimSpace(f); f != "" {
			solvers = append(solvers, f)
		}
	}
	m, err := acme.New(acme.Config{
		CA: o.ca, Roots: roots, Email: o.email, Storage: storage,
		Challenges: s.challenges, Solvers: solvers,
		DNSResolvers: []string{s.dns.Addr()},
		Names:        func(d string) []string { return (*dm).ACMENames(d) },
		OnCertificate: func(d string, c *tls.Certificate) {
			if err := (*dm).DeployACME(d, c); err != nil {
				s.log.Warn("acme certificate not deployed", zap.String("domain", d), zap.Error(err))
			}
		},
		Logger: s.log, Registerer: s.reg, // the acme package names its logger
	})
	if err != nil {
		return nil, usagef("--acme-ca: %v", err)
	}
	return m, nil
}

// enableTenantACME switches ACME on for every tenant whose entry says 'acme: true'.
func (s *server) enableTenantACME(ctx context.Context, o serveOptions) error {
	var want []string
	s.dir.Each(func(t *tenant.Tenant) bool {
		if t.ACME {
			want = append(want, t.Domain)
		}
		return true
	})
	if len(want) == 0 {
		return nil
	}
	if s.acme == nil {
		return usagef("%d tenants have 'acme: true' (%s first): give --acme-ca URL, the ACME directory to issue their certificates from", len(want), want[0])
	}
	for _, d := range want {
		if _, err := s.domains.Get(d); err != nil {
			if _, err := s.domains.Add(ctx, d); err != nil {
				return fmt.Errorf("acme for tenant %s: %w", d, err)
			}
		}
		if _, err := s.domains.EnableACME(ctx, d); err != nil {
			return fmt.Errorf("acme for tenant %s: %w", d, err)
		}
	}
	s.log.Info("acme on for tenants", zap.Int("tenants", len(want)), zap.String("ca", o.acme.ca))
	return nil
}

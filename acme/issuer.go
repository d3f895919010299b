package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	acmeproto "github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// issuer is the certmagic.Issuer behind a Manager: it places one ACME order through acmez for
// all the names of a domain's certificate, solving challenges with edgesim's own solvers (TXT
// records, TLS-ALPN certificates and HTTP tokens in Challenges, never a socket of its own).
//
// certmagic manages one certificate per name and hands the issuer a CSR for that name alone.
// A domain certificate must carry more names (the SNI host and the service domain), so the
// issuer signs a new CSR for all of them with the same key, which it gets from keyMemory, the
// KeySource that made it.
type issuer struct {
	key    string // certmagic's storage key for this CA
	client *acmez.Client
	names  func(string) []string
	keys   *keyMemory
	store  certmagic.Storage
	email  string
	met    *metrics
	log    *zap.Logger
	// observe is told each domain's outcome (orders placed, challenge types); may be nil.
	observe func(domain string, ev issueEvent)

	acctMu sync.Mutex
	acct   *acmeproto.Account
}

// issueEvent is what the issuer tells its Manager about an order.
type issueEvent struct {
	order     bool   // an order was placed
	challenge string // a challenge of this type was presented
}

type domainCtxKey struct{}

// issuerKeyFor derives a storage key from the directory URL, e.g.
// "edgesim-127.0.0.1-14000-dir" for https://127.0.0.1:14000/dir.
func issuerKeyFor(ca string) (string, error) {
	u, err := url.Parse(ca)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fmt.Errorf("%w: %q", ErrBadCA, ca)
	}
	key := u.Host + strings.TrimSuffix(u.Path, "/")
	key = strings.NewReplacer(":", "-", "/", "-").Replace(key)
	return "edgesim-" + key, nil
}

func (iss *issuer) IssuerKey() string { return iss.key }

// Issue places the order for the domain named by csr and returns the PEM chain.
//
// Every call counts as one attempt in edgesim_acme_orders_total, including one that fails
// before an order can be placed (no account: the CA is unreachable).
func (iss *issuer) Issue(ctx context.Context, csr *x509.CertificateRequest) (_ *certmagic.IssuedCertificate, err error) {
	start := time.Now()
	defer func() { iss.met.order(err == nil, time.Since(start)) }()
	if len(csr.DNSNames) == 0 {
		return nil, errors.New("acme: CSR names no domain")
	}
	domain := csr.DNSNames[0]
	key := iss.keys.take(csr.PublicKey)
	if key == nil {
		return nil, fmt.Errorf("acme: %s: the certificate key was not made by this manager", domain)
	}
	names := iss.names(domain)
	tmpl := &x509.CertificateRequest{DNSNames: names}
	if len(domain) <= 64 { // the CN is the name certmagic files the certificate under (ub-common-name)
		tmpl.Subject = pkix.Name{CommonName: domain}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("acme: %s: CSR: %w", domain, err)
	}
	full, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("acme: %s: CSR: %w", domain, err)
	}

	acct, err := iss.account(ctx)
	if err != nil {
		return nil, err
	}
	params, err := acmez.OrderParametersFromCSR(acct, full)
	if err != nil {
		return nil, fmt.Errorf("acme: %s: %w", domain, err)
	}
	if iss.observe != nil {
		iss.observe(domain, issueEvent{order: true})
	}
	chains, err := iss.client.ObtainCertificate(context.WithValue(ctx, domainCtxKey{}, domain), params)
	if err != nil {
		return nil, fmt.Errorf("acme: order for %s: %w", strings.Join(names, ", "), err)
	}
	if len(chains) == 0 {
		return nil, fmt.Errorf("acme: order for %s: the CA offered no certificate chain", strings.Join(names, ", "))
	}
	iss.log.Info("certificate issued", zap.String("domain", domain), zap.Strings("names", names),
		zap.Duration("took", time.Since(start)))
	return &certmagic.IssuedCertificate{
		Certificate: chains[0].ChainPEM,
		Metadata:    map[string]string{"url": chains[0].URL, "ca": iss.client.Directory},
	}, nil
}

// account returns the ACME account, registering it (or finding it again by its key, which is
// kept in storage) on first use.
func (iss *issuer) account(ctx context.Context) (acmeproto.Account, error) {
	iss.acctMu.Lock()
	defer iss.acctMu.Unlock()
	if iss.acct != nil {
		return *iss.acct, nil
	}
	name := iss.email
	if name == "" {
		name = "default"
	}
	keyPath := path.Join("acme", iss.key, "accounts", name+".key")
	var key crypto.Signer
	pemBytes, err := iss.store.Load(ctx, keyPath)
	switch {
	case err == nil:
		if key, err = certmagic.PEMDecodePrivateKey(pemBytes); err != nil {
			return acmeproto.Account{}, fmt.Errorf("acme: account key %s: %w", keyPath, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return acmeproto.Account{}, fmt.Errorf("acme: account key: %w", err)
		}
		pemBytes, err := certmagic.PEMEncodePrivateKey(k)
		if err != nil {
			return acmeproto.Account{}, fmt.Errorf("acme: account key: %w", err)
		}
		if err := iss.store.Store(ctx, keyPath, pemBytes); err != nil {
			return acmeproto.Account{}, fmt.Errorf("acme: account key %s: %w", keyPath, err)
		}
		key = k
	default:
		return acmeproto.Account{}, fmt.Errorf("acme: account key %s: %w", keyPath, err)
	}
	acct := acmeproto.Account{TermsOfServiceAgreed: true, PrivateKey: key}
	if iss.email != "" {
		acct.Contact = []string{"mailto:" + iss.email}
	}
	// newAccount with a key the CA already knows returns that account (RFC 8555 §7.3.1).
	acct, err = iss.client.NewAccount(ctx, acct)
	if err != nil {
		return acmeproto.Account{}, fmt.Errorf("acme: account at %s: %w", iss.client.Directory, err)
	}
	iss.acct = &acct
	return acct, nil
}

// keyMemory is the certmagic KeySource: it makes certificate keys and remembers each one (by
// public key) until the issuer takes it to sign the CSR for all of a domain's names.
type keyMemory struct {
	gen certmagic.KeyGenerator

	mu   sync.Mutex
	keys map[string]heldKey
}

type heldKey struct {
	key  crypto.Signer
	made time.Time
}

// keyHoldTime bounds how long an untaken key is remembered (certmagic asks for a key and issues
// at once, so only a failure between the two leaves one behind).
const keyHoldTime = 10 * time.Minute

func (km *keyMemory) GenerateKey() (crypto.PrivateKey, error) {
	k, err := km.gen.GenerateKey()
	if err != nil {
		return nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("acme: key type %T cannot sign", k)
	}
	id, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	km.mu.Lock()
	defer km.mu.Unlock()
	if km.keys == nil {
		km.keys = make(map[string]heldKey)
	}
	for k, h := range km.keys {
		if now.Sub(h.made) > keyHoldTime {
			delete(km.keys, k)
		}
	}
	km.keys[string(id)] = heldKey{key: signer, made: now}
	return k, nil
}

// take returns and forgets the private key of pub, or nil.
func (km *keyMemory) take(pub any) crypto.Signer {
	id, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	km.mu.Lock()
	defer km.mu.Unlock()
	h, ok := km.keys[string(id)]
	delete(km.keys, string(id))
	if !ok {
		return nil
	}
	return h.key
}

// observingSolver tells the Manager which challenge type was presented for which domain.
type observingSolver struct {
	acmez.Solver
	typ     string
	observe func(domain string, ev issueEvent)
}

func (s observingSolver) Present(ctx context.Context, chal acmeproto.Challenge) error {
	if d, ok := ctx.Value(domainCtxKey{}).(string); ok && s.observe != nil {
		s.observe(d, issueEvent{challenge: s.typ})
	}
	return s.Solver.Present(ctx, chal)
}

func (s observingSolver) Wait(ctx context.Context, chal acmeproto.Challenge) error {
	if w, ok := s.Solver.(acmez.Waiter); ok {
		return w.Wait(ctx, chal)
	}
	return nil
}

package domains

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// Choices for a CSR, as Expressway-E offers them.
var (
	// CSRKeys are the key types; RSA is what Expressway recommends.
	CSRKeys = []string{"rsa-1024", "rsa-2048", "rsa-4096", "ecdsa-p256", "ecdsa-p384"}
	// CSRDigests are the signature digests.
	CSRDigests = []string{"sha256", "sha384", "sha512"}
	// SANFormats say how the domain itself is added to the SANs: as a dNSName "example.com"
	// (dns), or in the CollabEdgeDNS form "collab-edge.example.com" (collab-edge). Either
	// satisfies the check Jabber makes on the edge certificate.
	SANFormats = []string{"dns", "collab-edge"}
)

// Defaults of CSROptions.
const (
	DefaultCSRKey    = "rsa-2048"
	DefaultCSRDigest = "sha256"
	DefaultSANFormat = "dns"
)

// Subject is a CSR's subject; CN defaults to the domain's first SNI host.
type Subject struct {
	CN string `json:"cn,omitempty"`
	O  string `json:"o,omitempty"`
	OU string `json:"ou,omitempty"`
	L  string `json:"l,omitempty"`
	ST string `json:"st,omitempty"`
	C  string `json:"c,omitempty"` // two letters
}

// CSROptions are the choices for a CSR; the zero value means RSA 2048, SHA-256, the dns SAN
// format and CN = the first SNI host.
type CSROptions struct {
	Key       string   `json:"key,omitempty"`        // one of CSRKeys
	Digest    string   `json:"digest,omitempty"`     // one of CSRDigests
	SANFormat string   `json:"san_format,omitempty"` // one of SANFormats
	Subject   Subject  `json:"subject,omitzero"`
	SANs      []string `json:"sans,omitempty"` // extra dNSNames
}

// CSRInfo describes a pending CSR. Its private key stays on the server.
type CSRInfo struct {
	Domain   string   `json:"domain"`
	CSR      string   `json:"csr"` // PEM, to send to a CA
	Key      string   `json:"key"`
	Digest   string   `json:"digest"`
	Subject  string   `json:"subject"`
	SANs     []string `json:"sans"`
	Created  string   `json:"created"`
	Warnings []string `json:"warnings,omitempty"`
}

// CSR makes a key pair and a certificate signing request for domain. The key stays on the
// server until the signed certificate is uploaded. Only one CSR may be pending per domain.
func (m *Manager) CSR(ctx context.Context, domain string, o CSROptions) (CSRInfo, error) {
	tmpl, sigAlg, err := m.csrTemplate(domain, &o)
	if err != nil {
		return CSRInfo{}, err
	}
	m.mu.Lock()
	e, err := m.lookup(domain)
	if err == nil {
		err = csrAllowed(e)
	}
	if err != nil {
		m.mu.Unlock()
		return CSRInfo{}, err
	}
	e.busy = true // key generation (seconds for RSA 4096) runs without the lock
	m.mu.Unlock()

	key, kerr := generateKey(o.Key)
	var der []byte
	if kerr == nil {
		tmpl.SignatureAlgorithm = sigAlg(key)
		der, kerr = x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	e.busy = false
	if kerr != nil {
		return CSRInfo{}, fail(ErrBadRequest, "could not make the CSR (%s, %s): %v", o.Key, o.Digest, kerr)
	}
	if m.domains[e.domain] != e {
		return CSRInfo{}, fail(ErrNotFound, "domain %s was deleted while its CSR was made", e.domain)
	}
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return CSRInfo{}, fail(ErrBadRequest, "the CSR made does not parse: %v", err)
	}
	p := &pendingCSR{der: der, req: req, key: key, created: m.cfg.Now().UTC()}
	kp, err := keyPEM(key)
	if err != nil {
		return CSRInfo{}, storageErr("encode the CSR key", e.domain, err)
	}
	if err := m.store(ctx, e.domain, csrKeyFile, kp); err != nil {
		return CSRInfo{}, err
	}
	if err := m.store(ctx, e.domain, csrFile, csrPEM(der)); err != nil {
		return CSRInfo{}, err
	}
	e.csr = p
	if err := m.saveMeta(ctx, e); err != nil {
		e.csr = nil
		return CSRInfo{}, err
	}
	m.log.Info("CSR made", zap.String("domain", e.domain), zap.String("key", o.Key), zap.String("digest", o.Digest),
		zap.Strings("sans", req.DNSNames))
	return csrInfo(e), nil
}

// csrAllowed refuses a second CSR, and one while another is being made.
func csrAllowed(e *entry) error {
	switch {
	case e.busy:
		return fail(ErrCSRPending, "a CSR is being generated for %s right now; wait for it, then discard it if it is not wanted", e.domain)
	case e.csr != nil:
		return fail(ErrCSRPending, "a CSR is already pending for %s (made %s); discard it first (DELETE /api/v1/domains/%s/csr, or 'edgesim domains csr-discard %s'), then make a new one",
			e.domain, e.csr.created.Format("2006-01-02 15:04 MST"), e.domain, e.domain)
	}
	return nil
}

func csrPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func csrInfo(e *entry) CSRInfo {
	req := e.csr.req
	in := CSRInfo{Domain: e.domain, CSR: string(csrPEM(e.csr.der)), Key: keyName(req.PublicKey),
		Digest: digestName(req.SignatureAlgorithm), Subject: req.Subject.String(), SANs: req.DNSNames,
		Created: e.csr.created.Format("2006-01-02T15:04:05Z07:00")}
	if in.Key == "rsa-1024" {
		in.Warnings = append(in.Warnings, weakKeyWarning)
	}
	return in
}

const weakKeyWarning = "a 1024-bit RSA key is weak: most public CAs refuse it and Jabber may too; use rsa-2048 or more unless a test needs it"

// csrTemplate validates o (filling defaults) and builds the request template; sigAlg picks the
// signature algorithm for the generated key.
func (m *Manager) csrTemplate(domain string, o *CSROptions) (*x509.CertificateRequest, func(crypto.Signer) x509.SignatureAlgorithm, error) {
	d, err := checkDomain(domain)
	if err != nil {
		return nil, nil, err
	}
	o.Key, o.Digest, o.SANFormat = strings.ToLower(o.Key), strings.ToLower(o.Digest), strings.ToLower(o.SANFormat)
	if o.Key == "" {
		o.Key = DefaultCSRKey
	}
	if o.Digest == "" {
		o.Digest = DefaultCSRDigest
	}
	if o.SANFormat == "" {
		o.SANFormat = DefaultSANFormat
	}
	if !slices.Contains(CSRKeys, o.Key) {
		return nil, nil, fail(ErrBadRequest, "key %q is not offered; choose one of %s", o.Key, strings.Join(CSRKeys, ", "))
	}
	if !slices.Contains(CSRDigests, o.Digest) {
		return nil, nil, fail(ErrBadRequest, "digest %q is not offered; choose one of %s", o.Digest, strings.Join(CSRDigests, ", "))
	}
	if !slices.Contains(SANFormats, o.SANFormat) {
		return nil, nil, fail(ErrBadRequest, "SAN format %q is not offered; choose dns (adds %s) or collab-edge (adds collab-edge.%s)", o.SANFormat, d, d)
	}
	s := o.Subject
	if len(s.C) != 0 && (len(s.C) != 2 || strings.Trim(strings.ToUpper(s.C), "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "") {
		return nil, nil, fail(ErrBadRequest, "country %q: use the two-letter ISO 3166 code, like GB or US", s.C)
	}
	for _, f := range []struct{ name, v string }{{"CN", s.CN}, {"O", s.O}, {"OU", s.OU}, {"L", s.L}, {"ST", s.ST}} {
		if len(f.v) > 64 {
			return nil, nil, fail(ErrBadRequest, "subject %s is %d characters; at most 64 are allowed", f.name, len(f.v))
		}
	}
	hosts := m.hosts(d)
	sans := append([]string(nil), hosts...)
	if o.SANFormat == "collab-edge" {
		sans = append(sans, "collab-edge."+d)
	} else {
		sans = append(sans, d)
	}
	for _, x := range o.SANs {
		n := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(x), "."))
		if err := checkSANName(n); err != nil {
			return nil, nil, fail(ErrBadRequest, "extra SAN %q: %v", x, err)
		}
		sans = append(sans, n)
	}
	var uniq []string
	for _, n := range sans {
		if !slices.Contains(uniq, n) {
			uniq = append(uniq, n)
		}
	}
	if s.CN == "" && len(hosts) > 0 {
		s.CN = hosts[0]
	}
	if s.CN == "" {
		s.CN = d
	}
	o.Subject = s
	name := pkix.Name{CommonName: s.CN}
	if s.O != "" {
		name.Organization = []string{s.O}
	}
	if s.OU != "" {
		name.OrganizationalUnit = []string{s.OU}
	}
	if s.L != "" {
		name.Locality = []string{s.L}
	}
	if s.ST != "" {
		name.Province = []string{s.ST}
	}
	if s.C != "" {
		name.Country = []string{strings.ToUpper(s.C)}
	}
	digest := o.Digest
	sigAlg := func(k crypto.Signer) x509.SignatureAlgorithm {
		_, isRSA := k.(*rsa.PrivateKey)
		switch {
		case isRSA && digest == "sha384":
			return x509.SHA384WithRSA
		case isRSA && digest == "sha512":
			return x509.SHA512WithRSA
		case isRSA:
			return x509.SHA256WithRSA
		case digest == "sha384":
			return x509.ECDSAWithSHA384
		case digest == "sha512":
			return x509.ECDSAWithSHA512
		}
		return x509.ECDSAWithSHA256
	}
	return &x509.CertificateRequest{Subject: name, DNSNames: uniq}, sigAlg, nil
}

// checkSANName accepts a DNS name, or a wildcard as the whole left-most label.
func checkSANName(n string) error {
	base := strings.TrimPrefix(n, "*.")
	if strings.Contains(base, "*") {
		return errString("a wildcard is allowed only as the whole left-most label, like *.example.com")
	}
	if _, err := checkDomain(base); err != nil {
		return errString(err.Error())
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

func generateKey(name string) (crypto.Signer, error) {
	switch name {
	case "rsa-1024":
		return rsa.GenerateKey(rand.Reader, 1024)
	case "rsa-2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa-4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	case "ecdsa-p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// keyName names a public key as CSRKeys do ("rsa-2048"), or describes it.
func keyName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "rsa-" + itoa(k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ecdsa-" + strings.ToLower(strings.ReplaceAll(k.Curve.Params().Name, "-", ""))
	}
	return strings.TrimPrefix(strings.ToLower(typeName(pub)), "*")
}

func digestName(a x509.SignatureAlgorithm) string {
	switch a {
	case x509.SHA256WithRSA, x509.ECDSAWithSHA256, x509.SHA256WithRSAPSS:
		return "sha256"
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		return "sha384"
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		return "sha512"
	}
	return strings.ToLower(a.String())
}

// PendingCSR describes the pending CSR of domain.
func (m *Manager) PendingCSR(domain string) (CSRInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(domain)
	if err != nil {
		return CSRInfo{}, err
	}
	if e.csr == nil {
		return CSRInfo{}, noCSR(e.domain)
	}
	return csrInfo(e), nil
}

func noCSR(d string) error {
	return fail(ErrNoCSR, "no CSR is pending for %s; make one first (POST /api/v1/domains/%s/csr, or 'edgesim domains csr %s')", d, d, d)
}

// DiscardCSR drops the pending CSR of domain and its key.
func (m *Manager) DiscardCSR(ctx context.Context, domain string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(domain)
	if err != nil {
		return err
	}
	if e.csr == nil {
		return noCSR(e.domain)
	}
	// The CSR file goes first: a csr.key alone is a leftover Load removes.
	if err := m.remove(ctx, e.domain, csrFile, csrKeyFile); err != nil {
		return err
	}
	e.csr = nil
	if err := m.saveMeta(ctx, e); err != nil {
		return err
	}
	m.log.Info("CSR discarded", zap.String("domain", e.domain))
	return nil
}

package domains

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/edgesim/edgesim/internal/san"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Details is a certificate decoded, as Expressway's "View (decoded)" shows it. It never holds the
// private key.
type Details struct {
	Domain             string      `json:"domain"`
	Source             string      `json:"source"` // upload or acme
	Hosts              []string    `json:"hosts"`  // SNI hosts it is served for
	Subject            string      `json:"subject"`
	Issuer             string      `json:"issuer"`
	Serial             string      `json:"serial"` // hex
	SANs               []string    `json:"sans"`   // dNSNames, then "IP:", "SRVName:" entries
	NotBefore          time.Time   `json:"not_before"`
	NotAfter           time.Time   `json:"not_after"`
	Expired            bool        `json:"expired,omitempty"`
	KeyType            string      `json:"key_type"` // RSA, ECDSA or Ed25519
	KeySize            int         `json:"key_size"` // bits
	SignatureAlgorithm string      `json:"signature_algorithm"`
	EKUs               []string    `json:"ekus,omitempty"`
	SHA256             string      `json:"sha256_fingerprint"` // AB:CD:…
	ChainLength        int         `json:"chain_length"`
	Chain              []ChainCert `json:"chain"`
	Warnings           []string    `json:"warnings,omitempty"`
}

// ChainCert is one certificate of the chain as uploaded, leaf first.
type ChainCert struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
}

// Show returns the certificate domain serves, decoded.
func (m *Manager) Show(domain string) (Details, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, c, src, err := m.servedOf(domain)
	if err != nil {
		return Details{}, err
	}
	return m.details(e, c, src), nil
}

// ShowPEM returns the certificate chain domain serves, as PEM (certificates only).
func (m *Manager) ShowPEM(domain string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, c, _, err := m.servedOf(domain)
	if err != nil {
		return nil, err
	}
	return chainPEM(c.Certificate), nil
}

func (m *Manager) servedOf(domain string) (*entry, *tls.Certificate, string, error) {
	e, err := m.lookup(domain)
	if err != nil {
		return nil, nil, "", err
	}
	c, src := e.served()
	if c == nil {
		hint := fmt.Sprintf("make a CSR ('edgesim domains csr %s') and upload what the CA signs", e.domain)
		if e.csr != nil {
			hint = fmt.Sprintf("a CSR is pending: upload the certificate the CA signs for it ('edgesim domains upload %s --cert FILE')", e.domain)
		}
		return nil, nil, "", fail(ErrNoCert, "%s has no certificate loaded; %s", e.domain, hint)
	}
	return e, c, src, nil
}

// details decodes c, served for e; the caller holds m.mu.
func (m *Manager) details(e *entry, c *tls.Certificate, src string) Details {
	l := c.Leaf
	sum := sha256.Sum256(l.Raw)
	fp := make([]string, len(sum))
	for i, b := range sum {
		fp[i] = fmt.Sprintf("%02X", b)
	}
	d := Details{
		Domain: e.domain, Source: src, Hosts: m.hosts(e.domain),
		Subject: l.Subject.String(), Issuer: l.Issuer.String(), Serial: fmt.Sprintf("%X", l.SerialNumber),
		SANs: sanList(l), NotBefore: l.NotBefore.UTC(), NotAfter: l.NotAfter.UTC(),
		Expired:            m.cfg.Now().After(l.NotAfter),
		SignatureAlgorithm: l.SignatureAlgorithm.String(), SHA256: strings.Join(fp, ":"),
		ChainLength: len(c.Certificate),
	}
	d.KeyType, d.KeySize = keyTypeSize(l.PublicKey)
	for _, u := range l.ExtKeyUsage {
		d.EKUs = append(d.EKUs, ekuName(u))
	}
	for i, der := range c.Certificate {
		cc := l
		if i > 0 {
			var err error
			if cc, err = x509.ParseCertificate(der); err != nil {
				continue
			}
		}
		d.Chain = append(d.Chain, ChainCert{Subject: cc.Subject.String(), Issuer: cc.Issuer.String(), NotAfter: cc.NotAfter.UTC()})
	}
	d.Warnings = append(m.warnings(e.domain, l, d.Hosts), m.trustWarnings(c)...)
	return d
}

// warnings lists what will trouble clients although the edge accepts the certificate.
func (m *Manager) warnings(domain string, l *x509.Certificate, hosts []string) []string {
	var w []string
	covered := coveredHosts(l, hosts)
	for _, h := range hosts {
		if !slices.Contains(covered, h) {
			w = append(w, fmt.Sprintf("the certificate does not name the SNI host %s: clients connecting with it see a name mismatch", h))
		}
	}
	if !jabberDomainOK(l, domain) {
		w = append(w, fmt.Sprintf("Jabber will refuse this certificate: its SANs hold neither %s, collab-edge.%s nor SRVName _collab-edge._tls.%s (\"Edge domain '%s' ... not found in certificate SAN list\")",
			domain, domain, domain, domain))
	}
	if len(l.ExtKeyUsage) > 0 && !slices.Contains(l.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(l.ExtKeyUsage, x509.ExtKeyUsageAny) {
		w = append(w, "the certificate lacks the TLS Web Server Authentication EKU: clients will refuse it")
	}
	if len(l.ExtKeyUsage) > 0 && !slices.Contains(l.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		w = append(w, "the certificate lacks the TLS Web Client Authentication EKU, which Expressway needs once UC features are on")
	}
	if k, ok := l.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
		w = append(w, weakKeyWarning)
	}
	return w
}

// trustWarnings says when clients trusting Config.Roots would refuse the chain, and when less
// than a third of its lifetime is left.
func (m *Manager) trustWarnings(c *tls.Certificate) []string {
	var w []string
	l, now := c.Leaf, m.cfg.Now()
	// Renewal is due when a third of the lifetime is left (as ACME clients do it).
	if left := l.NotAfter.Sub(now); left > 0 && left < l.NotAfter.Sub(l.NotBefore)/3 {
		w = append(w, fmt.Sprintf("the certificate expires on %s, in %s: renew it soon", l.NotAfter.UTC().Format(time.DateTime), left.Round(time.Hour)))
	}
	if m.cfg.Roots == nil {
		return w
	}
	opts := x509.VerifyOptions{Roots: m.cfg.Roots(), Intermediates: x509.NewCertPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, der := range c.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			opts.Intermediates.AddCert(ic)
		}
	}
	if _, err := l.Verify(opts); err != nil {
		var ua x509.UnknownAuthorityError
		switch {
		case errors.As(err, &ua) && bytes.Equal(l.RawIssuer, l.RawSubject):
			w = append(w, "the certificate is self-signed: clients will refuse it unless they trust it as a root")
		case errors.As(err, &ua):
			w = append(w, fmt.Sprintf("clients will not trust the chain: %s's issuer %q is neither in the upload nor a known root; upload the intermediate certificates after it", l.Subject.CommonName, l.Issuer.String()))
		default:
			w = append(w, "clients may refuse the chain: "+err.Error())
		}
	}
	return w
}

// jabberDomainOK is the check Jabber makes: the service domain among the SANs, literally, as
// dNSName domain or collab-edge.<domain>, or as SRVName _collab-edge._tls.<domain>.
func jabberDomainOK(l *x509.Certificate, domain string) bool {
	for _, n := range l.DNSNames {
		if n = strings.ToLower(n); n == domain || n == "collab-edge."+domain {
			return true
		}
	}
	return slices.Contains(srvNames(l), "_collab-edge._tls."+domain)
}

// sanList lists the SANs: dNSNames, then IP addresses and SRVNames with a prefix.
func sanList(l *x509.Certificate) []string {
	out := append([]string(nil), l.DNSNames...)
	for _, ip := range l.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	for _, s := range srvNames(l) {
		out = append(out, "SRVName:"+s)
	}
	return out
}

var (
	oidSAN     = san.OIDSubjectAltName
	oidSRVName = san.OIDSRVName
)

// srvNames returns the SRVName otherNames of l's SubjectAltName.
func srvNames(l *x509.Certificate) []string { return san.Parse(l).SRVName }

func keyTypeSize(pub crypto.PublicKey) (string, int) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		return "ECDSA", k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "Ed25519", 256
	}
	return typeName(pub), 0
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }

func itoa(n int) string { return strconv.Itoa(n) }

var ekuNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
	x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageTimeStamping: "timeStamping", x509.ExtKeyUsageOCSPSigning: "OCSPSigning",
}

func ekuName(u x509.ExtKeyUsage) string {
	if n, ok := ekuNames[u]; ok {
		return n
	}
	return "eku-" + itoa(int(u))
}

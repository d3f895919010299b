package domains

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"

	"go.uber.org/zap"

	"github.com/edgesim/edgesim/internal/san"
)

// upload is a parsed certificate upload.
type upload struct {
	chain    [][]byte
	certs    []*x509.Certificate
	keyGiven bool          // a key came with the certificate (its own field or inside the PEM)
	key      crypto.Signer // the parsed key, when keyErr is nil
	keyErr   error
}

// Upload loads a signed certificate for domain: certPEM is the chain, leaf first. When a CSR
// is pending the certificate must be the one issued for it and no key may come with it;
// otherwise keyPEM (unencrypted PEM) must be the certificate's key. A key may also sit inside
// certPEM. On success the certificate is served at once on every SNI host of the domain and the
// CSR is consumed. Each kind of wrong upload has its own error (see the Err values).
func (m *Manager) Upload(ctx context.Context, domain string, certPEM, keyPEM []byte) (Details, error) {
	if _, err := checkDomain(domain); err != nil {
		return Details{}, err
	}
	up, err := parseUpload(certPEM, keyPEM)
	if err != nil {
		return Details{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, err := m.lookup(domain)
	if err != nil {
		return Details{}, err
	}
	d := e.domain
	if e.busy {
		return Details{}, fail(ErrUnavailable, "a CSR is being generated for %s right now; upload when it is done", d)
	}
	key := up.key
	switch {
	case up.keyGiven && e.csr != nil:
		return Details{}, fail(ErrKeyWithCSR, "a CSR is pending for %s, so the certificate's key is already on the server: upload the certificate without the key, or discard the CSR first (DELETE /api/v1/domains/%s/csr, or 'edgesim domains csr-discard %s') to upload a certificate and key made elsewhere", d, d, d)
	case up.keyGiven && up.keyErr != nil:
		return Details{}, up.keyErr
	case e.csr != nil:
		key = e.csr.key
	case !up.keyGiven:
		return Details{}, fail(ErrNoKey, "no private key came with the certificate, and %s has no pending CSR whose key would fit: upload the key made with the certificate too (PEM, not password-protected), or make a CSR here and have it signed", d)
	}
	leaf := up.certs[0]
	if !samePublicKey(leaf.PublicKey, key.Public()) {
		if e.csr != nil {
			return Details{}, fail(ErrKeyMismatch, "the certificate was not issued for the pending CSR of %s: its public key differs from the CSR's (was it signed for another CSR, or is the CA's answer the wrong file?); upload the certificate signed for the CSR shown by GET /api/v1/domains/%s/csr", d, d)
		}
		return Details{}, fail(ErrKeyMismatch, "the key does not match the certificate (%s): their public keys differ; upload the key that was made with this certificate's request", leaf.Subject)
	}
	now := m.cfg.Now()
	const day = "2006-01-02 15:04:05 MST"
	switch {
	case now.Before(leaf.NotBefore):
		return Details{}, fail(ErrNotYetValid, "the certificate is not valid yet: valid from %s to %s, and it is now %s; check the clocks, or upload it once it is valid",
			leaf.NotBefore.UTC().Format(day), leaf.NotAfter.UTC().Format(day), now.UTC().Format(day))
	case now.After(leaf.NotAfter):
		return Details{}, fail(ErrExpired, "the certificate expired on %s (valid from %s); have it renewed and upload the new one",
			leaf.NotAfter.UTC().Format(day), leaf.NotBefore.UTC().Format(day))
	}
	hosts := m.hosts(d)
	if len(coveredHosts(leaf, hosts)) == 0 {
		names := "no SAN dNSName at all"
		if len(leaf.DNSNames) > 0 {
			names = "SAN dNSName " + strings.Join(leaf.DNSNames, ", ")
		}
		if leaf.Subject.CommonName != "" {
			names += " (Subject CN " + leaf.Subject.CommonName + ", which does not count)"
		}
		return Details{}, fail(ErrNamesMismatch, "the certificate names %s; %s needs a SAN dNSName for at least one of its SNI hosts: %s (a wildcard counts only as the whole left-most label, like *.%s)",
			names, d, strings.Join(hosts, ", "), d)
	}

	c := &tls.Certificate{Certificate: up.chain, PrivateKey: key, Leaf: leaf}
	if err := m.saveCertificate(ctx, e, c); err != nil {
		return Details{}, err
	}
	hadCSR := e.csr != nil
	e.cert, e.uploaded, e.csr = c, now.UTC(), nil
	m.apply(e)
	m.log.Info("certificate uploaded", zap.String("domain", d), zap.String("subject", leaf.Subject.String()),
		zap.Strings("sans", leaf.DNSNames), zap.Time("not_after", leaf.NotAfter), zap.Bool("from_csr", hadCSR),
		zap.Strings("hosts", e.installed))
	det := m.details(e, c, SourceUpload)
	if _, src := e.served(); src == SourceACME {
		det.Source = SourceACME
		det.Warnings = append(det.Warnings, "ACME is on for "+d+": its certificate stays in service; turn ACME off to serve this one")
	}
	return det, nil
}

// saveCertificate stores c as the domain's certificate in the order Load can recover from.
func (m *Manager) saveCertificate(ctx context.Context, e *entry, c *tls.Certificate) error {
	kp, err := keyPEM(c.PrivateKey.(crypto.Signer))
	if err != nil {
		return storageErr("encode the key", e.domain, err)
	}
	d := e.domain
	if err := m.store(ctx, d, nextKeyFile, kp); err != nil {
		return err
	}
	if err := m.store(ctx, d, certFile, chainPEM(c.Certificate)); err != nil {
		return err
	}
	if err := m.store(ctx, d, keyFile, kp); err != nil {
		return err
	}
	saved := *e
	saved.cert, saved.csr = c, nil
	if err := m.saveMeta(ctx, &saved); err != nil {
		return err
	}
	if err := m.remove(ctx, d, nextKeyFile, csrFile, csrKeyFile); err != nil {
		m.log.Warn("stale files left; the next start removes them", zap.String("domain", d), zap.Error(err))
	}
	return nil
}

// parseUpload reads the certificate chain and, if there is one, the key. Errors name the
// problem, never the content.
func parseUpload(certPEM, keyPEM []byte) (*upload, error) {
	if len(bytes.TrimSpace(certPEM)) == 0 {
		return nil, fail(ErrNotPEM, "the certificate is empty; send the PEM chain, leaf first (-----BEGIN CERTIFICATE-----)")
	}
	up := &upload{}
	var keyBlocks []byte
	var types []string
	sawCSR := false
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		types = append(types, b.Type)
		switch {
		case b.Type == "CERTIFICATE":
			up.chain = append(up.chain, b.Bytes)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			keyBlocks = append(keyBlocks, pem.EncodeToMemory(b)...)
		case b.Type == "CERTIFICATE REQUEST" || b.Type == "NEW CERTIFICATE REQUEST":
			sawCSR = true
		}
	}
	switch {
	case len(types) == 0:
		return nil, fail(ErrNotPEM, "the certificate is not PEM: expected text starting -----BEGIN CERTIFICATE----- (a DER file converts with: openssl x509 -inform der -in cert.der -out cert.pem)")
	case len(up.chain) == 0 && sawCSR:
		return nil, fail(ErrNoCertInPEM, "the PEM holds a certificate request, not a certificate: send the CSR to a CA and upload the certificate it signs")
	case len(up.chain) == 0 && keyBlocks != nil:
		return nil, fail(ErrNoCertInPEM, "the PEM holds a private key but no certificate; are the certificate and key swapped?")
	case len(up.chain) == 0:
		// Only labels known to be harmless are repeated: a label is the sender's text and may say
		// anything, a key's included.
		named := make([]string, len(types))
		for i, t := range types {
			named[i] = "an unknown block"
			if knownLabels[t] {
				named[i] = t
			}
		}
		return nil, fail(ErrNoCertInPEM, "the PEM holds %s but no CERTIFICATE block: upload the certificate chain, server certificate first", strings.Join(named, ", "))
	}
	for i, der := range up.chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fail(ErrBadCert, "certificate %d of %d in the PEM is not valid X.509 (%v)", i+1, len(up.chain), err)
		}
		up.certs = append(up.certs, c)
	}
	if up.certs[0].IsCA && len(up.certs) > 1 && !up.certs[1].IsCA {
		return nil, fail(ErrBadCert, "the chain starts with a CA certificate (%s): put the server certificate first, then its issuers", up.certs[0].Subject)
	}
	if len(bytes.TrimSpace(keyPEM)) > 0 {
		if keyBlocks != nil {
			return nil, fail(ErrBadKey, "a key came both inside the certificate PEM and on its own; send it once")
		}
		keyBlocks = keyPEM
	}
	if keyBlocks != nil {
		up.keyGiven = true
		up.key, up.keyErr = parseKey(keyBlocks)
	}
	return up, nil
}

// parseKey decodes an uploaded private key: PKCS#8, PKCS#1 or SEC 1, unencrypted.
func parseKey(data []byte) (crypto.Signer, error) {
	var sawCert, sawPEM bool
	var found crypto.Signer
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		sawPEM = true
		if strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fail(ErrEncryptedKey, "the key is password-protected; Expressway and edgesim take an unencrypted PEM key: remove the password: openssl pkey -in k.pem -out k-plain.pem")
		}
		var key any
		var err error
		switch b.Type {
		case "CERTIFICATE":
			sawCert = true
			continue
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			// The x509 error is dropped on purpose: describe the block, never its content.
			return nil, fail(ErrBadKey, "the key's %s block does not decode as that kind of key", keyFormat[b.Type])
		}
		switch k := key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			if found != nil {
				return nil, fail(ErrBadKey, "the key file holds more than one private key; upload only the certificate's own")
			}
			found = k.(crypto.Signer)
			continue
		}
		return nil, fail(ErrBadKey, "the key is of a kind edgesim cannot serve; use RSA, ECDSA or Ed25519")
	}
	switch {
	case found != nil:
		return found, nil
	case sawCert:
		return nil, fail(ErrBadKey, "the key holds a certificate, not a private key; are the certificate and key swapped?")
	case sawPEM:
		return nil, fail(ErrBadKey, "the key holds PEM data but no private key block (PKCS#8, PKCS#1 RSA or SEC 1 EC)")
	}
	return nil, fail(ErrBadKey, "the key is not PEM: expected a PEM private key, unencrypted (PKCS#8, PKCS#1 RSA or SEC 1 EC, as openssl writes them)")
}

// knownLabels are PEM labels an upload error may repeat.
var knownLabels = map[string]bool{"X509 CRL": true, "PUBLIC KEY": true, "PKCS7": true, "TRUSTED CERTIFICATE": true,
	"DH PARAMETERS": true, "EC PARAMETERS": true, "CERTIFICATE REQUEST": true, "NEW CERTIFICATE REQUEST": true}

// keyFormat names PEM key block types in words: messages never spell the PEM labels, so a
// search of all output for the label finds only leaked keys.
var keyFormat = map[string]string{"PRIVATE KEY": "PKCS#8", "RSA PRIVATE KEY": "PKCS#1 RSA", "EC PRIVATE KEY": "SEC 1 EC"}

// coveredHosts returns the hosts a SAN dNSName of c names, exactly or by a wildcard that is the
// whole left-most label. Subject CN does not count (Expressway checks SANs).
func coveredHosts(c *x509.Certificate, hosts []string) []string {
	var out []string
	for _, h := range hosts {
		for _, n := range c.DNSNames {
			if san.MatchName(n, h) {
				out = append(out, h)
				break
			}
		}
	}
	return out
}

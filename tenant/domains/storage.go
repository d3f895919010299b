package domains

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"go.uber.org/zap"
)

// Storage layout, under "edgesim/domains/<domain>/". Every change writes domain.json last, and a
// folder without it is left over from an interrupted add or delete. An upload writes
// key.next.pem, cert.pem, key.pem, domain.json, then removes key.next.pem and the CSR files: at
// whatever point it stops, Load finds cert.pem together with the key that belongs to it.
const (
	storagePrefix = "edgesim/domains"
	metaFile      = "domain.json"
	certFile      = "cert.pem"
	keyFile       = "key.pem"
	nextKeyFile   = "key.next.pem"
	csrFile       = "csr.pem"
	csrKeyFile    = "csr.key"
	metaFormat    = "edgesim-domain/1"
)

func prefix(domain string) string        { return path.Join(storagePrefix, domain) }
func metaKey(domain string) string       { return path.Join(storagePrefix, domain, metaFile) }
func fileKey(domain, name string) string { return path.Join(storagePrefix, domain, name) }

// meta is domain.json.
type meta struct {
	Format      string    `json:"format"`
	Domain      string    `json:"domain"`
	Added       time.Time `json:"added"`
	ACME        bool      `json:"acme,omitempty"`
	Certificate string    `json:"certificate_sha256,omitempty"` // of the leaf in cert.pem
	Uploaded    time.Time `json:"uploaded,omitzero"`
	CSR         string    `json:"csr_sha256,omitempty"` // of the CSR in csr.pem
	CSRCreated  time.Time `json:"csr_created,omitzero"`
}

func metaOf(e *entry) meta {
	md := meta{Format: metaFormat, Domain: e.domain, Added: e.added, ACME: e.acme}
	if e.cert != nil {
		md.Certificate, md.Uploaded = fingerprint(e.cert.Leaf.Raw), e.uploaded
	}
	if e.csr != nil {
		md.CSR, md.CSRCreated = fingerprint(e.csr.der), e.csr.created
	}
	return md
}

// fingerprint is the lower-case hex SHA-256 of der.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func (m *Manager) saveMeta(ctx context.Context, e *entry) error {
	b, err := json.MarshalIndent(metaOf(e), "", "  ")
	if err != nil {
		return storageErr("encode "+metaFile, e.domain, err)
	}
	if err := m.cfg.Storage.Store(ctx, metaKey(e.domain), append(b, '\n')); err != nil {
		return storageErr("save "+metaFile, e.domain, err)
	}
	return nil
}

func (m *Manager) store(ctx context.Context, domain, name string, data []byte) error {
	if err := m.cfg.Storage.Store(ctx, fileKey(domain, name), data); err != nil {
		return storageErr("save "+name, domain, err)
	}
	return nil
}

func (m *Manager) remove(ctx context.Context, domain string, names ...string) error {
	for _, n := range names {
		if err := m.cfg.Storage.Delete(ctx, fileKey(domain, n)); err != nil {
			return storageErr("remove "+n, domain, err)
		}
	}
	return nil
}

// keyPEM encodes a private key for storage only; it never goes anywhere else.
func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode the key: %T", k) // never the key itself
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func chainPEM(chain [][]byte) []byte {
	var out []byte
	for _, der := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// Load restores every stored domain: certificates that are still valid are installed, pending
// CSRs are kept, and what an interrupted change left behind is finished or cleaned up. A domain
// whose metadata is damaged is logged and skipped; only failing to list the storage is an
// error. Call it once, before the Manager is used.
func (m *Manager) Load(ctx context.Context) error {
	keys, err := m.cfg.Storage.List(ctx, storagePrefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("domains: list %s: %w", storagePrefix, err)
	}
	m.mu.Lock()
	var loaded, certs int
	var acme []string
	for _, k := range keys {
		d := path.Base(k)
		e, err := m.loadOne(ctx, d)
		if err != nil {
			m.log.Error("skipping a stored domain", zap.String("domain", d), zap.Error(err))
			if m.broken == nil {
				m.broken = map[string]error{}
			}
			m.broken[d] = err
			continue
		}
		if e == nil {
			continue
		}
		m.domains[d] = e
		if e.acme {
			acme = append(acme, d)
		}
		m.apply(e)
		loaded++
		if e.cert != nil {
			certs++
		}
	}
	m.mu.Unlock()
	m.log.Info("domains loaded", zap.Int("domains", loaded), zap.Int("certificates", certs), zap.Int("acme", len(acme)))
	// ACME resumes without the lock: it may hand over a stored certificate from within Enable.
	for _, d := range acme {
		if m.cfg.ACME == nil {
			m.log.Warn("ACME is on for this domain but not configured on this edge", zap.String("domain", d))
		} else if err := m.cfg.ACME.Enable(d); err != nil {
			m.log.Error("ACME could not resume", zap.String("domain", d), zap.Error(err))
		}
	}
	return nil
}

// loadOne reads one domain folder. It returns nil, nil for leftovers (which it removes).
func (m *Manager) loadOne(ctx context.Context, d string) (*entry, error) {
	log := m.log.With(zap.String("domain", d))
	if _, err := checkDomain(d); err != nil || d != path.Clean(d) {
		return nil, fmt.Errorf("folder name is not a domain name")
	}
	raw, err := m.cfg.Storage.Load(ctx, metaKey(d))
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("removing the leftovers of an interrupted add or delete")
		if err := m.cfg.Storage.Delete(ctx, prefix(d)); err != nil {
			log.Warn("could not remove leftovers", zap.Error(err))
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", metaFile, err)
	}
	var md meta
	if err := json.Unmarshal(raw, &md); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); fix or remove it", metaFile, err)
	}
	if md.Format != metaFormat || md.Domain != d {
		return nil, fmt.Errorf("%s is damaged: format %q, domain %q; fix or remove it", metaFile, md.Format, md.Domain)
	}
	e := &entry{domain: d, added: md.Added, acme: md.ACME, uploaded: md.Uploaded}

	load := func(name string) []byte {
		b, err := m.cfg.Storage.Load(ctx, fileKey(d, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("cannot read a file", zap.String("file", name), zap.Error(err))
		}
		return b
	}
	keyOf := func(name string) crypto.Signer {
		b := load(name)
		if b == nil {
			return nil
		}
		k, err := parseStoredKey(b)
		if err != nil {
			log.Warn("damaged key file ignored", zap.String("file", name), zap.Error(err))
		}
		return k
	}
	keys := map[string]crypto.Signer{keyFile: keyOf(keyFile), nextKeyFile: keyOf(nextKeyFile), csrKeyFile: keyOf(csrKeyFile)}
	certKeyFrom := ""
	if b := load(certFile); b != nil {
		chain, leaf, err := parseChain(b)
		switch {
		case err != nil:
			log.Error("damaged certificate ignored; upload it again", zap.String("file", certFile), zap.Error(err))
		default:
			for _, name := range []string{keyFile, nextKeyFile, csrKeyFile} {
				if k := keys[name]; k != nil && samePublicKey(leaf.PublicKey, k.Public()) {
					e.cert, certKeyFrom = &tls.Certificate{Certificate: chain, PrivateKey: k, Leaf: leaf}, name
					break
				}
			}
			if e.cert == nil {
				log.Error("the stored certificate has no matching key; upload it again")
			}
		}
	}
	// The CSR's key serving as the certificate's means the CSR was answered: the upload writes
	// that key to key.next.pem and key.pem before it removes csr.key, so whichever file the key
	// was found in, the CSR is no longer pending.
	if k := keys[csrKeyFile]; k != nil && (e.cert == nil || !samePublicKey(e.cert.Leaf.PublicKey, k.Public())) {
		if b := load(csrFile); b != nil {
			if blk, _ := pem.Decode(b); blk != nil && blk.Type == "CERTIFICATE REQUEST" {
				if req, err := x509.ParseCertificateRequest(blk.Bytes); err == nil && samePublicKey(req.PublicKey, k.Public()) {
					e.csr = &pendingCSR{der: blk.Bytes, req: req, key: k, created: md.CSRCreated}
				}
			}
			if e.csr == nil {
				log.Warn("damaged CSR removed; make a new one")
			}
		}
	}

	// Finish an interrupted upload, or clean up after an interrupted CSR or discard.
	if e.cert != nil && certKeyFrom != keyFile {
		log.Info("finishing an interrupted upload")
		kp, err := keyPEM(e.cert.PrivateKey.(crypto.Signer))
		if err == nil {
			err = m.store(ctx, d, keyFile, kp)
		}
		if err != nil {
			log.Warn("could not finish the upload", zap.Error(err))
		}
	}
	if e.cert != nil && md.Certificate != fingerprint(e.cert.Leaf.Raw) {
		e.uploaded = m.cfg.Now().UTC()
	}
	if e.csr != nil && e.csr.created.IsZero() {
		e.csr.created = m.cfg.Now().UTC()
	}
	if !metaEqual(metaOf(e), md) {
		log.Info("repairing "+metaFile, zap.Bool("certificate", e.cert != nil), zap.Bool("csr_pending", e.csr != nil))
		if err := m.saveMeta(ctx, e); err != nil {
			log.Warn("could not repair", zap.Error(err))
		}
	}
	var stale []string
	if keys[nextKeyFile] != nil || load(nextKeyFile) != nil {
		stale = append(stale, nextKeyFile)
	}
	if e.csr == nil && (keys[csrKeyFile] != nil || load(csrFile) != nil || load(csrKeyFile) != nil) {
		stale = append(stale, csrFile, csrKeyFile)
	}
	if err := m.remove(ctx, d, stale...); err != nil {
		log.Warn("could not remove stale files", zap.Error(err))
	}
	if e.cert != nil && m.cfg.Now().After(e.cert.Leaf.NotAfter) {
		log.Warn("the uploaded certificate has expired; it is not served", zap.Time("not_after", e.cert.Leaf.NotAfter))
	}
	return e, nil
}

// metaEqual compares two metadata records, times by instant.
func metaEqual(a, b meta) bool {
	if !a.Added.Equal(b.Added) || !a.Uploaded.Equal(b.Uploaded) || !a.CSRCreated.Equal(b.CSRCreated) {
		return false
	}
	a.Added, a.Uploaded, a.CSRCreated = b.Added, b.Uploaded, b.CSRCreated
	return a == b
}

// samePublicKey reports whether two public keys are equal.
func samePublicKey(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// parseStoredKey reads a key this package stored (PKCS#8 PEM).
func parseStoredKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PKCS#8 PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("the PKCS#8 key does not decode")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	return s, nil
}

// parseChain reads a stored chain: CERTIFICATE blocks, leaf first.
func parseChain(b []byte) ([][]byte, *x509.Certificate, error) {
	var chain [][]byte
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			chain = append(chain, blk.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, nil, fmt.Errorf("the leaf does not parse: %w", err)
	}
	return chain, leaf, nil
}

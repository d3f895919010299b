package tenant

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// authority is the local CA.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	id   string // names the CA's subject and key in bundle headers
}

// loadCA loads Dir/ca.pem and Dir/ca.key, or makes them. A CA certificate that is missing,
// damaged or about to expire is signed again with the existing key, so leaves stay valid; a
// missing or damaged key with a certificate present is an error (see ErrLocalCA).
func loadCA(dir string, now time.Time, log *zap.Logger) (ca *authority, issued bool, err error) {
	certPath, keyPath := filepath.Join(dir, CAFileName), filepath.Join(dir, "ca.key")
	keyData, err := readOptional(keyPath)
	if err != nil {
		return nil, false, fmt.Errorf("tenant: local CA: %w", err)
	}
	certData, err := readOptional(certPath)
	if err != nil {
		return nil, false, fmt.Errorf("tenant: local CA: %w", err)
	}
	var key crypto.Signer
	switch {
	case keyData == nil && certData != nil:
		return nil, false, fmt.Errorf("%w: %s exists but %s is missing; restore the key, or delete %s to make a new CA (clients then need the new %s)",
			ErrLocalCA, certPath, keyPath, certPath, CAFileName)
	case keyData == nil:
		if key, err = KeyECDSAP256.generate(); err != nil {
			return nil, false, fmt.Errorf("tenant: local CA: %w", err)
		}
		if err := writeKey(keyPath, key); err != nil {
			return nil, false, err
		}
		log.Info("created local CA key", zap.String("file", keyPath))
	default:
		os.Chmod(keyPath, 0o600)
		if key, err = parseKeyPEM(keyData); err != nil {
			return nil, false, fmt.Errorf("%w: %s %v; restore it, or delete %s and %s to make a new CA", ErrLocalCA, keyPath, err, keyPath, certPath)
		}
	}
	if certData != nil {
		var reason string
		if b, _ := pem.Decode(certData); b == nil || b.Type != "CERTIFICATE" {
			reason = "not a PEM certificate"
		} else if c, err := x509.ParseCertificate(b.Bytes); err != nil {
			reason = "does not parse"
		} else if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
			return nil, false, fmt.Errorf("%w: %s and %s do not belong together; restore the right pair, or delete both to make a new CA",
				ErrLocalCA, certPath, keyPath)
		} else if !c.IsCA {
			reason = "not a CA certificate"
		} else if now.Before(c.NotBefore) || c.NotAfter.Sub(now) <= renewBefore {
			reason = "outside its validity"
		} else {
			return &authority{cert: c, key: key, id: caID(c)}, false, nil
		}
		log.Warn("signing the local CA certificate again", zap.String("file", certPath), zap.String("reason", reason))
	}
	c, err := newCACert(key, now)
	if err != nil {
		return nil, false, err
	}
	err = writeFileAtomic(certPath, 0o644, true, func(w *fileWriter) error {
		return pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	})
	if err != nil {
		return nil, false, err
	}
	return &authority{cert: c, key: key, id: caID(c)}, true, nil
}

func newCACert(key crypto.Signer, now time.Time) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: LocalCAName, Organization: []string{"edgesim"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("tenant: local CA: %w", err)
	}
	return x509.ParseCertificate(der)
}

// caID names a CA by subject and key, which stay the same when the CA certificate is signed
// again; leaves issued under either certificate chain to both.
func caID(c *x509.Certificate) string {
	h := sha256.New()
	h.Write(c.RawSubject)
	h.Write(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

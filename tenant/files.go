package tenant

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// loadFiles loads a files-scenario tenant's certificate chain and key.
func loadFiles(t *Tenant) (*tls.Certificate, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: "+format, append([]any{ErrCertFiles, t.Domain}, a...)...)
	}
	certPEM, err := os.ReadFile(t.CertFile)
	if err != nil {
		return nil, bad("cert_file: %v", err)
	}
	var chain [][]byte
	var sawPEM, sawKey bool
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		sawPEM = true
		switch {
		case b.Type == "CERTIFICATE":
			chain = append(chain, b.Bytes)
		case bytes.HasSuffix([]byte(b.Type), []byte("PRIVATE KEY")):
			sawKey = true
		}
	}
	switch {
	case len(chain) > 0:
	case sawKey:
		return nil, bad("cert_file %s holds a private key, not a certificate; are cert_file and key_file swapped?", t.CertFile)
	case sawPEM:
		return nil, bad("cert_file %s holds PEM data but no CERTIFICATE block", t.CertFile)
	default:
		return nil, bad("cert_file %s holds no PEM data; expected -----BEGIN CERTIFICATE-----", t.CertFile)
	}
	var leaf *x509.Certificate
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, bad("cert_file %s: certificate %d of %d is not valid X.509: %v", t.CertFile, i+1, len(chain), err)
		}
		if i == 0 {
			leaf = c
		}
	}
	keyPEM, err := os.ReadFile(t.KeyFile)
	if err != nil {
		return nil, bad("key_file: %v", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, bad("key_file %s %v", t.KeyFile, err)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, bad("key_file %s does not match the certificate in cert_file %s (their public keys differ)", t.KeyFile, t.CertFile)
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

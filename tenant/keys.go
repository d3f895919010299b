package tenant

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// KeyType names the algorithm and size of the leaf keys Provision generates.
type KeyType string

// The leaf key types. RSA is what Expressway recommends for domain certificates; ECDSA keys are
// much cheaper to generate and to use in handshakes.
const (
	KeyRSA2048   KeyType = "rsa-2048"
	KeyRSA4096   KeyType = "rsa-4096"
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"

	// DefaultKeyType is used when Options.KeyType is empty.
	DefaultKeyType = KeyRSA2048
)

// KeyTypes lists the accepted key types, in documentation order.
var KeyTypes = []KeyType{KeyRSA2048, KeyRSA4096, KeyECDSAP256, KeyECDSAP384}

// Default leaf key pool sizes (Options.KeyPool): RSA keys take tens of milliseconds (rsa-2048)
// to seconds (rsa-4096) each to generate, ECDSA keys microseconds.
const (
	DefaultRSAKeyPool   = 16
	DefaultECDSAKeyPool = 64
)

// ParseKeyType reads a key type as written on a command line or in a file (any case). The empty
// string means DefaultKeyType.
func ParseKeyType(s string) (KeyType, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return DefaultKeyType, nil
	}
	for _, k := range KeyTypes {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of %s)", ErrBadKeyType, s, keyTypeList())
}

func keyTypeList() string {
	s := make([]string, len(KeyTypes))
	for i, k := range KeyTypes {
		s[i] = string(k)
	}
	return strings.Join(s, "|")
}

func (k KeyType) isRSA() bool { return k == KeyRSA2048 || k == KeyRSA4096 }

// defaultPool is the pool size used when Options.KeyPool is zero.
func (k KeyType) defaultPool() int {
	if k.isRSA() {
		return DefaultRSAKeyPool
	}
	return DefaultECDSAKeyPool
}

func (k KeyType) generate() (crypto.Signer, error) {
	switch k {
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	}
	return nil, fmt.Errorf("%w %q", ErrBadKeyType, k)
}

// holds reports whether s is a key of type k.
func (k KeyType) holds(s crypto.Signer) bool {
	switch key := s.(type) {
	case *rsa.PrivateKey:
		return k == KeyRSA2048 && key.N.BitLen() == 2048 || k == KeyRSA4096 && key.N.BitLen() == 4096
	case *ecdsa.PrivateKey:
		return k == KeyECDSAP256 && key.Curve == elliptic.P256() || k == KeyECDSAP384 && key.Curve == elliptic.P384()
	}
	return false
}

// keyPool is the set of leaf keys shared by all tenants' certificates. It is read-only once
// loaded and safe for concurrent use.
type keyPool struct {
	keys  []crypto.Signer
	byPub map[string]int // DER SubjectPublicKeyInfo -> index in keys
}

// lookup returns the pool key whose public half is spki (a certificate's
// RawSubjectPublicKeyInfo).
func (p *keyPool) lookup(spki []byte) (crypto.Signer, bool) {
	i, ok := p.byPub[string(spki)]
	if !ok {
		return nil, false
	}
	return p.keys[i], true
}

// loadPool loads dir/000.key … dir/<n-1>.key, generating (in parallel) those that are missing,
// unreadable or of the wrong type. It returns how many keys it generated.
func loadPool(dir string, kt KeyType, n int, log *zap.Logger) (*keyPool, int, error) {
	if err := mkdirPrivate(dir, true); err != nil {
		return nil, 0, err
	}
	p := &keyPool{keys: make([]crypto.Signer, n), byPub: make(map[string]int, n)}
	var (
		mu        sync.Mutex
		firstErr  error
		generated int
		next      = make(chan int)
		wg        sync.WaitGroup
	)
	for range min(runtime.NumCPU(), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				key, gen, err := loadOrGenerateKey(filepath.Join(dir, fmt.Sprintf("%03d.key", i)), kt, log)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if gen {
					generated++
				}
				mu.Unlock()
				p.keys[i] = key
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, generated, firstErr
	}
	for i, k := range p.keys {
		spki, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			return nil, generated, fmt.Errorf("tenant: key pool: %w", err)
		}
		if _, dup := p.byPub[string(spki)]; dup {
			return nil, generated, fmt.Errorf("tenant: key pool %s: %03d.key is a copy of another pool key; delete it to get a new one", dir, i)
		}
		p.byPub[string(spki)] = i
	}
	return p, generated, nil
}

func loadOrGenerateKey(path string, kt KeyType, log *zap.Logger) (crypto.Signer, bool, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, perr := parseKeyPEM(data)
		if perr == nil && kt.holds(key) {
			os.Chmod(path, 0o600) // best effort: keep a copied-in key private
			return key, false, nil
		}
		reason := "not a " + string(kt) + " key"
		if perr != nil {
			reason = perr.Error()
		}
		log.Warn("replacing unusable pool key", zap.String("file", path), zap.String("reason", reason))
	case !errors.Is(err, os.ErrNotExist):
		return nil, false, fmt.Errorf("tenant: key pool: %w", err)
	}
	key, err := kt.generate()
	if err != nil {
		return nil, false, fmt.Errorf("tenant: key pool: generate %s key: %w", kt, err)
	}
	if err := writeKey(path, key); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// writeKey stores key as PEM PKCS#8 with mode 0600, atomically.
func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("tenant: encode key for %s: %w", path, err)
	}
	return writeFileAtomic(path, 0o600, true, func(w *fileWriter) error {
		return pem.Encode(w, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	})
}

// Sentences parseKeyPEM returns. They never quote the input: key bytes must not reach an error
// or a log line.
var (
	errKeyNotPEM = errors.New("holds no PEM data; expected -----BEGIN PRIVATE KEY----- (PKCS#8), " +
		"-----BEGIN RSA PRIVATE KEY----- (PKCS#1) or -----BEGIN EC PRIVATE KEY-----")
	errKeyEncrypted = errors.New("is password-protected; Expressway and edgesim take an unencrypted " +
		"PEM key (decrypt it with: openssl pkey -in <file> -out <plain file>)")
	errKeyIsCert = errors.New("holds a certificate, not a private key; are cert_file and key_file swapped?")
)

// parseKeyPEM decodes the first private key in data: PKCS#8 PRIVATE KEY, PKCS#1 RSA PRIVATE KEY
// or SEC 1 EC PRIVATE KEY. Other blocks before it (EC PARAMETERS) are skipped. Errors are
// sentences to follow "key_file <path>" and hold none of the input.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	var sawCert, sawPEM bool
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		sawPEM = true
		if b.Headers["Proc-Type"] != "" && strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, errKeyEncrypted
		}
		var (
			key any
			err error
		)
		switch b.Type {
		case "ENCRYPTED PRIVATE KEY":
			return nil, errKeyEncrypted
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
			return nil, fmt.Errorf("has a %s block that does not decode as that kind of key", b.Type)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("holds a %T key; use RSA, ECDSA or Ed25519", key)
		}
	}
	switch {
	case sawCert:
		return nil, errKeyIsCert
	case sawPEM:
		return nil, errors.New("holds PEM data but no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block")
	}
	return nil, errKeyNotPEM
}

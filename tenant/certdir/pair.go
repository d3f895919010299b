package certdir

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Reasons a pair is reported, the reason label of edgesim_certdir_errors_total.
const (
	ReasonMissingCert = "missing_cert"  // no tls.crt in the folder
	ReasonMissingKey  = "missing_key"   // no tls.key in the folder
	ReasonRead        = "read"          // a file that cannot be read, or over maxFileSize
	ReasonBadCert     = "bad_cert"      // tls.crt is not a PEM certificate chain
	ReasonBadKey      = "bad_key"       // tls.key is not an unencrypted PEM private key
	ReasonKeyMismatch = "key_mismatch"  // tls.key does not belong to the leaf in tls.crt
	ReasonNoNames     = "no_dns_names"  // the leaf carries no usable SAN dNSName
	ReasonExpired     = "expired"       // loaded, but past its NotAfter
	ReasonNotYetValid = "not_yet_valid" // loaded, but before its NotBefore
	ReasonDir         = "dir"           // the directory itself cannot be read (by a poll)
)

var reasons = []string{ReasonMissingCert, ReasonMissingKey, ReasonRead, ReasonBadCert, ReasonBadKey,
	ReasonKeyMismatch, ReasonNoNames, ReasonExpired, ReasonNotYetValid, ReasonDir}

// maxFileSize bounds what is read of tls.crt and tls.key: a chain is a few kilobytes.
const maxFileSize = 1 << 20

// digest identifies a folder's content: both files' bytes, or how reading them failed.
type digest [sha256.Size]byte

// pair is what a folder held at one moment.
type pair struct {
	crt, key       []byte
	crtErr, keyErr error
	digest         digest
}

// readPair reads dir/tls.crt and dir/tls.key. The ..data links of the folder and of its parent
// (a projected volume mounted at DIR) are read before and after: when one moved in between,
// the kubelet swapped the Secret while we read, and the pair is read again.
func readPair(dir string) pair {
	var p pair
	for range 3 {
		before := dataLinks(dir)
		p.crt, p.crtErr = readFile(filepath.Join(dir, CertFile))
		p.key, p.keyErr = readFile(filepath.Join(dir, KeyFile))
		if dataLinks(dir) == before {
			break
		}
	}
	h := sha256.New()
	for _, part := range [...]struct {
		b   []byte
		err error
	}{{p.crt, p.crtErr}, {p.key, p.keyErr}} {
		if part.err != nil {
			fmt.Fprintf(h, "error %d:%s\n", len(part.err.Error()), part.err)
			continue
		}
		fmt.Fprintf(h, "data %d\n", len(part.b))
		h.Write(part.b)
	}
	h.Sum(p.digest[:0])
	return p
}

// statPair fingerprints dir's pair by metadata: the ..data links and, for tls.crt and tls.key
// (their link targets), device, inode, size and modification time. "" when a file is missing,
// so the pair is read (and its absence reported) as before.
func statPair(dir string) string {
	var b strings.Builder
	b.WriteString(dataLinks(dir))
	for _, name := range [...]string{CertFile, KeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return ""
		}
		fmt.Fprintf(&b, "|%d:%d", fi.Size(), fi.ModTime().UnixNano())
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(&b, ":%d:%d", sys.Dev, sys.Ino)
		}
	}
	return b.String()
}

// dataLinks returns where dir/..data and its parent's ..data point ("" where there is none).
func dataLinks(dir string) string {
	a, _ := os.Readlink(filepath.Join(dir, "..data"))
	b, _ := os.Readlink(filepath.Join(filepath.Dir(dir), "..data"))
	return a + "\x00" + b
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err == nil && len(b) > maxFileSize {
		err = fmt.Errorf("%s is over %d bytes", filepath.Base(path), maxFileSize)
	}
	return b, err
}

// cert is a folder's loaded certificate.
type cert struct {
	tls     *tls.Certificate // the chain and key for the handshake; no Leaf
	leaf    *x509.Certificate
	names   []string // normalised SAN dNSNames, "*.parent" for wildcards, no duplicates
	skipped []string // SAN dNSNames that cannot be served
	digest  digest
}

func (c *cert) serial() string { return hex.EncodeToString(c.leaf.SerialNumber.Bytes()) }

// parsePair checks a pair and returns its certificate, or the reason and a sentence saying what
// is wrong. Errors never quote the key.
func parsePair(p pair) (*cert, string, error) {
	switch {
	case errors.Is(p.crtErr, fs.ErrNotExist):
		return nil, ReasonMissingCert, fmt.Errorf("no %s in the folder", CertFile)
	case p.crtErr != nil:
		return nil, ReasonRead, fmt.Errorf("%s: %w", CertFile, p.crtErr)
	case errors.Is(p.keyErr, fs.ErrNotExist):
		return nil, ReasonMissingKey, fmt.Errorf("no %s in the folder", KeyFile)
	case p.keyErr != nil:
		return nil, ReasonRead, fmt.Errorf("%s: %w", KeyFile, p.keyErr)
	}
	var chain [][]byte
	var leaf *x509.Certificate
	rest := p.crt
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue // a key or parameters bundled in: not ours to use, never to quote
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, ReasonBadCert, fmt.Errorf("%s: certificate %d of the chain: %w", CertFile, len(chain)+1, err)
		}
		if leaf == nil {
			leaf = c
		}
		chain = append(chain, b.Bytes)
	}
	if leaf == nil {
		return nil, ReasonBadCert, fmt.Errorf("%s holds no PEM CERTIFICATE block", CertFile)
	}
	key, err := parseKey(p.key)
	if err != nil {
		return nil, ReasonBadKey, err
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, ReasonKeyMismatch, fmt.Errorf("%s does not belong to the certificate in %s (serial %s)",
			KeyFile, CertFile, hex.EncodeToString(leaf.SerialNumber.Bytes()))
	}
	c := &cert{tls: &tls.Certificate{Certificate: chain, PrivateKey: key}, leaf: leaf, digest: p.digest}
	for _, n := range leaf.DNSNames {
		n = normalize(n)
		switch {
		case !validName(n):
			c.skipped = append(c.skipped, n)
		case !slices.Contains(c.names, n):
			c.names = append(c.names, n)
		}
	}
	if len(c.names) == 0 {
		return nil, ReasonNoNames, fmt.Errorf("the certificate in %s (serial %s) carries no DNS name in its Subject Alternative Names to serve it for",
			CertFile, c.serial())
	}
	return c, "", nil
}

// parseKey reads the first PEM private key: PKCS#8, PKCS#1 (RSA) or SEC 1 (EC).
func parseKey(b []byte) (crypto.Signer, error) {
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("%s holds no PEM private key", KeyFile)
		}
		if blk.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(blk.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("%s is encrypted; store it unencrypted, as kubernetes.io/tls Secrets hold it", KeyFile)
		}
		if !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			continue
		}
		var k any
		var err error
		format := "PKCS #8"
		switch blk.Type {
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
			format = "PKCS #1 (RSA)"
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(blk.Bytes)
			format = "SEC 1 (EC)"
		default:
			k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		}
		if err != nil {
			// Neither the parser's message nor the block's label is passed on: both come from
			// the key file, and a damaged file can put key text in the label.
			return nil, fmt.Errorf("%s: the private key cannot be parsed as %s; export it again as PEM", KeyFile, format)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: a %T cannot sign", KeyFile, k)
		}
		return s, nil
	}
}

// normalize lower-cases a name and drops one trailing dot.
func normalize(n string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
}

// validName reports whether n can be an SNI store key: a host name, or "*." and one, with no
// other '*'.
func validName(n string) bool {
	host := strings.TrimPrefix(n, "*.")
	if host == "" || len(n) > 253 || strings.Contains(host, "*") || strings.HasPrefix(host, ".") ||
		strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
		return false
	}
	if host != n && !strings.Contains(host, ".") {
		return false // *.com
	}
	return !strings.ContainsAny(host, " /\\:@")
}

package certlint

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

// ParseChain reads a certificate chain, leaf first: PEM with one or more CERTIFICATE blocks, or
// DER (one certificate, or several concatenated). Other PEM blocks are skipped; a private key
// in the file is ignored, and neither it nor any of the file's bytes appear in an error.
//
// An error is one sentence saying what the file holds instead, and matches (errors.Is) one of
// ErrEmpty, ErrNoCertificate, ErrPrivateKeyOnly, ErrBadPEM or ErrBadCertificate.
func ParseChain(data []byte) ([]*x509.Certificate, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, parseErr(ErrEmpty, "the file is empty")
	}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		return parseDER(data)
	}
	var (
		certs  []*x509.Certificate
		others []string // types of the other blocks, for the error when there is no certificate
		keys   int
		rest   = data
	)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE" || b.Type == "TRUSTED CERTIFICATE" || b.Type == "X509 CERTIFICATE":
			cs, err := x509.ParseCertificates(b.Bytes)
			if err == nil && len(cs) == 0 {
				err = fmt.Errorf("empty block")
			}
			if err != nil {
				return nil, parseErr(ErrBadCertificate, "PEM block %d (CERTIFICATE) is not a valid X.509 certificate: %v", len(certs)+len(others)+keys+1, err)
			}
			certs = append(certs, cs...)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			keys++
		default:
			others = append(others, b.Type)
		}
	}
	if bytes.Contains(rest, []byte("-----BEGIN")) {
		// pem.Decode gave up on a block: bad base64, a missing END line, or a mangled header.
		what := "a block after the certificates"
		if len(certs)+len(others)+keys == 0 {
			what = "the first block"
		}
		return nil, parseErr(ErrBadPEM, "%s cannot be decoded (bad base64, or its '-----END ...-----' line is missing or mistyped)", what)
	}
	if len(certs) > 0 {
		return certs, nil
	}
	switch {
	case keys > 0 && len(others) == 0:
		return nil, parseErr(ErrPrivateKeyOnly, "the file holds a private key and no certificate (want the signed certificate, '-----BEGIN CERTIFICATE-----')")
	case len(others) > 0 && others[0] == "CERTIFICATE REQUEST" || len(others) > 0 && others[0] == "NEW CERTIFICATE REQUEST":
		return nil, parseErr(ErrNoCertificate, "the file holds a certificate signing request, not a certificate: have the CA sign it and lint what it returns")
	}
	return nil, parseErr(ErrNoCertificate, "the file holds PEM blocks (%s) but no '-----BEGIN CERTIFICATE-----' block", strings.Join(blockTypes(others, keys), ", "))
}

// parseError is a ParseChain error: its message is the sentence for people, and it matches
// its sentinel with errors.Is.
type parseError struct {
	kind error
	msg  string
}

func (e *parseError) Error() string { return e.msg }
func (e *parseError) Unwrap() error { return e.kind }

func parseErr(kind error, format string, args ...any) error {
	return &parseError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// blockTypes names the PEM blocks found, each type once, keys last.
func blockTypes(others []string, keys int) []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range others {
		if !seen[t] {
			seen[t] = true
			out = append(out, printableType(t))
		}
	}
	if keys > 0 {
		out = append(out, "PRIVATE KEY")
	}
	return out
}

// printableType keeps a PEM type short and printable for an error message.
func printableType(t string) string {
	if len(t) > 40 {
		t = t[:40] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, t)
}

// parseDER reads binary certificates; when the bytes are not certificates it says whether they
// look like a private key or like text.
func parseDER(data []byte) ([]*x509.Certificate, error) {
	certs, err := x509.ParseCertificates(data)
	if err == nil && len(certs) > 0 {
		return certs, nil
	}
	if isDERKey(data) {
		return nil, parseErr(ErrPrivateKeyOnly, "the file is a DER private key, not a certificate")
	}
	if isText(data) {
		return nil, parseErr(ErrNoCertificate, "the file is text without a '-----BEGIN CERTIFICATE-----' line (not PEM), and not DER either")
	}
	if err == nil {
		err = fmt.Errorf("no certificate")
	}
	return nil, parseErr(ErrBadCertificate, "the file is neither PEM (no '-----BEGIN CERTIFICATE-----' line) nor a DER certificate: %v", err)
}

func isDERKey(data []byte) bool {
	if _, err := x509.ParsePKCS8PrivateKey(data); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PrivateKey(data); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(data)
	return err == nil
}

// isText reports whether data looks like printable text (DER starts with 0x30 and is binary).
func isText(data []byte) bool {
	if len(data) > 512 {
		data = data[:512]
	}
	for _, c := range data {
		if (c < ' ' || c > '~') && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

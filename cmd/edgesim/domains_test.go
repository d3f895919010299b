package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// domainsCLI runs 'edgesim domains ARGS' as run does (through run once the command is
// registered) and returns the exit status and what was printed.
func domainsCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	for _, c := range commands() {
		if c.name == "domains" {
			code = run(append([]string{"domains"}, args...), &out, &errb)
			return code, out.String(), errb.String()
		}
	}
	err := runDomains(args, &out, &errb)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		code = exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(&errb, "edgesim domains: %v\n", err)
		code = exitUsage
	default:
		fmt.Fprintf(&errb, "edgesim domains: %v\n", err)
		code = exitFail
	}
	return code, out.String(), errb.String()
}

// goCA is a CA made in the test, standing in for the customer's CA.
type goCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newGoCA(t *testing.T) *goCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "customer CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &goCA{cert: c, key: key}
}

func (ca *goCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// signFor issues a certificate for pub and names; it returns the chain PEM and the leaf.
func (ca *goCA) signFor(t *testing.T, pub any, subject pkix.Name, names []string) ([]byte, *x509.Certificate) {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: subject, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...), leaf
}

// signCSR signs a CSR PEM as a CA would: its subject and SANs, its public key.
func (ca *goCA) signCSR(t *testing.T, csrPEM string) ([]byte, *x509.Certificate) {
	t.Helper()
	b, _ := pem.Decode([]byte(csrPEM))
	if b == nil {
		t.Fatalf("no CSR PEM in %q", csrPEM)
	}
	req, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || req.CheckSignature() != nil {
		t.Fatalf("bad CSR: %v", err)
	}
	return ca.signFor(t, req.PublicKey, req.Subject, req.DNSNames)
}

// verifiedHandshake connects to addr with SNI sni, verifying the chain against roots and the
// name, and returns the leaf presented.
func verifiedHandshake(t *testing.T, addr, sni string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: roots})
	if err != nil {
		t.Fatalf("verified handshake %s SNI %s: %v", addr, sni, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDomainsCommand is the Expressway procedure end to end: 'edgesim domains' against a running
// edge makes a CSR, a Go CA signs it, the upload is served at once to a verifying client, a
// restarted edge serves it too, and delete brings back the provisioned certificate.
func TestDomainsCommand(t *testing.T) {
	s := testServer(t, "--admin-addr", "127.0.0.1:0")
	admin := "http://" + s.admin.ln.Addr().String()
	https, _, _ := s.addrs()
	ca := newGoCA(t)
	dir := t.TempDir()
	var outputs strings.Builder
	cli := func(want int, args ...string) (string, string) {
		t.Helper()
		code, out, errs := domainsCLI(t, append([]string{"--admin", admin}, args...)...)
		outputs.WriteString(out + errs)
		if code != want {
			t.Fatalf("edgesim domains %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
		}
		return out, errs
	}
	provisioned := verifiedHandshake(t, https, "mra.example.com", s.caPool(t))

	if out, _ := cli(0, "list"); !strings.Contains(out, "no domains") {
		t.Fatalf("list of none: %q", out)
	}
	if out, _ := cli(0, "add", "example.com"); !strings.Contains(out, "added example.com (SNI hosts: mra.example.com)") {
		t.Fatalf("add: %q", out)
	}
	csrPEM, errs := cli(0, "csr", "example.com", "--key", "ecdsa-p256", "--digest", "sha384", "--san-format", "collab-edge", "--o", "Example Ltd", "--c", "GB")
	if !strings.HasPrefix(csrPEM, "-----BEGIN CERTIFICATE REQUEST-----") || !strings.Contains(errs, "SANs mra.example.com, collab-edge.example.com") {
		t.Fatalf("csr: stdout %q stderr %q", csrPEM, errs)
	}
	if _, errs := cli(1, "csr", "example.com"); !strings.Contains(errs, "discard it first") {
		t.Fatalf("second csr: %q", errs)
	}
	cli(0, "add", "weak.example")
	if _, errs := cli(0, "csr", "weak.example", "--key", "rsa-1024"); !strings.Contains(errs, "warning: a 1024-bit RSA key is weak") {
		t.Fatalf("rsa-1024 without a warning: %q", errs)
	}

	chain, leaf := ca.signCSR(t, csrPEM)
	certFile := writeFile(t, dir, "example.com.pem", chain)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(otherKey)
	otherKeyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	keyFile := writeFile(t, dir, "other.key", otherKeyPEM)
	if _, errs := cli(1, "upload", "example.com", "--cert", certFile, "--key", keyFile); !strings.Contains(errs, "discard the CSR first") {
		t.Fatalf("key upload with a CSR pending: %q", errs)
	}
	if out, _ := cli(0, "upload", "example.com", "--cert", certFile); !strings.Contains(out, "installed on mra.example.com") {
		t.Fatalf("upload: %q", out)
	}
	if got := verifiedHandshake(t, https, "mra.example.com", ca.pool()); !bytes.Equal(got.Raw, leaf.Raw) {
		t.Fatalf("after upload the edge presents %s from %s", got.Subject, got.Issuer)
	}
	// a domain that is no tenant gets the provider's SNI rule; a certificate made elsewhere
	cli(0, "add", "new.example")
	newChain, newLeaf := ca.signFor(t, &otherKey.PublicKey, pkix.Name{CommonName: "mra.new.example"}, []string{"mra.new.example", "new.example"})
	if out, _ := cli(0, "upload", "new.example", "--cert", writeFile(t, dir, "new.pem", newChain), "--key", keyFile); !strings.Contains(out, "installed on mra.new.example") {
		t.Fatalf("upload with key: %q", out)
	}
	if got := verifiedHandshake(t, https, "mra.new.example", ca.pool()); !bytes.Equal(got.Raw, newLeaf.Raw) {
		t.Fatal("the uploaded certificate of new.example is not served")
	}

	list, _ := cli(0, "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "DOMAIN") ||
		!strings.Contains(lines[1], "upload") || !strings.Contains(lines[1], "CN=customer CA") ||
		!strings.HasPrefix(lines[3], "weak.example") || !strings.Contains(lines[3], "pending") ||
		strings.Index(lines[0], "SOURCE") != strings.Index(lines[1], "upload") {
		t.Fatalf("list:\n%s", list)
	}
	show, _ := cli(0, "show", "example.com")
	for _, w := range []string{"subject:", "O=Example Ltd", "ECDSA 256", "SHA-256 fingerprint:", "collab-edge.example.com", "chain:", "2 certificates"} {
		if !strings.Contains(show, w) {
			t.Errorf("show lacks %q:\n%s", w, show)
		}
	}
	if out, _ := cli(0, "show", "example.com", "--pem"); out != string(chain) {
		t.Fatalf("show --pem: %q", out)
	}

	// a restarted edge over the same data serves the uploaded certificate and keeps the CSR
	s2 := testServer(t, "--data", s.dataDir, "--admin-addr", "127.0.0.1:0")
	https2, _, _ := s2.addrs()
	if got := verifiedHandshake(t, https2, "mra.example.com", ca.pool()); !bytes.Equal(got.Raw, leaf.Raw) {
		t.Fatal("after a restart the uploaded certificate is not served")
	}
	code, list2, _ := domainsCLI(t, "--admin", "http://"+s2.admin.ln.Addr().String(), "list")
	if code != 0 || list2 != list {
		t.Fatalf("list after a restart differs:\n%s\nbefore:\n%s", list2, list)
	}

	if out, _ := cli(0, "delete", "example.com"); !strings.Contains(out, "example.com deleted") {
		t.Fatalf("delete: %q", out)
	}
	if got := verifiedHandshake(t, https, "mra.example.com", s.caPool(t)); !bytes.Equal(got.Raw, provisioned.Raw) {
		t.Fatalf("after delete the edge presents %s, not the provisioned certificate", got.Subject)
	}
	cli(0, "delete", "new.example")
	if got := handshake(t, https, "mra.new.example"); !hasName(got, "mra.sp.example") {
		t.Fatalf("after delete of a domain with nothing before, the edge presents %v, not the platform certificate", got.DNSNames)
	}
	if out, _ := cli(0, "csr-discard", "weak.example"); !strings.Contains(out, "discarded") {
		t.Fatalf("csr-discard: %q", out)
	}
	if _, errs := cli(1, "show", "nope.example"); !strings.Contains(errs, "nope.example is not added") {
		t.Fatalf("show unknown: %q", errs)
	}
	if _, errs := cli(1, "acme", "weak.example"); !strings.Contains(errs, "ACME is not configured") {
		t.Fatalf("acme: %q", errs)
	}
	if strings.Contains(outputs.String(), "PRIVATE KEY") || strings.Contains(outputs.String(), strings.Split(string(otherKeyPEM), "\n")[1][:40]) {
		t.Fatal("a command printed a private key")
	}
}

func TestDomainsUsage(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "no command"},
		{[]string{"frob"}, exitUsage, `unknown command "frob"`},
		{[]string{"add"}, exitUsage, "takes one DOMAIN"},
		{[]string{"list", "extra"}, exitUsage, "takes no arguments"},
		{[]string{"upload", "example.com"}, exitUsage, "--cert FILE"},
		{[]string{"csr", "example.com", "--bogus"}, exitUsage, "-bogus"},
		{[]string{"--key", "rsa-2048", "csr", "example.com"}, exitUsage, "-key"},
		{[]string{"--admin", "ftp://x", "list"}, exitUsage, "want http://HOST:PORT"},
		{[]string{"--admin", "http://" + addr, "list"}, exitFail, "cannot reach the admin API"},
		{[]string{"--admin", "http://" + addr, "--ca", "/no/such/ca.pem", "list"}, exitUsage, "--ca"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errs := domainsCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errs, tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errs, tt.code, tt.want)
			}
		})
	}
	// -h lists every flag, for the README check
	code, _, errs := domainsCLI(t, "-h")
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(errs, -1) {
		listed[m[1]] = true
	}
	for _, f := range []string{"admin", "token", "ca", "key", "digest", "san-format", "cn", "o", "c", "san", "cert", "pem", "disable"} {
		if !listed[f] {
			t.Errorf("domains -h lacks -%s", f)
		}
	}
	if code != exitOK || !strings.Contains(errs, "edgesim domains csr example.com") {
		t.Fatalf("domains -h: exit %d\n%s", code, errs)
	}
}

package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesim/edgesim/tenant/certlint"
)

// certsPKI is a test CA and the RSA 2048 key its leaves share, made once.
var certsPKI = sync.OnceValues(func() (*certsIssued, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "certs test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	return &certsIssued{cert: c, der: der, key: caKey}, err
})

var certsLeafKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

type certsIssued struct {
	cert *x509.Certificate
	der  []byte
	key  crypto.Signer
}

// certsLeaf issues a leaf from the test CA for cn and dns with the given EKUs.
func certsLeaf(t *testing.T, cn string, dns []string, eku ...x509.ExtKeyUsage) *certsIssued {
	t.Helper()
	ca, err := certsPKI()
	if err != nil {
		t.Fatal(err)
	}
	key, err := certsLeafKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		ExtKeyUsage: eku, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certsIssued{cert: c, der: der, key: key}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeTemp(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// certsFiles writes the files the CLI tests use and returns their paths by name.
func certsFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	ca, err := certsPKI()
	if err != nil {
		t.Fatal(err)
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	good := certsLeaf(t, "mra.example.com", []string{"mra.example.com", "example.com", "collab-edge.b.com"}, both...)
	noClient := certsLeaf(t, "mra.example.com", []string{"mra.example.com", "example.com"}, x509.ExtKeyUsageServerAuth)
	evil := certsLeaf(t, "evil\x1b[2J\rname", []string{"mra.example.com"}, both...)
	return map[string]string{
		"dir":       dir,
		"roots":     writeTemp(t, dir, "ca.pem", pemCert(ca.der)),
		"good":      writeTemp(t, dir, "good.pem", append(pemCert(good.der), pemCert(ca.der)...)),
		"good.der":  writeTemp(t, dir, "good.der", good.der),
		"noclient":  writeTemp(t, dir, "noclient.pem", pemCert(noClient.der)),
		"withkey":   writeTemp(t, dir, "withkey.pem", append(pemKey(t, good.key), pemCert(good.der)...)),
		"keyonly":   writeTemp(t, dir, "key.pem", pemKey(t, good.key)),
		"text":      writeTemp(t, dir, "notes.txt", []byte("this is not a certificate\n")),
		"evil":      writeTemp(t, dir, "evil.pem", pemCert(evil.der)),
		"empty":     writeTemp(t, dir, "empty.pem", nil),
		"keybody":   string(pemKey(t, good.key)),
		"not-there": filepath.Join(dir, "missing.pem"),
	}
}

func TestCertsLint(t *testing.T) {
	f := certsFiles(t)
	tests := []struct {
		name    string
		args    []string
		failed  bool     // want errLoginFailed: a rule failed
		want    []string // in stdout
		notWant []string
	}{
		{
			name: "every rule passes",
			args: []string{"lint", f["good"], "--roots", f["roots"], "--domains", "example.com,b.com", "--host", "mra.example.com"},
			want: []string{f["good"] + ": 2 certificates, leaf mra.example.com, checked as expressway-e",
				"RULE", "RESULT", "REASON", "san ", "collab-edge-dns", "eku", "wildcard", "key", "validity", "chain",
				"registration domain b.com as dNSName collab-edge.b.com", "RSA 2048 bits (RSA recommended)",
				"verifies to trusted root CN=certs test CA", "all 7 rules pass"},
			notWant: []string{"FAIL"},
		},
		{
			name: "flags before the file, DER file",
			args: []string{"lint", "--roots", f["roots"], "--role", "http", "--host", "mra.example.com", f["good.der"]},
			want: []string{"1 certificate, leaf mra.example.com, checked as http", "host mra.example.com by SAN dNSName mra.example.com", "all 6 rules pass"},
		},
		{
			name:   "a rule fails",
			args:   []string{"lint", f["noclient"], "--roots", f["roots"]},
			failed: true,
			want:   []string{"eku", "FAIL", "no clientAuth EKU", "1 of 7 rules FAILED: eku"},
		},
		{
			name:   "domain missing",
			args:   []string{"lint", f["good"], "--roots", f["roots"], "--domains", "c.com"},
			failed: true,
			want:   []string{"registration domain c.com missing: neither c.com nor collab-edge.c.com is a SAN dNSName", "FAILED: san"},
		},
		{
			name:   "system roots do not know the test CA",
			args:   []string{"lint", f["good"]},
			failed: true,
			want:   []string{"FAILED: chain"}, // unknown authority, or no system roots at all
		},
		{
			name:    "control characters in names are not printed",
			args:    []string{"lint", f["evil"], "--roots", f["roots"]},
			want:    []string{"leaf evil?[2J?name"},
			notWant: []string{"\x1b", "\r"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runCerts(tt.args, &stdout, &stderr)
			if tt.failed {
				if !errors.Is(err, errLoginFailed) || errors.Is(err, errUsage) {
					t.Fatalf("error = %v, want errLoginFailed\n%s", err, stdout.String())
				}
			} else if err != nil {
				t.Fatalf("error = %v\n%s", err, stdout.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(stdout.String(), w) {
					t.Errorf("output has %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}

func TestCertsLintJSON(t *testing.T) {
	f := certsFiles(t)
	for _, tc := range []struct {
		file string
		pass bool
	}{{f["good"], true}, {f["noclient"], false}} {
		var stdout, stderr bytes.Buffer
		err := runCerts([]string{"lint", "--json", "--roots", f["roots"], tc.file}, &stdout, &stderr)
		if (err == nil) != tc.pass || (err != nil && !errors.Is(err, errLoginFailed)) {
			t.Fatalf("%s: error = %v", tc.file, err)
		}
		var got certsLintReport
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", tc.file, err, stdout.String())
		}
		if got.Pass != tc.pass || got.File != tc.file || got.Role != certlint.RoleExpresswayE || len(got.Rules) != 7 {
			t.Errorf("%s: report %+v", tc.file, got)
		}
		for _, r := range got.Rules {
			if r.Name == "" || r.Reason == "" || (r.Name == certlint.RuleEKU && r.Pass != tc.pass) {
				t.Errorf("%s: rule %+v", tc.file, r)
			}
		}
		if !bytes.Contains(stdout.Bytes(), []byte(`"reason":`)) {
			t.Errorf("JSON lacks lower-case keys:\n%s", stdout.String())
		}
	}
}

func TestCertsLintUsage(t *testing.T) {
	f := certsFiles(t)
	tests := []struct {
		name string
		args []string
		want []string // in the error
	}{
		{"no subcommand", nil, []string{"one subcommand: 'edgesim certs lint FILE [flags]'"}},
		{"unknown subcommand", []string{"check", f["good"]}, []string{`unknown subcommand "check"`}},
		{"no file", []string{"lint"}, []string{"want one certificate file"}},
		{"two files", []string{"lint", f["good"], f["noclient"]}, []string{"want one certificate file"}},
		{"missing file", []string{"lint", f["not-there"]}, []string{"cannot read the certificate file", "missing.pem", "no such file"}},
		{"directory", []string{"lint", f["dir"]}, []string{"cannot read the certificate file", "is a directory"}},
		{"empty file", []string{"lint", f["empty"]}, []string{"empty.pem is not a usable certificate file", "empty"}},
		{"text file", []string{"lint", f["text"]}, []string{"notes.txt is not a usable certificate file", "not PEM"}},
		{"key only", []string{"lint", f["keyonly"]}, []string{"key.pem is not a usable certificate file", "private key and no certificate"}},
		{"unknown role", []string{"lint", "--role", "sip", f["good"]}, []string{`--role "sip": want one of expressway-e, expressway-c, http, xmpp`}},
		{"unknown flag", []string{"lint", "--domain", "a.com", f["good"]}, []string{"flag provided but not defined: -domain"}},
		{"wildcard domain", []string{"lint", "--domains", "*.example.com", f["good"]}, []string{`--domains "*.example.com": list the names themselves`}},
		{"address as domain", []string{"lint", "--domains", "bob@example.com", f["good"]}, []string{"give the domain (example.com), not an address"}},
		{"spaces in a list", []string{"lint", "--chat-aliases", "a.com b.com", f["good"]}, []string{"separated by commas"}},
		{"bad host", []string{"lint", "--host", "https://mra.example.com", f["good"]}, []string{"--host"}},
		{"roots missing", []string{"lint", "--roots", f["not-there"], f["good"]}, []string{"--roots", "no such file"}},
		{"roots not certificates", []string{"lint", "--roots", f["text"], f["good"]}, []string{"--roots", "not a usable certificate file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runCerts(tt.args, &stdout, &stderr)
			if !errors.Is(err, errUsage) {
				t.Fatalf("error = %v, want a usage error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if stdout.Len() > 0 {
				t.Errorf("printed despite the error:\n%s", stdout.String())
			}
		})
	}
}

func TestCertsHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"lint", "-h"}, {"lint", "server.pem", "--help"}} {
		var stdout, stderr bytes.Buffer
		if err := runCerts(args, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: error = %v, want flag.ErrHelp", args, err)
		}
		for _, w := range []string{"usage: edgesim certs lint FILE", "-role", "-domains", "-xmpp-domains", "-chat-aliases", "-security-profiles", "-roots", "-host", "-json"} {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%v: help lacks %q:\n%s", args, w, stderr.String())
			}
		}
	}
}

// TestCertsPrivateKeyNeverPrinted: a key in the file is ignored, and no output (text, JSON,
// note, error) carries any of its bytes.
func TestCertsPrivateKeyNeverPrinted(t *testing.T) {
	f := certsFiles(t)
	var lines []string
	for _, l := range strings.Split(f["keybody"], "\n") {
		if len(l) > 16 && !strings.HasPrefix(l, "-----") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatal("no key lines to look for")
	}
	for _, args := range [][]string{
		{"lint", f["withkey"], "--roots", f["roots"]},
		{"lint", f["withkey"], "--roots", f["roots"], "--json"},
		{"lint", f["withkey"]}, // fails: chain
		{"lint", f["keyonly"]}, // usage error
		{"lint", f["good"], "--roots", f["keyonly"]},
	} {
		var stdout, stderr bytes.Buffer
		err := runCerts(args, &stdout, &stderr)
		all := stdout.String() + stderr.String()
		if err != nil {
			all += err.Error()
		}
		if strings.Contains(all, "BEGIN PRIVATE KEY") {
			t.Errorf("%v: output shows a PEM key header", args)
		}
		for _, l := range lines {
			if strings.Contains(all, l) || strings.Contains(all, l[:16]) {
				t.Errorf("%v: output echoes the private key", args)
				break
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if err := runCerts([]string{"lint", f["withkey"], "--roots", f["roots"]}, &stdout, &stderr); err != nil {
		t.Fatalf("a key beside the certificate: %v\n%s", err, stdout.String())
	}
	if !strings.Contains(stderr.String(), "also holds a private key; it was ignored and is not printed") {
		t.Errorf("no note about the key on stderr: %q", stderr.String())
	}
}

// TestCertsExitStatus runs 'edgesim certs' through run once main.go lists the command.
func TestCertsExitStatus(t *testing.T) {
	listed := false
	for _, c := range commands() {
		listed = listed || c.name == "certs"
	}
	if !listed {
		t.Skip("the certs command is not in main.go's command table yet")
	}
	f := certsFiles(t)
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"certs", "lint", f["good"], "--roots", f["roots"]}, exitOK, ""},
		{[]string{"certs", "lint", f["noclient"], "--roots", f["roots"]}, exitFail, ""},
		{[]string{"certs", "lint", f["not-there"]}, exitUsage, "edgesim certs: cannot read the certificate file"},
		{[]string{"certs", "lint", "--role", "sip", f["good"]}, exitUsage, "run 'edgesim certs -h' for its flags"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(tt.args, &stdout, &stderr); code != tt.code {
			t.Errorf("%v: exit %d, want %d\n%s%s", tt.args, code, tt.code, stdout.String(), stderr.String())
		}
		if tt.stderr == "" && stderr.Len() > 0 {
			t.Errorf("%v: stderr %q, want nothing", tt.args, stderr.String())
		}
		if !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("%v: stderr %q lacks %q", tt.args, stderr.String(), tt.stderr)
		}
	}
}

func TestPrintableWriter(t *testing.T) {
	var b strings.Builder
	n, err := printableWriter{&b}.Write([]byte("mra.example.com\x1b[31m\tok\n"))
	if err != nil || n != 24 || b.String() != "mra.example.com?[31m\tok\n" {
		t.Fatalf("wrote %q (%d, %v)", b.String(), n, err)
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestNoSecretsInOutput runs edgesim as an operator would, all of it in this process: serve with
// JSON logs at debug level and the admin API with its token and TLS (as when it is bound beyond
// loopback), the whole domains procedure (a CSR, an upload for it, a certificate and key made
// elsewhere, show, show --pem, list, an encrypted key, a key that does not match), a login, a
// short load, /metrics, and a GET of every admin API route. It then searches every byte that came
// out (stdout, stderr, logs, HTTP bodies and headers, metrics, the files load wrote) for a PEM key
// label, for every private key it knows (the uploaded ones and every key edgesim keeps in its data
// folder: PEM lines, the base64 body on one line, the private numbers in hex and decimal), and
// for the admin token; and checks that every key file is 0600 in folders that are 0700.
func TestNoSecretsInOutput(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data") // made by edgesim, so its mode is edgesim's
	logs := &outputBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, zapcore.DebugLevel))
	var o serveOptions
	flags := newFlagSet("serve", "", io.Discard)
	o.register(flags)
	if err := flags.parse([]string{"--data", data, "--key-type", "ecdsa-p256", "--log-format", "json", "--log-level", "debug",
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--handshake-timeout", "5s"}); err != nil {
		t.Fatal(err)
	}
	o.adminSecureLoopback = true // a token to look for, and TLS as beyond loopback
	s, err := startServer(o, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	running := true
	stop := func() {
		if !running {
			return
		}
		running = false
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	t.Cleanup(stop)

	var outputs []output // everything edgesim wrote, by where it came from
	collect := func(what string, b []byte) { outputs = append(outputs, output{what, append([]byte(nil), b...)}) }
	var banner bytes.Buffer
	s.printBanner(&banner)
	collect("serve banner", banner.Bytes())

	dir := t.TempDir() // the operator's files
	caFile := s.certs.Load().CAFile
	edgeCA, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	customer := newGoCA(t)
	trusted := writeFile(t, dir, "trusted.pem", append(edgeCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: customer.cert.Raw})...))
	admin, token := s.admin, ""
	if b, err := os.ReadFile(admin.tokenFile); err != nil || len(bytes.TrimSpace(b)) < 16 {
		t.Fatalf("admin token file %s: %v %q", admin.tokenFile, err, b)
	} else {
		token = string(bytes.TrimSpace(b))
	}
	cmd := func(want int, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		collect("stdout of edgesim "+strings.Join(args, " "), stdout.Bytes())
		collect("stderr of edgesim "+strings.Join(args, " "), stderr.Bytes())
		if code != want {
			t.Fatalf("edgesim %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, &stdout, &stderr)
		}
		return stdout.String()
	}
	domainsCmd := func(want int, args ...string) string {
		t.Helper()
		return cmd(want, append([]string{"domains", "--admin", "https://" + admin.ln.Addr().String(), "--token", admin.tokenFile, "--ca", caFile}, args...)...)
	}

	// The domains procedure: a CSR signed by the customer's CA, uploaded without a key.
	domainsCmd(0, "add", "example.com")
	csrPEM := domainsCmd(0, "csr", "example.com", "--key", "ecdsa-p256")
	chain, _ := customer.signCSR(t, csrPEM)
	domainsCmd(0, "upload", "example.com", "--cert", writeFile(t, dir, "example.com.pem", chain))
	// A certificate and key made elsewhere, the key in each format an operator may have.
	var uploadedKeys [][]byte
	for i, format := range []string{"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"} {
		d := fmt.Sprintf("elsewhere%d.example", i)
		pub, keyPEM := secretsTestKey(t, format)
		uploadedKeys = append(uploadedKeys, keyPEM)
		other, _ := customer.signFor(t, pub, pkix.Name{CommonName: "mra." + d}, []string{"mra." + d, d})
		domainsCmd(0, "add", d)
		domainsCmd(0, "upload", d, "--cert", writeFile(t, dir, d+".pem", other), "--key", writeFile(t, dir, d+".key", keyPEM))
	}
	domainsCmd(0, "show", "example.com")
	domainsCmd(0, "show", "elsewhere0.example")
	domainsCmd(0, "show", "example.com", "--pem")
	domainsCmd(0, "list")
	// Wrong uploads: an encrypted key, a key that is not the certificate's, a key while a CSR is
	// pending.
	domainsCmd(0, "add", "bad.example")
	badPub, badKey := secretsTestKey(t, "EC PRIVATE KEY")
	uploadedKeys = append(uploadedKeys, badKey)
	badChain, _ := customer.signFor(t, badPub, pkix.Name{CommonName: "mra.bad.example"}, []string{"mra.bad.example"})
	badChainFile := writeFile(t, dir, "bad.pem", badChain)
	blk, _ := pem.Decode(badKey)
	// Legacy PEM encryption (deprecated in Go, still what old openssl key files hold).
	encrypted, err := x509.EncryptPEMBlock(rand.Reader, blk.Type, blk.Bytes, []byte("secret"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	encryptedPEM := pem.EncodeToMemory(encrypted)
	uploadedKeys = append(uploadedKeys, encryptedPEM)
	domainsCmd(1, "upload", "bad.example", "--cert", badChainFile, "--key", writeFile(t, dir, "encrypted.key", encryptedPEM))
	_, otherKey := secretsTestKey(t, "PRIVATE KEY")
	uploadedKeys = append(uploadedKeys, otherKey)
	domainsCmd(1, "upload", "bad.example", "--cert", badChainFile, "--key", writeFile(t, dir, "other.key", otherKey))
	domainsCmd(1, "upload", "bad.example", "--cert", badChainFile, "--key", writeFile(t, dir, "swapped.key", badChain))
	domainsCmd(1, "upload", "bad.example", "--cert", writeFile(t, dir, "swapped.pem", badKey), "--key", badChainFile)
	domainsCmd(0, "add", "pending.example")
	domainsCmd(0, "csr", "pending.example")
	domainsCmd(1, "upload", "pending.example", "--cert", badChainFile, "--key", writeFile(t, dir, "bad.key", badKey))

	// A login and a short load against the edge, trusting both CAs.
	dnsAddr := s.dns.Addr()
	cmd(0, "login", "bob@example.com", "--dns", dnsAddr, "--ca", trusted, "--password", "any")
	cmd(0, "login", "ivan@example.net", "--dns", dnsAddr, "--ca", trusted, "--json")
	users := writeFile(t, dir, "users.txt", []byte("bob@example.com\nalice@example.com\nivan@example.net\ncarol@example.org\n"))
	out := filepath.Join(dir, "load")
	cmd(0, "load", "--dns", dnsAddr, "--ca", trusted, "--users-file", users, "--concurrency", "4", "--count", "12",
		"--progress", "off", "--out", out+".json", "--html", out+".html", "--logins-out", out+".logins")
	for _, ext := range []string{".json", ".html", ".logins"} {
		b, err := os.ReadFile(out + ext)
		if err != nil {
			t.Fatal(err)
		}
		collect("load's "+ext+" file", b)
	}

	// /metrics, and every route of the admin API for each kind of domain.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.caPool(t)}}}
	defer hc.CloseIdleConnections()
	get := func(url, auth string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		var h bytes.Buffer
		resp.Header.Write(&h)
		collect("GET "+url, append(h.Bytes(), b...))
	}
	get("http://"+s.metricLn.Addr().String()+"/metrics", "")
	get("http://"+s.metricLn.Addr().String()+"/healthz", "")
	base := "https://" + admin.ln.Addr().String()
	for _, p := range []string{"/healthz", "/api/v1/healthz", "/api/v1/domains", "/api/v1/nope"} {
		get(base+p, token)
	}
	get(base+"/api/v1/domains", "")       // no token
	get(base+"/api/v1/domains", "not-it") // a wrong one
	for _, d := range []string{"example.com", "elsewhere0.example", "elsewhere1.example", "elsewhere2.example", "bad.example", "pending.example", "unknown.example"} {
		for _, p := range []string{"", "/certificate", "/certificate?format=pem", "/csr", "/csr?format=pem", "/acme"} {
			get(base+"/api/v1/domains/"+d+p, token)
		}
	}

	stop() // what shutdown logs counts too
	collect("logs", logs.Bytes())
	// The search is only as good as what was collected: the debug logs, the uploads' log lines
	// and the metrics must be there.
	all := bytes.Join(func() (b [][]byte) {
		for _, o := range outputs {
			b = append(b, o.data)
		}
		return b
	}(), nil)
	for _, want := range []string{`"level":"debug"`, `"msg":"certificate uploaded"`, "edgesim_build_info", `"domain":"elsewhere2.example"`, "password-protected"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("the output collected lacks %q", want)
		}
	}

	// The secrets: every key the test made or edgesim keeps, and the token.
	keys := append([][]byte(nil), uploadedKeys...)
	err = filepath.WalkDir(data, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(b, []byte("PRIVATE KEY")) {
			return err
		}
		keys = append(keys, b)
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s holds a private key: mode %v (%v), want 0600", path, modeOf(fi), err)
		}
		for d := filepath.Dir(path); len(d) >= len(data); d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s, on the way to the key %s: mode %v (%v), want 0700", d, path, modeOf(fi), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var onDisk int
	for _, k := range keys[len(uploadedKeys):] {
		onDisk += bytes.Count(k, []byte("-----BEGIN"))
	}
	// the CA key, the leaf key pool, the uploaded keys and the pending CSR's key at least
	if onDisk < 1+1+4+1 {
		t.Errorf("found %d keys under %s; the test looks in the wrong place", onDisk, data)
	}
	needles := map[string]string{"a PEM key label": "PRIVATE KEY", "the admin token": token}
	for _, k := range keys {
		for what, n := range keyNeedles(t, k) {
			needles[what] = n
		}
	}
	t.Logf("searched %d outputs (%d bytes) for %d strings from %d keys", len(outputs), outputsLen(outputs), len(needles), len(keys))
	for _, o := range outputs {
		for what, n := range needles {
			if i := bytes.Index(o.data, []byte(n)); i >= 0 {
				t.Errorf("%s holds %s: …%s…", o.what, what, o.data[max(0, i-80):min(len(o.data), i+len(n)+80)])
			}
		}
	}
}

func modeOf(fi fs.FileInfo) any {
	if fi == nil {
		return "unknown"
	}
	return fi.Mode().Perm()
}

type output struct {
	what string
	data []byte
}

func outputsLen(outs []output) int {
	n := 0
	for _, o := range outs {
		n += len(o.data)
	}
	return n
}

// keyNeedles returns what would give away the keys in pemData if it appeared in output: each
// PEM line of a key block, the block's base64 body on one line, and (for a key that parses) its
// private numbers in hex and decimal. Each is keyed by a description.
func keyNeedles(t *testing.T, pemData []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for rest := pemData; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if !strings.Contains(b.Type, "PRIVATE KEY") {
			continue
		}
		body := base64.StdEncoding.EncodeToString(b.Bytes)
		id := body[len(body)/2:][:12]
		out["the body of key "+id] = body
		for i := 0; i < len(body); i += 64 {
			if line := body[i:min(len(body), i+64)]; len(line) >= 24 {
				out[fmt.Sprintf("line %d of key %s", i/64+1, id)] = line
			}
		}
		if len(b.Headers) > 0 {
			continue // encrypted: its body is what there is to find
		}
		for i, n := range privateNumbers(b) {
			if n.BitLen() >= 128 {
				out[fmt.Sprintf("private number %d of key %s, hex", i, id)] = n.Text(16)
				out[fmt.Sprintf("private number %d of key %s, decimal", i, id)] = n.Text(10)
			}
		}
	}
	return out
}

// privateNumbers returns the secret values of a PEM key block: D and the primes of RSA, D of
// ECDSA, the seed of Ed25519.
func privateNumbers(b *pem.Block) []*big.Int {
	var key any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return append([]*big.Int{k.D}, k.Primes...)
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			return nil
		}
		return []*big.Int{new(big.Int).SetBytes(d)}
	case ed25519.PrivateKey:
		return []*big.Int{new(big.Int).SetBytes(k.Seed())}
	}
	return nil
}

// secretsTestKey makes a key and returns its public half and its PEM in format (the PEM label:
// PKCS#8, SEC 1 EC or PKCS#1 RSA).
func secretsTestKey(t *testing.T, format string) (pub any, keyPEM []byte) {
	t.Helper()
	var der []byte
	var err error
	switch format {
	case "RSA PRIVATE KEY":
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rand.Reader, 2048); err == nil {
			pub, der = &k.PublicKey, x509.MarshalPKCS1PrivateKey(k)
		}
	default:
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err == nil {
			pub = &k.PublicKey
			if format == "EC PRIVATE KEY" {
				der, err = x509.MarshalECPrivateKey(k)
			} else {
				der, err = x509.MarshalPKCS8PrivateKey(k)
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return pub, pem.EncodeToMemory(&pem.Block{Type: format, Bytes: der})
}

// outputBuffer collects log lines written from any goroutine.
type outputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *outputBuffer) Sync() error { return nil }

func (b *outputBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

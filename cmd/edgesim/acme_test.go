package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/edgesim/edgesim/acme/pebbletest"
	"github.com/edgesim/edgesim/driver"
)

// acmeSetup is Pebble on loopback for an edge that is to listen on httpsPort and dnsPort:
// Pebble resolves names through that DNS port and validates on that HTTPS port. args are the
// serve flags for the tenants YAML (written with yaml), a data directory, both ports and
// Pebble as the ACME CA; a test adds its own.
type acmeSetup struct {
	pebble *pebbletest.Pebble
	dir    string
	args   []string
}

func newACMESetup(t *testing.T, yaml string) acmeSetup {
	t.Helper()
	httpsPort, dnsPort := freeUDPPort(t), freeUDPPort(t)
	pebble := pebbletest.Start(t, pebbletest.Options{Resolver: "127.0.0.1:" + strconv.Itoa(dnsPort), TLSPort: httpsPort})
	dir := t.TempDir()
	root := filepath.Join(dir, "pebble-root.pem")
	if err := os.WriteFile(root, pebble.RootsPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return acmeSetup{pebble: pebble, dir: dir, args: []string{"--config", cfg, "--data", filepath.Join(dir, "data"),
		"--https-addr", "127.0.0.1:" + strconv.Itoa(httpsPort), "--dns-addr", "127.0.0.1:" + strconv.Itoa(dnsPort),
		"--acme-ca", pebble.DirectoryURL, "--acme-ca-root", root}}
}

// TestServeACME runs 'edgesim serve' with 20 tenants marked 'acme: true' against Pebble on
// loopback, which resolves their names through edgesim's own DNS and validates over the edge's
// HTTPS listener (TLS-ALPN-01): every tenant's handshake then presents a Pebble-issued
// certificate, a login passes with Pebble's root as the only trust, a forced renewal is served
// at once, and a restart serves the stored certificates without new orders.
func TestServeACME(t *testing.T) {
	if testing.Short() {
		t.Skip("issues 20 certificates (about 10 s)")
	}
	yaml := "provider: {edge_host: mra.sp.example}\ntenants:\n"
	const n = 20
	for k := 1; k <= n; k++ {
		yaml += fmt.Sprintf("  - {domain: acme-%d.example, users: [bob], acme: true}\n", k)
	}
	env := newACMESetup(t, yaml)
	pebble, dir := env.pebble, env.dir
	args := append(env.args, "--acme-email", "qa@sp.example", "--admin-addr", "127.0.0.1:0")
	s := startServerArgs(t, args...)

	// Wait for the issuance (a bounded queue of 4 workers).
	waitValid := func(s *server) {
		deadline := time.Now().Add(60 * time.Second)
		for k := 1; k <= n; k++ {
			d := fmt.Sprintf("acme-%d.example", k)
			for {
				st := s.acme.Status(d)
				if st.State == "valid" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: ACME state %s after 60 s: %s", d, st.State, st.LastError)
				}
				time.Sleep(50 * time.Millisecond) // polling issuance progress
			}
		}
	}
	waitValid(s)
	https, _, _ := s.addrs()
	serial := func(k int) string {
		sni := fmt.Sprintf("mra.acme-%d.example", k)
		c, err := tls.Dial("tcp", https, &tls.Config{ServerName: sni, RootCAs: pebble.IssuerRoots})
		if err != nil {
			t.Fatalf("%s: handshake verified against Pebble's roots: %v", sni, err)
		}
		defer c.Close()
		leaf := c.ConnectionState().PeerCertificates[0]
		if !hasName(leaf, fmt.Sprintf("acme-%d.example", k)) {
			t.Errorf("%s: certificate names %v, want the service domain too", sni, leaf.DNSNames)
		}
		return leaf.SerialNumber.String()
	}
	before := map[int]string{}
	for k := 1; k <= n; k++ {
		before[k] = serial(k)
	}

	// A whole login, trusting nothing but Pebble's root.
	roots := filepath.Join(dir, "pebble-issuer.pem")
	if err := os.WriteFile(roots, pebble.IssuerPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"login", "--dns", s.dns.Addr(), "--ca", roots, "--json", "bob@acme-7.example"}, &out, &errb); code != exitOK {
		t.Fatalf("login with Pebble's root: exit %d\n%s%s", code, out.String(), errb.String())
	}
	var tr driver.Trace
	_ = json.Unmarshal(out.Bytes(), &tr)
	if r, _ := tr.Result(driver.StepIdentity); !strings.Contains(r.Detail, "Pebble") {
		t.Errorf("identity row %q does not name Pebble's issuer", r.Detail)
	}

	// The domains API shows the ACME status.
	out.Reset()
	if code := run([]string{"domains", "--admin", s.admin.url(), "list"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "issued") {
		t.Errorf("domains list: exit %d\n%s%s", code, out.String(), errb.String())
	}

	// Forced renewal: a new certificate, served at once.
	if err := s.acme.Renew(context.Background(), "acme-3.example", true); err != nil {
		t.Fatal(err)
	}
	if got := serial(3); got == before[3] {
		t.Errorf("after a forced renewal acme-3 still serves serial %s", got)
	}
	orders := s.acme.Status("acme-5.example").Orders

	// Restart on the same data: the stored certificates are served, no new orders.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := startServerArgs(t, args...)
	waitValid(s2)
	if st := s2.acme.Status("acme-5.example"); st.Orders != 0 {
		t.Errorf("after a restart acme-5 placed %d orders (had %d before), want the stored certificate", st.Orders, orders)
	}
	if got := serial(5); got != before[5] {
		t.Errorf("after a restart acme-5 serves serial %s, want the stored %s", got, before[5])
	}
}

// With only DNS-01 offered, Pebble validates through the TXT records edgesim's own DNS serves.
func TestServeACMEDNS01(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates through Pebble")
	}
	env := newACMESetup(t, "tenants:\n  - {domain: dns01-a.example, acme: true}\n  - {domain: dns01-b.example, acme: true}\n")
	s := startServerArgs(t, append(env.args, "--acme-challenges", "dns-01", "--admin-addr", "")...)
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range []string{"dns01-a.example", "dns01-b.example"} {
		for st := s.acme.Status(d); st.State != "valid"; st = s.acme.Status(d) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: ACME state %s after 30 s: %s", d, st.State, st.LastError)
			}
			time.Sleep(50 * time.Millisecond) // polling issuance progress
		}
		if ch := s.acme.Status(d).Challenge; ch != "dns-01" {
			t.Errorf("%s validated by %q, want dns-01", d, ch)
		}
	}
	https, _, _ := s.addrs()
	c, err := tls.Dial("tcp", https, &tls.Config{ServerName: "mra.dns01-a.example", RootCAs: env.pebble.IssuerRoots})
	if err != nil {
		t.Fatalf("handshake verified against Pebble's roots: %v", err)
	}
	c.Close()
}

// startServerArgs starts 'edgesim serve' in-process with the given flags (ports must be given;
// xmpp, sip and metrics default to free ones) and shuts it down at the end of the test.
func startServerArgs(t *testing.T, args ...string) *server {
	t.Helper()
	var o serveOptions
	fs := newFlagSet("serve", "", io.Discard)
	o.register(fs)
	all := append([]string{"--key-type", "ecdsa-p256", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--metrics-addr", "127.0.0.1:0", "--handshake-timeout", "5s"}, args...)
	if err := fs.parse(all); err != nil {
		t.Fatal(err)
	}
	s, err := startServer(o, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.shutdown(ctx)
	})
	return s
}

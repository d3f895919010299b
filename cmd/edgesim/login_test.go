package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgesim/edgesim/driver"
)

// testClient is a driver client that asks s's DNS and trusts s's CA.
func testClient(t *testing.T, s *server, dnsAddr string, steps []driver.Step) *driver.Client {
	t.Helper()
	co := clientOptions{dns: dnsAddr, ca: s.certs.Load().CAFile, timeout: 5 * time.Second, sipMethod: "REGISTER"}
	cfg, err := co.config(steps)
	if err != nil {
		t.Fatal(err)
	}
	c, err := driver.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every certificate scenario of the built-in tenants is classified as Jabber would see it.
func TestLoginScenarios(t *testing.T) {
	s := testServer(t)
	c := testClient(t, s, s.dns.Addr(), nil)
	https, _, _ := s.addrs()
	_, httpsPort, _ := net.SplitHostPort(https)
	for _, tc := range []struct {
		user   string
		failed driver.Step
		class  driver.Class
		detail string // in the failing row's detail
	}{
		{user: "bob@example.com"},
		{user: "ivan@example.net"}, // single tenant
		{user: "carol@example.org", failed: driver.StepIdentity, class: driver.ClassPlatformCert,
			detail: "platform certificate (mra.sp.example): no domain certificate for mra.example.org"},
		{user: "dave@expired.example", failed: driver.StepIdentity, class: driver.ClassExpired, detail: "expired"},
		{user: "erin@wrong-name.example", failed: driver.StepIdentity, class: driver.ClassNameMismatch, detail: "mra.wrong-name.example"},
		{user: "frank@cn-only.example", failed: driver.StepEdgeDomain, class: driver.ClassEdgeDomain, detail: "_collab-edge._tls.cn-only.example"},
		{user: "grace@wildcard.example"}, // *.wildcard.example covers the SNI; wildcard.example is the second SAN
		{user: "heidi@self-signed.example", failed: driver.StepIdentity, class: driver.ClassUntrusted, detail: "self-signed"},
		{user: "mallory@example.com", failed: driver.StepEdgeConfig, class: driver.ClassUnauthorized, detail: "401"},
		{user: "bob@not-served.example", failed: driver.StepSRV, class: driver.ClassDNSError, detail: "REFUSED"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			tr := c.Login(context.Background(), tc.user, nil)
			var buf bytes.Buffer
			printTrace(&buf, tr)
			t.Logf("\n%s", buf.String())
			if tr.Failed != tc.failed || tr.Class != tc.class {
				t.Fatalf("failed at %q (%q), want %q (%q)", tr.Failed, tr.Class, tc.failed, tc.class)
			}
			if tc.failed == "" {
				if !tr.OK || len(tr.Steps) != len(driver.Steps) {
					t.Fatalf("OK=%v with %d steps, want every step to pass", tr.OK, len(tr.Steps))
				}
				return
			}
			r, _ := tr.Result(tc.failed)
			if !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("detail %q does not mention %q", r.Detail, tc.detail)
			}
			for _, later := range tr.Steps {
				if later.Step != tc.failed && later.Verdict == driver.Fail {
					t.Errorf("step %s failed too; steps after the first failure must be skipped", later.Step)
				}
			}
		})
	}

	// The SNI rule: a multitenant target in another domain is rewritten, a single-tenant target
	// in the service domain is kept.
	for user, want := range map[string][2]string{
		"bob@example.com":  {"mra.sp.example:" + httpsPort, "mra.example.com"},
		"ivan@example.net": {"expe1.example.net:" + httpsPort, "expe1.example.net"},
	} {
		tr := c.Login(context.Background(), user, nil)
		r, _ := tr.Result(driver.StepTLS)
		if r.Target != want[0] || r.SNI != want[1] {
			t.Errorf("%s: tls to %s with SNI %s, want %s with SNI %s", user, r.Target, r.SNI, want[0], want[1])
		}
		for _, st := range []driver.Step{driver.StepXMPP, driver.StepSIP} {
			if r, _ := tr.Result(st); r.SNI != want[1] {
				t.Errorf("%s: %s SNI %q, want %q", user, st, r.SNI, want[1])
			}
		}
	}
}

// A target that refuses connections is passed over for the next SRV target.
func TestLoginSRVFallback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	cfg := filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := fmt.Sprintf(`provider: {edge_host: mra.sp.example}
tenants:
  - domain: example.info
    users: [bob]
    srv:
      - {target: dead.sp.example, port: %d, priority: 5, weight: 10}
      - {target: mra.sp.example, priority: 10, weight: 10}
`, deadPort)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testServer(t, "--config", cfg)
	tr := testClient(t, s, s.dns.Addr(), nil).Login(context.Background(), "bob@example.info", nil)
	r, _ := tr.Result(driver.StepTLS)
	if !tr.OK || !strings.HasPrefix(r.Target, "mra.sp.example:") || !strings.Contains(r.Detail, "dead.sp.example") {
		var buf bytes.Buffer
		printTrace(&buf, tr)
		t.Fatalf("want a pass through mra.sp.example after dead.sp.example refused:\n%s", buf.String())
	}
}

// The command: exit 0 on a pass, 1 on a failed login, 2 on a usage error; --json is the trace.
func TestLoginCommand(t *testing.T) {
	s := testServer(t)
	base := []string{"login", "--dns", s.dns.Addr(), "--ca", s.certs.Load().CAFile}
	var out, errb bytes.Buffer
	if code := run(append(base, "bob@example.com"), &out, &errb); code != exitOK {
		t.Fatalf("exit %d, want 0\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "passed every step") {
		t.Errorf("output lacks the verdict:\n%s", out.String())
	}
	out.Reset()
	// flags after the address work too
	if code := run([]string{"login", "carol@example.org", "--dns", s.dns.Addr(), "--ca", s.certs.Load().CAFile, "--json"}, &out, &errb); code != exitFail {
		t.Fatalf("exit %d, want 1\n%s", code, out.String())
	}
	var tr driver.Trace
	if err := json.Unmarshal(out.Bytes(), &tr); err != nil || tr.Class != driver.ClassPlatformCert {
		t.Fatalf("--json: %v, class %q\n%s", err, tr.Class, out.String())
	}
	for _, args := range [][]string{
		{"login"},
		{"login", "bob"},
		{"login", "--protocols", "https,gopher", "bob@example.com"},
		{"login", "--ca", "/nonexistent.pem", "bob@example.com"},
		{"login", "--dns", "nonsense", "bob@example.com"},
	} {
		errb.Reset()
		if code := run(args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		} else if !strings.Contains(errb.String(), "edgesim login:") {
			t.Errorf("%v: stderr %q does not say what was wrong", args, errb.String())
		}
	}
	// --protocols https leaves XMPP and SIP out.
	out.Reset()
	if code := run(append(base, "--protocols", "https", "--json", "bob@example.com"), &out, &errb); code != exitOK {
		t.Fatalf("--protocols https: exit %d", code)
	}
	tr = driver.Trace{}
	_ = json.Unmarshal(out.Bytes(), &tr)
	if _, ok := tr.Result(driver.StepXMPP); ok || len(tr.Steps) != 5 {
		t.Errorf("--protocols https ran %d steps, want srv, tls, identity, edge-domain, edge-config", len(tr.Steps))
	}
}

// A DNS server nobody here wrote (NSD), loaded with 'edgesim dns export', gives the same verdicts
// as the embedded DNS.
func TestLoginThroughNSD(t *testing.T) {
	nsd, err := exec.LookPath("nsd")
	if err != nil {
		t.Skip("nsd not installed (scripts/test.sh installs it)")
	}
	s := testServer(t)
	https, _, _ := s.addrs()
	_, httpsPort, _ := net.SplitHostPort(https)
	dir := t.TempDir()
	zones := filepath.Join(dir, "zones")
	var out, errb bytes.Buffer
	if code := run([]string{"dns", "export", "--out", zones, "--port", httpsPort}, &out, &errb); code != 0 {
		t.Fatalf("dns export: %s", errb.String())
	}
	port := freeUDPPort(t)
	conf := fmt.Sprintf("server:\n  ip-address: 127.0.0.1@%d\n  port: %d\n  username: \"\"\n  chroot: \"\"\n  zonesdir: %q\n  database: \"\"\n  pidfile: %q\n  xfrdfile: %q\n  zonelistfile: %q\n  server-count: 1\n  verbosity: 1\nremote-control:\n  control-enable: no\n",
		port, port, zones, filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "xfrd.state"), filepath.Join(dir, "zone.list"))
	entries, _ := os.ReadDir(zones)
	for _, e := range entries {
		conf += fmt.Sprintf("zone:\n  name: %q\n  zonefile: %q\n", strings.TrimSuffix(e.Name(), ".zone"), e.Name())
	}
	confPath := filepath.Join(dir, "nsd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nsd, "-d", "-c", confPath)
	var nsdLog bytes.Buffer
	cmd.Stdout, cmd.Stderr = &nsdLog, &nsdLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	nsdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	embedded := testClient(t, s, s.dns.Addr(), nil)
	viaNSD := testClient(t, s, nsdAddr, nil)
	// Wait until NSD answers (it loads the zones after binding).
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr := viaNSD.Login(context.Background(), "bob@example.com", nil)
		if tr.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login through NSD within 10 s: failed at %s (%s)\nnsd: %s", tr.Failed, tr.Class, nsdLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, user := range []string{"bob@example.com", "ivan@example.net", "carol@example.org", "frank@cn-only.example", "heidi@self-signed.example"} {
		a := embedded.Login(context.Background(), user, nil)
		b := viaNSD.Login(context.Background(), user, nil)
		if a.OK != b.OK || a.Failed != b.Failed || a.Class != b.Class {
			t.Errorf("%s: embedded DNS: ok=%v %s %s; NSD: ok=%v %s %s", user, a.OK, a.Failed, a.Class, b.OK, b.Failed, b.Class)
		}
		ra, _ := a.Result(driver.StepTLS)
		rb, _ := b.Result(driver.StepTLS)
		if ra.SNI != rb.SNI || ra.Target != rb.Target {
			t.Errorf("%s: embedded DNS led to %s (SNI %s), NSD to %s (SNI %s)", user, ra.Target, ra.SNI, rb.Target, rb.SNI)
		}
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgesim/edgesim/driver"
)

// stallProxy forwards TCP connections to backend, except that connections accepted during the
// stall window wait until it ends: a server that stops answering for a while.
type stallProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	until   time.Time
}

func newStallProxy(t *testing.T, backend string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, backend: backend}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				p.mu.Lock()
				wait := time.Until(p.until)
				p.mu.Unlock()
				if wait > 0 {
					time.Sleep(wait) // the injected delay
				}
				b, err := net.Dial("tcp", p.backend)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
	return p
}

func (p *stallProxy) stall(from time.Time, d time.Duration) {
	p.mu.Lock()
	p.until = from.Add(d)
	p.mu.Unlock()
}

// An open-model run starts rate × duration logins, and a server that stalls for a second shows
// in the latency of every login scheduled during the stall (no coordinated omission), even
// though the driver may only keep two logins in flight.
func TestLoadOpenModel(t *testing.T) {
	proxyCfg := filepath.Join(t.TempDir(), "tenants.yaml")
	// The proxy needs the backend address, the backend needs the proxy's port in its SRV record:
	// start the proxy first with a backend filled in once the server is up.
	p := newStallProxy(t, "")
	port := p.ln.Addr().(*net.TCPAddr).Port
	yaml := "provider: {edge_host: mra.sp.example}\ntenants:\n"
	for i := 1; i <= 20; i++ {
		yaml += fmt.Sprintf("  - {domain: t%d.example, srv: [{target: mra.sp.example, port: %d}]}\n", i, port)
	}
	if err := os.WriteFile(proxyCfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testServer(t, "--config", proxyCfg)
	https, _, _ := s.addrs()
	p.mu.Lock()
	p.backend = https
	p.mu.Unlock()

	out := filepath.Join(t.TempDir(), "results.json")
	p.stall(time.Now().Add(1*time.Second), time.Second)
	var stdout, stderr bytes.Buffer
	code := run([]string{"load", "--dns", s.dns.Addr(), "--ca", s.certs.Load().CAFile, "--config", proxyCfg,
		"--rate", "50", "--duration", "3s", "--steps", "srv,tls", "--max-in-flight", "2", "--progress", "off",
		"--out", out}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := driver.ReadResults(f)
	if err != nil {
		t.Fatal(err)
	}
	if res.Totals.Requested != 150 || res.Totals.Completed != 150 || res.Totals.Succeeded != 150 {
		t.Fatalf("totals %+v, want 150 requested, completed and succeeded (50/s × 3 s)", res.Totals)
	}
	var login *driver.StepStats
	for i := range res.Steps {
		if res.Steps[i].Step == driver.StepLogin {
			login = &res.Steps[i]
		}
	}
	if login == nil {
		t.Fatalf("no login latency in %+v", res.Steps)
	}
	h, err := driver.DecodeHistogram(login.Histogram)
	if err != nil {
		t.Fatal(err)
	}
	if h.TotalCount() != 150 {
		t.Fatalf("login histogram holds %d values, want 150", h.TotalCount())
	}
	// About 50 logins are scheduled during the stall; each waits for the rest of it (0 … 1 s),
	// so about 25 exceed 500 ms. A driver that measured from when it sent would see at most 2.
	slow := int64(0)
	for _, b := range h.Distribution() {
		if b.From >= 500_000 {
			slow += b.Count
		}
	}
	if slow < 15 {
		t.Errorf("%d logins over 500 ms, want about 25: the stall is hidden (coordinated omission)", slow)
	}
	if login.Quantiles.Max < 800 {
		t.Errorf("max login latency %.0f ms, want about 1000 ms (the stall)", login.Quantiles.Max)
	}
	if !strings.Contains(stdout.String(), "tls") {
		t.Errorf("summary lacks the tls step:\n%s", stdout.String())
	}
}

// readResults reads a results file written by --out.
func readResults(t *testing.T, path string) *driver.Results {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := driver.ReadResults(f)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func stepStats(res *driver.Results, s driver.Step) driver.StepStats {
	for _, st := range res.Steps {
		if st.Step == s {
			return st
		}
	}
	return driver.StepStats{}
}

// With --resume each device resumes its TLS session after its first login; without, none does.
func TestLoadResume(t *testing.T) {
	s := testServer(t)
	users := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(users, []byte("bob@example.com\nalice@example.com\n# a comment\nivan@example.net\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, resume := range []bool{true, false} {
		out := filepath.Join(t.TempDir(), "results.json")
		args := []string{"load", "--dns", s.dns.Addr(), "--ca", s.certs.Load().CAFile, "--users-file", users,
			"--concurrency", "1", "--count", "30", "--progress", "off", "--out", out}
		if resume {
			args = append(args, "--resume")
		}
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		res := readResults(t, out)
		if res.Totals.Succeeded != 30 {
			t.Fatalf("resume=%v: totals %+v, want 30 succeeded\n%s", resume, res.Totals, stdout.String())
		}
		tls, xmpp, sip := stepStats(res, driver.StepTLS), stepStats(res, driver.StepXMPP), stepStats(res, driver.StepSIP)
		// The first HTTPS handshake of each of the 3 devices is full; XMPP and SIP use the same
		// SNI, and the edge shares its ticket keys across listeners, so they resume from the
		// HTTPS session even in a device's first login.
		if resume && (tls.Resumed != 27 || xmpp.Resumed < 27 || sip.Resumed < 27) {
			t.Errorf("--resume: tls %d, xmpp %d, sip %d of 30 handshakes resumed, want 27 for tls (3 devices, first login full) and at least 27 for xmpp and sip", tls.Resumed, xmpp.Resumed, sip.Resumed)
		}
		if !resume && tls.Resumed+xmpp.Resumed+sip.Resumed != 0 {
			t.Errorf("without --resume %d handshakes resumed", tls.Resumed+xmpp.Resumed+sip.Resumed)
		}
		if resume && !strings.Contains(stdout.String(), "resumed a session") {
			t.Errorf("the summary does not say how many sessions resumed:\n%s", stdout.String())
		}
	}
	// Pure handshake load: the connection ends right after the handshake, and TLS 1.3 session
	// tickets come after it; a resuming device must still read them.
	out := filepath.Join(t.TempDir(), "results.json")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"load", "--dns", s.dns.Addr(), "--ca", s.certs.Load().CAFile, "--users-file", users,
		"--concurrency", "1", "--count", "30", "--steps", "srv,tls", "--resume", "--progress", "off", "--out", out}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if tls := stepStats(readResults(t, out), driver.StepTLS); tls.Resumed != 27 {
		t.Errorf("--steps srv,tls --resume: %d of %d handshakes resumed, want 27", tls.Resumed, tls.Count)
	}
}

// Ctrl-C (SIGINT) stops a long run early; the results are still written and consistent, and the
// driver's metrics were served while it ran.
func TestLoadInterrupt(t *testing.T) {
	s := testServer(t)
	out := filepath.Join(t.TempDir(), "results.json")
	metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeUDPPort(t)))
	cmd := exec.Command(os.Args[0], "load", "--dns", s.dns.Addr(), "--ca", s.certs.Load().CAFile,
		"--config", "../../testdata/tenants.yaml", "--rate", "40", "--duration", "1m", "--progress", "on",
		"--metrics-addr", metrics, "--out", out)
	// testdata/tenants.yaml names other tenants than the server's: most logins fail at srv
	// (REFUSED), which is what a run against the wrong DNS looks like, and fine here.
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var body string
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := http.Get("http://" + metrics + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if v := metricSum(body, "edgesim_driver_logins_total"); v >= 80 { // 2 s: live lines printed
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no driver metrics with 80 logins within 20 s\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling a live counter
	}
	for _, name := range []string{"edgesim_driver_logins_started_total", "edgesim_driver_step_duration_seconds_bucket",
		"edgesim_driver_errors_total", "edgesim_driver_in_flight", "edgesim_driver_target_rate"} {
		if !strings.Contains(body, name) {
			t.Errorf("driver metrics lack %s", name)
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15 s after Ctrl-C\n%s", stderr.String())
	}
	res := readResults(t, out)
	tot := res.Totals
	if tot.Requested < 20 || tot.Requested > 40*30 || tot.Completed != tot.Requested || tot.Succeeded+tot.Failed != tot.Completed {
		t.Errorf("totals after Ctrl-C: %+v", tot)
	}
	if !strings.Contains(stderr.String(), "in flight") || !strings.Contains(stdout.String(), "logins") {
		t.Errorf("want the live line on stderr and the summary on stdout\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
}

// metricSum adds every sample of a metric family in a text exposition.
func metricSum(body, name string) float64 {
	sum := 0.0
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := strings.TrimPrefix(line, name)
		if rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// Three driver processes, each a shard of one run, against one simulator: the merged report's
// totals and histogram counts are the sums of the shards', and no user logged in twice.
func TestLoadShards(t *testing.T) {
	s := testServer(t)
	dir := t.TempDir()
	users := filepath.Join(dir, "users.txt")
	var list []string
	for _, d := range []string{"example.com", "example.net"} {
		for _, u := range []string{"bob", "alice", "ivan"} {
			list = append(list, u+"@"+d)
		}
	}
	// Users the built-in tenants know: bob and alice at example.com, ivan at example.net; the
	// others are refused (unauthorized), which makes the error counts non-trivial.
	if err := os.WriteFile(users, []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const shards = 3
	type shardRun struct {
		cmd    *exec.Cmd
		out    string
		logins string
		stderr bytes.Buffer
	}
	runs := make([]*shardRun, shards)
	for i := range runs {
		r := &shardRun{out: filepath.Join(dir, fmt.Sprintf("shard-%d.json", i)), logins: filepath.Join(dir, fmt.Sprintf("logins-%d.jsonl", i))}
		r.cmd = exec.Command(os.Args[0], "load", "--dns", s.dns.Addr(), "--ca", s.certs.Load().CAFile, "--users-file", users,
			"--rate", "60", "--count", "6", "--shard", fmt.Sprintf("%d/%d", i, shards), "--progress", "off",
			"--out", r.out, "--logins-out", r.logins)
		r.cmd.Env = append(os.Environ(), benchChildEnv+"=1")
		r.cmd.Stderr = &r.stderr
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		runs[i] = r
	}
	var sum driver.Totals
	var histSum int64
	seen := map[string]int{}
	files := []string{"report"}
	for i, r := range runs {
		if err := r.cmd.Wait(); err != nil {
			t.Fatalf("shard %d: %v\n%s", i, err, r.stderr.String())
		}
		res := readResults(t, r.out)
		if res.Settings.Shard != fmt.Sprintf("%d/%d", i, shards) || res.Totals.Requested != 2 {
			t.Errorf("shard %d: settings shard %q, %d logins, want 2", i, res.Settings.Shard, res.Totals.Requested)
		}
		sum.Requested += res.Totals.Requested
		sum.Completed += res.Totals.Completed
		sum.Succeeded += res.Totals.Succeeded
		sum.Failed += res.Totals.Failed
		h, err := driver.DecodeHistogram(stepStats(res, driver.StepLogin).Histogram)
		if err != nil {
			t.Fatal(err)
		}
		histSum += h.TotalCount()
		b, err := os.ReadFile(r.logins)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var l struct{ User string }
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("shard %d: --logins-out line %q: %v", i, line, err)
			}
			seen[l.User]++
		}
		files = append(files, r.out)
	}
	if len(seen) != len(list) {
		t.Errorf("%d distinct users logged in, want all %d: %v", len(seen), len(list), seen)
	}
	for u, n := range seen {
		if n != 1 {
			t.Errorf("%s logged in %d times across the shards", u, n)
		}
	}
	merged := filepath.Join(dir, "merged.json")
	var stdout, stderr bytes.Buffer
	if code := run(append(files, "--out", merged), &stdout, &stderr); code != exitOK {
		t.Fatalf("report: exit %d\n%s", code, stderr.String())
	}
	m := readResults(t, merged)
	if m.Totals != sum || m.Shards != shards || m.Settings.Rate != 60 {
		t.Errorf("merged totals %+v (shards %d, rate %g), want %+v from %d shards at 60/s", m.Totals, m.Shards, m.Settings.Rate, sum, shards)
	}
	h, _ := driver.DecodeHistogram(stepStats(m, driver.StepLogin).Histogram)
	if h.TotalCount() != histSum || histSum != 6 {
		t.Errorf("merged login histogram holds %d values, the shards %d, want 6", h.TotalCount(), histSum)
	}
	if m.Totals.Failed != 3 || m.Errors[driver.ClassUnauthorized] != 3 {
		t.Errorf("merged: %d failed, errors %v; want the 3 unknown users refused", m.Totals.Failed, m.Errors)
	}
}

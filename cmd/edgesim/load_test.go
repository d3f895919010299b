package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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

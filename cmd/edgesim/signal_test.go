package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeSIGTERM runs 'edgesim serve' as a process of its own (the test binary again, see
// TestMain), holds a connection that never sends a ClientHello, and stops the server with
// SIGTERM: it must drain for --drain-timeout, close what is left and exit 0.
func TestServeSIGTERM(t *testing.T) {
	cmd := exec.Command(os.Args[0], "serve", "--data", t.TempDir(), "--key-type", "ecdsa-p256",
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--drain-timeout", "300ms")
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	var https, metrics string
	sc := bufio.NewScanner(stdout)
	httpsRE := regexp.MustCompile(`^\s+https\s+(\S+)`)
	metricsRE := regexp.MustCompile(`^\s+metrics\s+(\S+)`)
	for sc.Scan() {
		if m := httpsRE.FindStringSubmatch(sc.Text()); m != nil {
			https = m[1]
		}
		if m := metricsRE.FindStringSubmatch(sc.Text()); m != nil {
			metrics = m[1]
		}
		if strings.Contains(sc.Text(), "press Ctrl-C to stop") {
			break
		}
	}
	if https == "" {
		t.Fatalf("no banner; stderr:\n%s", stderr.String())
	}
	go func() {
		for sc.Scan() {
		}
		exited <- cmd.Wait()
	}()
	silent, err := net.Dial("tcp", https)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// The connection must be accepted before the signal, or there is nothing to drain.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if strings.Contains(scrape(t, metrics), `edgesim_proxy_open_connections{listener="https"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the silent connection was never counted as open")
		}
		time.Sleep(10 * time.Millisecond) // polling a live counter, not waiting for readiness
	}
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after SIGTERM\nstderr:\n%s", stderr.String())
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("shutdown took %v with a 300ms drain timeout", took)
	}
	if !strings.Contains(stderr.String(), "drain timeout reached") || !strings.Contains(stderr.String(), "stopped") {
		t.Fatalf("want the drain timeout and 'stopped' in the log:\n%s", stderr.String())
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package main

// Starting and stopping the servers BenchmarkHandshake and BenchmarkHandshakeBareGo measure: this
// test binary run again in a child mode (main_test.go), pinned to serverCPU.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchChild is a server process started by startBenchChild.
type benchChild struct {
	name   string // for messages: "edgesim", "bare Go server"
	pid    int
	lines  chan string   // its stdout, line by line; lines nobody waits for are dropped
	exited chan struct{} // closed when it has exited
	stderr lockedBuffer
}

// startBenchChild runs this test binary with EDGESIM_BENCH_CHILD=mode and args, on serverCPU
// with GOMAXPROCS=1, plus env. EDGESIM_CPUPROFILE and EDGESIM_MEMPROFILE are passed on with
// "-<tag>" before the extension. The child is stopped (SIGTERM, then SIGKILL after 30 s) when b
// ends, and also when this process dies.
func startBenchChild(b *testing.B, name, mode, tag string, args, env []string) *benchChild {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	env = append(append(os.Environ(), benchChildEnv+"="+mode, "GOMAXPROCS=1"), env...)
	withTag := func(p string) string {
		ext := filepath.Ext(p)
		return fmt.Sprintf("%s-%s%s", strings.TrimSuffix(p, ext), tag, ext)
	}
	if p := os.Getenv(envCPUProfile); p != "" {
		env = append(env, benchChildCPUProfileEnv+"="+withTag(p))
	}
	memProfile := os.Getenv(envMemProfile)
	if memProfile != "" {
		env = append(env, benchChildMemProfileEnv+"="+withTag(memProfile))
	}

	cmd := exec.Command(exe, args...)
	if pinning() {
		pinClient(b)
		if ts, err := exec.LookPath("taskset"); err == nil {
			cmd = exec.Command(ts, append([]string{"-c", strconv.Itoa(serverCPU), exe}, args...)...)
		} else {
			env = append(env, fmt.Sprintf("%s=%d", benchChildCPUEnv, serverCPU))
		}
	}
	cmd.Env = env
	// If the benchmark dies, the server is told to stop rather than left running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	c := &benchChild{name: name, lines: make(chan string, 64), exited: make(chan struct{})}
	cmd.Stderr = &c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// taskset executes the server in its own place, so cmd.Process.Pid is the server.
	c.pid = cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			default: // nobody is waiting for it
			}
		}
		close(c.lines)
	}()
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	b.Cleanup(func() {
		if memProfile != "" {
			c.awaitLine(b, "heap profile", 30*time.Second, benchHeapWritten, func() { _ = syscall.Kill(c.pid, syscall.SIGUSR1) })
		}
		_ = syscall.Kill(c.pid, syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(c.pid, syscall.SIGKILL)
			<-c.exited
		}
	})
	return c
}

// banner waits for the child's banner and returns the second field of each line whose first
// field is one of keys ("https 127.0.0.1:8443 …" gives "https": "127.0.0.1:8443"), once all are
// there. Loading 100,000 tenants' certificates from scratch on a slow machine takes minutes, so it
// waits up to 10.
func (c *benchChild) banner(b *testing.B, keys ...string) map[string]string {
	b.Helper()
	found := make(map[string]string, len(keys))
	deadline := time.NewTimer(10 * time.Minute)
	defer deadline.Stop()
	for len(found) < len(keys) {
		select {
		case line, ok := <-c.lines:
			if !ok {
				b.Fatalf("%s exited before its banner; stderr:\n%s", c.name, c.stderr.String())
			}
			if f := strings.Fields(line); len(f) >= 2 && slices.Contains(keys, f[0]) {
				found[f[0]] = f[1]
			}
		case <-deadline.C:
			b.Fatalf("no banner from %s after 10 minutes; stderr:\n%s", c.name, c.stderr.String())
		}
	}
	return found
}

// awaitLine sends a request (do) and waits for a line of output containing want, for at most d.
func (c *benchChild) awaitLine(b *testing.B, what string, d time.Duration, want string, do func()) {
	do()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				b.Errorf("%s: %s closed its output", what, c.name)
				return
			}
			if strings.Contains(line, want) {
				return
			}
		case <-c.exited:
			b.Errorf("%s: %s exited", what, c.name)
			return
		case <-timer.C:
			b.Errorf("%s: nothing from %s after %v", what, c.name, d)
			return
		}
	}
}

// lockedBuffer is a bytes.Buffer safe to write from the process's output copier and read here.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 1<<20 { // keep the start; it says why the server did not come up
		return len(p), nil
	}
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

package main

// Full TLS handshakes through the real HTTPS listener over loopback, with the server in a process
// of its own so that its CPU time per handshake can be read from /proc: the figure the edge's
// capacity is planned with, comparable to nginx's (bench/handshake.sh runs both, see
// bench/README.md).
//
//	go test ./cmd/edgesim -run '^$' -bench '^BenchmarkHandshake$' -benchtime 3000x
//	go test ./cmd/edgesim -run '^$' -bench '^BenchmarkHandshake$/tenants=1000' -benchtime 3000x -short

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgesim/edgesim/tenant"
)

// Environment of the handshake benchmarks; all optional. bench/handshake.sh sets the peer ones.
const (
	envBenchData   = "EDGESIM_BENCH_DATA"   // data dir prefix; "-<tenants>" is appended (default $TMPDIR/edgesim-bench-data-ecdsa)
	envBenchConc   = "EDGESIM_BENCH_CONC"   // client goroutines (default 16)
	envBenchClose  = "EDGESIM_BENCH_CLOSE"  // after a full handshake: "abrupt" (default: Close at once) or "graceful"
	envBenchNoPin  = "EDGESIM_BENCH_NOPIN"  // "1": no CPU pinning
	envServerEnv   = "EDGESIM_SERVER_ENV"   // extra environment for the edgesim process, e.g. "GOGC=50"
	envCPUProfile  = "EDGESIM_CPUPROFILE"   // edgesim CPU profile; "-<tenants>" goes before the extension
	envMemProfile  = "EDGESIM_MEMPROFILE"   // edgesim heap profile, written before the server stops
	envPeerAddr    = "EDGESIM_PEER_ADDR"    // BenchmarkHandshakePeer: host:port of another TLS server
	envPeerPID     = "EDGESIM_PEER_PID"     // its process; CPU and memory are summed over it and its descendants
	envPeerCA      = "EDGESIM_PEER_CA"      // the CA file its certificates chain to
	envPeerTenants = "EDGESIM_PEER_TENANTS" // tenants it serves as mra.tenant-K.example (default 1000)
	envNginxExport = "EDGESIM_NGINX_EXPORT" // TestExportForNginx: directory to write
	envNginxN      = "EDGESIM_NGINX_TENANTS"
)

// The server runs on serverCPU and the client goroutines on clientCPU, so neither steals the
// other's core and the server's CPU time is its own work only.
const (
	serverCPU = 0
	clientCPU = 1
	clkTck    = 100 // USER_HZ: the unit of utime and stime in /proc/<pid>/stat on Linux
)

// hsVariant is one kind of handshake the client makes.
type hsVariant struct {
	name    string
	version uint16
	resume  bool // offer a session ticket from an earlier handshake with the same name
}

var (
	hsTLS13   = hsVariant{"tls=1.3", tls.VersionTLS13, false}
	hsTLS12   = hsVariant{"tls=1.2", tls.VersionTLS12, false}
	hsResumed = hsVariant{"tls=1.3-resumed", tls.VersionTLS13, true}
)

// BenchmarkHandshake measures edgesim's CPU time per full handshake (ECDSA P-256, X25519) at
// 1,000 and 100,000 tenants (the latter not with -short), with TLS 1.3, TLS 1.2 and resumed
// TLS 1.3 at 1,000. Metrics: server-µs/handshake (the server process's user+system CPU over b.N
// handshakes), server-cores (how busy its core was; well under 1 means the client could not keep
// up), server-RSS-MB and server-PSS-MB after the run, server-heap-MB (Go heap in use) and
// server-GCs (collections during the measured handshakes). ns/op, B/op and allocs/op are the
// client's.
func BenchmarkHandshake(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			if n > 1000 && testing.Short() {
				b.Skip("100,000 tenants take seconds to load (about 2 s; 7 s to issue the first time on 2 cores); not with -short")
			}
			target := startBenchServer(b, n)
			variants := []hsVariant{hsTLS13}
			if n == 1000 {
				variants = append(variants, hsTLS12, hsResumed)
			}
			for _, v := range variants {
				b.Run(v.name, func(b *testing.B) { benchHandshakes(b, target, v) })
			}
		})
	}
}

// BenchmarkHandshakePeer runs BenchmarkHandshake's client against another server, such as the
// nginx bench/handshake.sh starts with the same certificates; it skips unless EDGESIM_PEER_ADDR,
// EDGESIM_PEER_PID and EDGESIM_PEER_CA are set.
func BenchmarkHandshakePeer(b *testing.B) {
	addr, pidText, ca := os.Getenv(envPeerAddr), os.Getenv(envPeerPID), os.Getenv(envPeerCA)
	if addr == "" || pidText == "" || ca == "" {
		b.Skipf("set %s, %s and %s to benchmark another server (bench/handshake.sh does)", envPeerAddr, envPeerPID, envPeerCA)
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		b.Fatalf("%s=%q: %v", envPeerPID, pidText, err)
	}
	n := envInt(b, envPeerTenants, 1000)
	pinClient(b)
	target := &hsTarget{addr: addr, tenants: n, roots: loadRoots(b, ca), pid: pid}
	b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
		for _, v := range []hsVariant{hsTLS13, hsTLS12, hsResumed} {
			b.Run(v.name, func(b *testing.B) { benchHandshakes(b, target, v) })
		}
	})
}

// hsTarget is a server under measurement.
type hsTarget struct {
	addr    string
	tenants int // names mra.tenant-1.example … mra.tenant-<tenants>.example
	roots   *x509.CertPool
	pid     int    // the server's process; its descendants are counted too
	metrics string // edgesim's /metrics URL; "" for a peer
}

func benchHandshakes(b *testing.B, t *hsTarget, v hsVariant) {
	b.ReportAllocs()
	c := newHSClient(b, t, v)
	// Warm up outside the measurement: the server's goroutine stacks, heap and key caches; for
	// resumption, a ticket for every name.
	warm := 200
	if v.resume {
		warm = t.tenants
	}
	if err := c.run(warm, func(i int, _ *rand.Rand) int { return i%t.tenants + 1 }); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	before, err := scrapeEdgeMetrics(t.metrics)
	if err != nil {
		b.Fatal(err)
	}
	cpu0, err := procTreeCPU(t.pid)
	if err != nil {
		b.Fatal(err)
	}
	c.resumed.Store(0)

	b.ResetTimer()
	start := time.Now()
	err = c.run(b.N, func(_ int, r *rand.Rand) int { return r.IntN(t.tenants) + 1 })
	wall := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}

	cpu1, err := procTreeCPU(t.pid)
	if err != nil {
		b.Fatal(err)
	}
	cpu := (cpu1 - cpu0).Seconds()
	b.ReportMetric(cpu*1e6/float64(b.N), "server-µs/handshake")
	b.ReportMetric(cpu/wall.Seconds(), "server-cores")
	rss, pss, err := procTreeMemory(t.pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rss)/(1<<20), "server-RSS-MB")
	b.ReportMetric(float64(pss)/(1<<20), "server-PSS-MB")
	if v.resume {
		b.ReportMetric(100*float64(c.resumed.Load())/float64(b.N), "resumed-%")
	}
	if t.metrics != "" {
		after, err := scrapeEdgeMetrics(t.metrics)
		if err != nil {
			b.Fatal(err)
		}
		errs := after.sum("edgesim_tls_handshakes_total", `listener="https"`, `result="error"`) -
			before.sum("edgesim_tls_handshakes_total", `listener="https"`, `result="error"`)
		errs += after.sum("edgesim_tls_handshakes_total", `listener="https"`, `result="timeout"`) -
			before.sum("edgesim_tls_handshakes_total", `listener="https"`, `result="timeout"`)
		b.ReportMetric(errs, "server-failed-handshakes")
		b.ReportMetric(after.sum("go_gc_duration_seconds_count")-before.sum("go_gc_duration_seconds_count"), "server-GCs")
		b.ReportMetric(after.sum("go_memstats_heap_inuse_bytes")/(1<<20), "server-heap-MB")
	}
}

// hsClient makes handshakes with b.N spread over a fixed number of goroutines.
type hsClient struct {
	t        *hsTarget
	base     *tls.Config
	cache    tls.ClientSessionCache // resumption only
	version  uint16
	resume   bool
	graceful bool
	conc     int
	resumed  atomic.Int64
}

func newHSClient(b *testing.B, t *hsTarget, v hsVariant) *hsClient {
	base := &tls.Config{
		RootCAs:          t.roots,
		CurvePreferences: []tls.CurveID{tls.X25519},
		MinVersion:       v.version,
		MaxVersion:       v.version,
	}
	if v.version == tls.VersionTLS12 {
		base.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		// In TLS 1.2 the supported groups also name the curves of the ECDSA certificates the
		// client accepts (RFC 8422 section 5.1), and OpenSSL holds clients to it: a P-256
		// certificate needs P-256 listed. The key exchange is still X25519, checked below.
		base.CurvePreferences = append(base.CurvePreferences, tls.CurveP256)
	}
	c := &hsClient{t: t, base: base, version: v.version, resume: v.resume, conc: envInt(b, envBenchConc, 16)}
	switch mode := os.Getenv(envBenchClose); mode {
	case "", "abrupt":
	case "graceful":
		c.graceful = true
	default:
		b.Fatalf("%s=%q: want graceful or abrupt", envBenchClose, mode)
	}
	if v.resume {
		c.cache = tls.NewLRUClientSessionCache(t.tenants + 1)
		c.graceful = true // the TLS 1.3 ticket arrives after the handshake and must be read
	}
	return c
}

// run makes n handshakes on c.conc goroutines; tenant(i, rng) picks the tenant K of the i-th.
// It returns an error describing the failures, if any.
func (c *hsClient) run(n int, tenant func(i int, r *rand.Rand) int) error {
	var next, failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for w := range c.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), uint64(n)))
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := c.one(tenant(int(i), r)); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d handshakes failed; first: %w", f, n, firstErr)
	}
	return nil
}

// one connects, handshakes as mra.tenant-<k>.example with a fresh tls.Config and closes. The
// abrupt close (close_notify and at once close(2)) leaves the TLS 1.3 session tickets unread, so
// the kernel answers them with a reset; the graceful one waits for the server to close first.
func (c *hsClient) one(k int) error {
	raw, err := net.DialTimeout("tcp", c.t.addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	if err := raw.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	cfg := c.base.Clone()
	cfg.ServerName = "mra.tenant-" + strconv.Itoa(k) + ".example"
	cfg.ClientSessionCache = c.cache
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("%s: %w", cfg.ServerName, err)
	}
	st := tc.ConnectionState()
	if st.Version != c.version || st.CurveID != tls.X25519 && !st.DidResume {
		return fmt.Errorf("%s: negotiated version %#04x and group %v, want %#04x and X25519", cfg.ServerName, st.Version, st.CurveID, c.version)
	}
	if st.DidResume {
		c.resumed.Add(1)
	}
	if !c.graceful {
		return tc.Close()
	}
	// close_notify, then read until the server closes: the TLS 1.3 session tickets are
	// processed on the way, and neither side's kernel has unread data to answer with a reset.
	if err := tc.CloseWrite(); err != nil {
		return fmt.Errorf("%s: close_notify: %w", cfg.ServerName, err)
	}
	_, _ = io.Copy(io.Discard, tc) // a reset after our close_notify is the server's business
	return nil
}

// startBenchServer starts this test binary as 'edgesim serve --tenants n' on serverCPU, waits for
// its banner and stops it when b ends.
func startBenchServer(b *testing.B, n int) *hsTarget {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	data := benchDataDir(n)
	args := []string{"serve", "--tenants", strconv.Itoa(n), "--key-type", string(tenant.KeyECDSAP256), "--data", data,
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}
	env := append(os.Environ(), benchChildEnv+"=1", "GOMAXPROCS=1")
	env = append(env, strings.Fields(os.Getenv(envServerEnv))...)
	if p := os.Getenv(envCPUProfile); p != "" {
		ext := filepath.Ext(p)
		env = append(env, fmt.Sprintf("%s=%s-%d%s", benchChildCPUProfileEnv, strings.TrimSuffix(p, ext), n, ext))
	}
	memProfile := os.Getenv(envMemProfile)
	if memProfile != "" {
		ext := filepath.Ext(memProfile)
		env = append(env, fmt.Sprintf("%s=%s-%d%s", benchChildMemProfileEnv, strings.TrimSuffix(memProfile, ext), n, ext))
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
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// taskset executes the server in its own place, so cmd.Process.Pid is the server.
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody is waiting for it
			}
		}
		close(lines)
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	b.Cleanup(func() {
		if memProfile != "" {
			awaitLine(b, "heap profile", 30*time.Second, exited, lines, benchHeapWritten, func() { _ = syscall.Kill(pid, syscall.SIGUSR1) })
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
	})

	t := &hsTarget{tenants: n, pid: pid}
	deadline := time.NewTimer(10 * time.Minute) // 100k tenants issued from scratch on a slow machine
	defer deadline.Stop()
	for t.addr == "" || t.metrics == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				b.Fatalf("edgesim exited before its banner; stderr:\n%s", stderr.String())
			}
			f := strings.Fields(line)
			switch {
			case len(f) >= 2 && f[0] == "https":
				t.addr = f[1]
			case len(f) >= 2 && f[0] == "metrics":
				t.metrics = f[1]
			}
		case <-deadline.C:
			b.Fatalf("no banner from edgesim after 10 minutes; stderr:\n%s", stderr.String())
		}
	}
	t.roots = loadRoots(b, filepath.Join(data, tenant.CAFileName))
	return t
}

// awaitLine sends a request (do) and waits for a line on lines containing want, for at most d.
func awaitLine(b *testing.B, what string, d time.Duration, exited <-chan struct{}, lines <-chan string, want string, do func()) {
	do()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				b.Errorf("%s: edgesim closed its output", what)
				return
			}
			if strings.Contains(line, want) {
				return
			}
		case <-exited:
			b.Errorf("%s: edgesim exited", what)
			return
		case <-timer.C:
			b.Errorf("%s: nothing after %v", what, d)
			return
		}
	}
}

// benchDataDir is the data directory kept between runs for n tenants. Each tenant count has its
// own: Provision rewrites the bundles for the tenants it is given, so sharing one directory
// between 1,000 and 100,000 tenants would reissue 99,000 certificates on every switch.
func benchDataDir(n int) string {
	prefix := os.Getenv(envBenchData)
	if prefix == "" {
		prefix = filepath.Join(os.TempDir(), "edgesim-bench-data-ecdsa")
	}
	return fmt.Sprintf("%s-%d", prefix, n)
}

func loadRoots(b testing.TB, caFile string) *x509.CertPool {
	b.Helper()
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		b.Fatalf("%s holds no certificate", caFile)
	}
	return pool
}

func envInt(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		tb.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// pinning reports whether server and client go on separate cores: not when asked not to, and
// not on a one-CPU machine.
func pinning() bool {
	if os.Getenv(envBenchNoPin) == "1" {
		return false
	}
	online, err := os.ReadFile("/sys/devices/system/cpu/online")
	return err == nil && strings.TrimSpace(string(online)) != "0"
}

var pinOnce sync.Once

// pinClient moves this process (the client) to clientCPU.
func pinClient(b *testing.B) {
	if !pinning() {
		return
	}
	pinOnce.Do(func() {
		if err := pinAllThreads(clientCPU); err != nil {
			b.Logf("client not pinned to CPU %d: %v", clientCPU, err)
		}
	})
}

// pinAllThreads sets the CPU affinity of every thread of this process to cpu. Threads made
// later inherit it from the thread that makes them.
func pinAllThreads(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 2 { // again, for threads started during the first pass
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
	}
	return nil
}

// procTree returns pid and its descendants.
func procTree(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStatFields(p)
		if err != nil {
			continue // gone
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// procStatFields returns the fields of /proc/<pid>/stat after the command name: [0] is the
// state (field 3 in proc(5)), [1] the parent, [11] utime, [12] stime.
func procStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// procTreeCPU returns the user+system CPU time of pid and its descendants, in clock ticks of
// 10 ms: measure enough handshakes that a tick does not matter.
func procTreeCPU(pid int) (time.Duration, error) {
	tree, err := procTree(pid)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for i, p := range tree {
		f, err := procStatFields(p)
		if err != nil {
			if i == 0 {
				return 0, fmt.Errorf("server process %d: %w", pid, err)
			}
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / clkTck, nil
}

// procTreeMemory returns the resident (VmRSS) and proportional (Pss: shared pages split between
// the processes sharing them) set sizes of pid and its descendants, in bytes.
func procTreeMemory(pid int) (rss, pss int64, err error) {
	tree, err := procTree(pid)
	if err != nil {
		return 0, 0, err
	}
	for i, p := range tree {
		r, err := procKB(fmt.Sprintf("/proc/%d/status", p), "VmRSS:")
		if err != nil {
			if i == 0 {
				return 0, 0, err
			}
			continue
		}
		s, _ := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss:")
		rss += r << 10
		pss += s << 10
	}
	return rss, pss, nil
}

// procKB reads a "Key:   1234 kB" line from a /proc file.
func procKB(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}

// edgeMetrics is a scrape of edgesim's /metrics: series (name and labels) to value.
type edgeMetrics map[string]float64

// scrapeEdgeMetrics reads url; an empty url gives no metrics.
func scrapeEdgeMetrics(url string) (edgeMetrics, error) {
	m := edgeMetrics{}
	if url == "" {
		return m, nil
	}
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// sum adds the series of metric name whose labels contain every one of labels.
func (m edgeMetrics) sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		rest, ok := strings.CutPrefix(series, name)
		if !ok || rest != "" && rest[0] != '{' {
			continue
		}
		if !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(rest, l) }) {
			total += v
		}
	}
	return total
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

// TestExportForNginx writes the certificates edgesim serves for EDGESIM_NGINX_TENANTS tenants
// (default 1000; from the same data directory as BenchmarkHandshake) as files nginx loads, and an
// nginx.conf serving them on a free loopback port, into EDGESIM_NGINX_EXPORT:
//
//	nginx.conf  addr  ca.pem  certs/<host>.pem (leaf and CA)  keys/key-<i>.pem (0600)
//
// It skips unless EDGESIM_NGINX_EXPORT is set; bench/handshake.sh sets it.
func TestExportForNginx(t *testing.T) {
	out := os.Getenv(envNginxExport)
	if out == "" {
		t.Skipf("set %s=DIR to write certificates and an nginx.conf for bench/handshake.sh", envNginxExport)
	}
	n := envInt(t, envNginxN, 1000)
	out, err := filepath.Abs(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{out, filepath.Join(out, "certs"), filepath.Join(out, "keys"), filepath.Join(out, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := tenant.Synthetic(n, 1)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[crypto.PrivateKey]string{} // the pool's keys are shared objects
	type site struct{ host, cert, key string }
	var sites []site
	var writeErr error
	write := func(host string, c *tls.Certificate) (site, error) {
		keyFile, ok := keys[c.PrivateKey]
		if !ok {
			der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
			if err != nil {
				return site{}, err
			}
			keyFile = filepath.Join(out, "keys", fmt.Sprintf("key-%d.pem", len(keys)))
			if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				return site{}, err
			}
			keys[c.PrivateKey] = keyFile
		}
		var chain bytes.Buffer
		for _, der := range c.Certificate {
			_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		certFile := filepath.Join(out, "certs", host+".pem")
		return site{host, certFile, keyFile}, os.WriteFile(certFile, chain.Bytes(), 0o600)
	}
	res, err := tenant.Provision(dir, tenant.Options{Dir: benchDataDir(n), KeyType: tenant.KeyECDSAP256},
		func(host string, c *tls.Certificate) {
			s, err := write(host, c)
			if err != nil && writeErr == nil {
				writeErr = err
			}
			sites = append(sites, s)
		})
	if err != nil {
		t.Fatal(err)
	}
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	platform, err := write(dir.Provider().EdgeHost, res.Platform)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(sites, func(a, b site) int { return strings.Compare(a.host, b.host) })
	ca, err := os.ReadFile(res.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port, for nginx to take right after
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var conf bytes.Buffer
	fmt.Fprintf(&conf, "# written by TestExportForNginx for bench/handshake.sh: %d tenants\n", n)
	if os.Geteuid() == 0 {
		conf.WriteString("user root;\n") // else the workers would run as nobody
	}
	fmt.Fprintf(&conf, `worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    server_names_hash_max_size 262144;
    server_names_hash_bucket_size 128;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;
    server {
        listen %[2]s ssl default_server;
        server_name %[3]s;
        ssl_certificate %[4]s;
        ssl_certificate_key %[5]s;
        return 204;
    }
`, out, addr, platform.host, platform.cert, platform.key)
	for _, s := range sites {
		fmt.Fprintf(&conf, "    server { listen %s ssl; server_name %s; ssl_certificate %s; ssl_certificate_key %s; return 204; }\n",
			addr, s.host, s.cert, s.key)
	}
	conf.WriteString("}\n")
	if err := os.WriteFile(filepath.Join(out, "nginx.conf"), conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "addr"), []byte(addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tenants, %d keys, nginx on %s: %s", len(sites), len(keys), addr, filepath.Join(out, "nginx.conf"))
}

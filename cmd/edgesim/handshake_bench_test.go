package main

// Full TLS handshakes through the real HTTPS listener over loopback, with the server in a process
// of its own so that its CPU time per handshake can be read from /proc: the figure the edge's
// capacity is planned with, comparable to nginx's and to a bare Go TLS server's
// (bench/handshake.sh runs all three, see bench/README.md).
//
//	go test ./cmd/edgesim -run '^$' -bench '^BenchmarkHandshake$' -benchtime 3000x
//	go test ./cmd/edgesim -run '^$' -bench '^BenchmarkHandshake$/tenants=1000' -benchtime 3000x -short
//	go test ./cmd/edgesim -run '^$' -bench '^BenchmarkHandshakeBareGo$' -benchtime 3000x
//
// The parts: this file (the benchmark loop and the edgesim server), handshake_client_test.go (the
// client), handshake_proc_test.go (pinning, CPU and memory from /proc), handshake_child_test.go
// (the server processes), handshake_nginx_test.go (nginx's certificates and BenchmarkHandshakePeer),
// handshake_barego_test.go (the bare Go server).

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgesim/edgesim/tenant"
)

// Environment of the handshake benchmarks; all optional. bench/handshake.sh sets the peer ones.
const (
	envBenchData   = "EDGESIM_BENCH_DATA"   // data dir prefix; "-<tenants>" is appended (default $TMPDIR/edgesim-bench-data-ecdsa)
	envBenchConc   = "EDGESIM_BENCH_CONC"   // client goroutines (default 16)
	envBenchClose  = "EDGESIM_BENCH_CLOSE"  // after a full handshake: "abrupt" (default: Close at once) or "graceful"
	envBenchNoPin  = "EDGESIM_BENCH_NOPIN"  // "1": no CPU pinning
	envServerEnv   = "EDGESIM_SERVER_ENV"   // extra environment for the edgesim process, e.g. "GOGC=50"
	envCPUProfile  = "EDGESIM_CPUPROFILE"   // server CPU profile; "-<tenants>" (edgesim) or "-barego-1000" goes before the extension
	envMemProfile  = "EDGESIM_MEMPROFILE"   // server heap profile, written before the server stops; named the same way
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

// hsTarget is a server under measurement.
type hsTarget struct {
	addr    string
	tenants int // names mra.tenant-1.example … mra.tenant-<tenants>.example
	roots   *x509.CertPool
	pid     int    // the server's process; its descendants are counted too
	metrics string // edgesim's /metrics URL; "" for a peer
	dns     string // edgesim's DNS host:port; "" for a peer
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
	client0 := selfCPU()
	c.resumed.Store(0)

	b.ResetTimer()
	start := time.Now()
	err = c.run(b.N, func(_ int, r *rand.Rand) int { return r.IntN(t.tenants) + 1 })
	wall := time.Since(start)
	client := (selfCPU() - client0).Seconds()
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
	b.ReportMetric(client*1e6/float64(b.N), "client-µs/handshake")
	b.ReportMetric(cpu/client, "server/client-CPU")
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

// startBenchServer starts this test binary as 'edgesim serve --tenants n' on serverCPU, waits for
// its banner and stops it when b ends.
func startBenchServer(b *testing.B, n int) *hsTarget {
	b.Helper()
	data := benchDataDir(n)
	args := []string{"serve", "--tenants", strconv.Itoa(n), "--key-type", string(tenant.KeyECDSAP256), "--data", data,
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}
	c := startBenchChild(b, "edgesim", benchChildEdgesim, strconv.Itoa(n), args, strings.Fields(os.Getenv(envServerEnv)))
	addrs := c.banner(b, "https", "metrics", "dns")
	return &hsTarget{addr: addrs["https"], metrics: addrs["metrics"], dns: addrs["dns"], tenants: n, pid: c.pid,
		roots: loadRoots(b, filepath.Join(data, tenant.CAFileName))}
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

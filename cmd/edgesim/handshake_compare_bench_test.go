package main

// BenchmarkHandshakeCompare: BenchmarkHandshake's client and measurement (server on CPU 0,
// client on CPU 1, server CPU per handshake from /proc) against any of edgesim, a bare Go TLS
// server or a peer (nginx, HAProxy, Caddy: started by bench/compare.sh), with ECDSA P-256 or
// RSA-2048 certificates. bench/compare.sh runs it; see bench/README.md.
//
//	EDGESIM_CMP_SERVER=edgesim EDGESIM_CMP_KEY=rsa-2048 \
//	  go test ./cmd/edgesim -run '^$' -bench '^BenchmarkHandshakeCompare$' -benchtime 3000x

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgesim/edgesim/tenant"
)

const (
	envCmpServer   = "EDGESIM_CMP_SERVER"   // edgesim | barego | peer (peer: EDGESIM_PEER_ADDR, _PID, _CA)
	envCmpKey      = "EDGESIM_CMP_KEY"      // ecdsa-p256 (default) | rsa-2048
	envCmpTenants  = "EDGESIM_CMP_TENANTS"  // tenant counts, comma-separated (default 1000)
	envCmpVariants = "EDGESIM_CMP_VARIANTS" // comma-separated of 1.3, 1.2, 1.3-resumed, 1.2-resumed (default the first three)
	envCmpBareGo   = "EDGESIM_CMP_BAREGO"   // child mode of TestBareGoCompareServer: "<key type>,<tenants>,<data dir>"
)

// hsResumed12 is a TLS 1.2 abbreviated handshake from a session ticket: no key exchange and no
// signature, unlike TLS 1.3 resumption, which Go's client offers only with (EC)DHE (psk_dhe_ke).
var hsResumed12 = hsVariant{"tls=1.2-resumed", tls.VersionTLS12, true}

// BenchmarkHandshakeCompare names its cases key=<key type>/tenants=<n>/tls=<variant>. It skips
// unless EDGESIM_CMP_SERVER is set.
func BenchmarkHandshakeCompare(b *testing.B) {
	server := os.Getenv(envCmpServer)
	if server == "" {
		b.Skipf("set %s=edgesim|barego|peer (bench/compare.sh does)", envCmpServer)
	}
	key := tenant.KeyType(os.Getenv(envCmpKey))
	if key == "" {
		key = tenant.KeyECDSAP256
	}
	if key != tenant.KeyECDSAP256 && key != tenant.KeyRSA2048 {
		b.Fatalf("%s=%q: want %s or %s", envCmpKey, key, tenant.KeyECDSAP256, tenant.KeyRSA2048)
	}
	sizes, err := cmpInts(os.Getenv(envCmpTenants), "1000")
	if err != nil {
		b.Fatalf("%s: %v", envCmpTenants, err)
	}
	variants := []hsVariant{hsTLS13, hsTLS12, hsResumed}
	if s := os.Getenv(envCmpVariants); s != "" {
		variants = nil
		for name := range strings.SplitSeq(s, ",") {
			switch "tls=" + strings.TrimSpace(name) {
			case hsTLS13.name:
				variants = append(variants, hsTLS13)
			case hsTLS12.name:
				variants = append(variants, hsTLS12)
			case hsResumed.name:
				variants = append(variants, hsResumed)
			case hsResumed12.name:
				variants = append(variants, hsResumed12)
			default:
				b.Fatalf("%s: unknown variant %q", envCmpVariants, name)
			}
		}
	}
	pinClient(b)
	b.Run("key="+string(key), func(b *testing.B) {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
				var target *hsTarget
				switch server {
				case "edgesim":
					target = startCmpEdgesim(b, n, key)
				case "barego":
					target = startCmpBareGo(b, n, key)
				case "peer":
					target = peerTarget(b, n)
				default:
					b.Fatalf("%s=%q: want edgesim, barego or peer", envCmpServer, server)
				}
				for _, v := range variants {
					b.Run(v.name, func(b *testing.B) { benchHandshakesKey(b, target, v, key) })
				}
			})
		}
	})
}

func cmpInts(s, def string) ([]int, error) {
	if s == "" {
		s = def
	}
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q: want positive integers", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// startCmpEdgesim is startBenchServer with a key type.
func startCmpEdgesim(b *testing.B, n int, key tenant.KeyType) *hsTarget {
	b.Helper()
	data := benchDataDir(n)
	args := []string{"serve", "--tenants", strconv.Itoa(n), "--key-type", string(key), "--data", data,
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	c := startBenchChild(b, "edgesim", benchChildEdgesim, string(key)+"-"+strconv.Itoa(n), args, strings.Fields(os.Getenv(envServerEnv)))
	addrs := c.banner(b, "https", "metrics", "dns")
	return &hsTarget{addr: addrs["https"], metrics: addrs["metrics"], dns: addrs["dns"], tenants: n, pid: c.pid,
		roots: loadRoots(b, filepath.Join(data, tenant.CAFileName))}
}

// startCmpBareGo runs this test binary again as TestBareGoCompareServer: runBareGoServer with a
// key type (main_test.go's child modes know only ECDSA, so this child is a test that serves).
func startCmpBareGo(b *testing.B, n int, key tenant.KeyType) *hsTarget {
	b.Helper()
	data := benchDataDir(n)
	env := []string{fmt.Sprintf("%s=%s,%d,%s", envCmpBareGo, key, n, data)}
	c := startBenchChild(b, "bare Go server", "", "barego-"+string(key)+"-"+strconv.Itoa(n),
		[]string{"-test.run", "^TestBareGoCompareServer$"}, env)
	return &hsTarget{addr: c.banner(b, "https")["https"], tenants: n, pid: c.pid,
		roots: loadRoots(b, filepath.Join(data, tenant.CAFileName))}
}

func peerTarget(b *testing.B, n int) *hsTarget {
	addr, pidText, ca := os.Getenv(envPeerAddr), os.Getenv(envPeerPID), os.Getenv(envPeerCA)
	if addr == "" || pidText == "" || ca == "" {
		b.Fatalf("%s=peer needs %s, %s and %s", envCmpServer, envPeerAddr, envPeerPID, envPeerCA)
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		b.Fatalf("%s=%q: %v", envPeerPID, pidText, err)
	}
	return &hsTarget{addr: addr, tenants: n, roots: loadRoots(b, ca), pid: pid}
}

// TestBareGoCompareServer is the bare Go server of BenchmarkHandshakeCompare when
// EDGESIM_CMP_BAREGO is set (runBareGoServer, with the key type given there); it skips otherwise.
func TestBareGoCompareServer(t *testing.T) {
	spec := os.Getenv(envCmpBareGo)
	if spec == "" {
		t.Skip("a child process of BenchmarkHandshakeCompare")
	}
	f := strings.SplitN(spec, ",", 3)
	if len(f) != 3 {
		t.Fatalf("%s=%q: want <key type>,<tenants>,<data dir>", envCmpBareGo, spec)
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := serveBareGo(tenant.KeyType(f[0]), n, f[2]); err != nil {
		t.Fatal(err)
	}
}

// serveBareGo is runBareGoServer with a key type: same certificates as edgesim serves from the
// data directory, TLS 1.2 and 1.3, X25519 then P-256, session tickets on, a goroutine per
// connection that handshakes and closes, GetCertificate from a map under a sync.RWMutex.
func serveBareGo(key tenant.KeyType, n int, data string) error {
	dir, err := tenant.Synthetic(n, 1)
	if err != nil {
		return err
	}
	var mu sync.RWMutex
	certs := make(map[string]*tls.Certificate, n)
	res, err := tenant.Provision(dir, tenant.Options{Dir: data, KeyType: key},
		func(host string, c *tls.Certificate) {
			certs[host] = &tls.Certificate{Certificate: c.Certificate, PrivateKey: c.PrivateKey}
		})
	if err != nil {
		return err
	}
	platform := &tls.Certificate{Certificate: res.Platform.Certificate, PrivateKey: res.Platform.PrivateKey}
	cfg := &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.RLock()
			c, ok := certs[hello.ServerName]
			mu.RUnlock()
			if !ok {
				return platform, nil
			}
			return c, nil
		},
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
	}
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	fmt.Fprintf(os.Stdout, "bare Go TLS server, %d tenants, %s\n  https %s\n%s\n", n, key, ln.Addr(), benchBannerEnd)
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			tc := tls.Server(c, cfg)
			_ = tc.Handshake()
			tc.Close()
		}()
	}
}

// benchHandshakesKey is benchHandshakes with the TLS 1.2 cipher suite matching the key type.
func benchHandshakesKey(b *testing.B, t *hsTarget, v hsVariant, key tenant.KeyType) {
	b.ReportAllocs()
	c := newHSClient(b, t, v)
	if v.version == tls.VersionTLS12 && key != tenant.KeyECDSAP256 {
		c.base.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	}
	warm := 200
	if v.resume {
		warm = t.tenants
		if warm > 20000 {
			warm = 20000
		}
	}
	if err := c.run(warm, func(i int, _ *rand.Rand) int { return i%t.tenants + 1 }); err != nil {
		b.Fatalf("warm-up: %v", err)
	}
	pick := func(_ int, r *rand.Rand) int { return r.IntN(t.tenants) + 1 }
	if v.resume {
		pick = func(_ int, r *rand.Rand) int { return r.IntN(warm) + 1 }
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
	err = c.run(b.N, pick)
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
	}
}

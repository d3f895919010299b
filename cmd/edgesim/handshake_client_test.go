package main

// The client of the handshake benchmarks: b.N handshakes spread over EDGESIM_BENCH_CONC goroutines,
// each with a fresh tls.Config, as a population of devices connecting once would make them.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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

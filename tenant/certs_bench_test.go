package tenant

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkProvisionSynthetic provisions synthetic tenants (10k, or EDGESIM_BENCH_TENANTS) per
// key type, three ways:
//
//	first-start  an empty data directory: CA, key pool and every certificate are made
//	cold         CA and key pool exist, no certificates: the cost of issuing them all
//	warm         everything exists: the cost of loading and checking them
//
// For 100k tenants, run once:
//
//	EDGESIM_BENCH_TENANTS=100000 go test -run '^$' -bench BenchmarkProvisionSynthetic -benchtime 1x ./tenant/
func BenchmarkProvisionSynthetic(b *testing.B) {
	n := 10000
	if s := os.Getenv("EDGESIM_BENCH_TENANTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("EDGESIM_BENCH_TENANTS=%q: want a positive number", s)
		}
	}
	d, err := Synthetic(n, 1)
	if err != nil {
		b.Fatal(err)
	}
	certs := make([]*tls.Certificate, 0, n)
	run := func(b *testing.B, o Options) {
		b.Helper()
		certs = certs[:0]
		if _, err := Provision(d, o, func(_ string, c *tls.Certificate) { certs = append(certs, c) }); err != nil {
			b.Fatal(err)
		}
		if len(certs) != n {
			b.Fatalf("%d certificates for %d tenants", len(certs), n)
		}
	}
	report := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "tenants/s")
	}
	for _, kt := range []KeyType{KeyECDSAP256, KeyRSA2048} {
		dir := filepath.Join(b.TempDir(), "data")
		o := Options{Dir: dir, KeyType: kt}

		b.Run(string(kt)+"/first-start", func(b *testing.B) {
			start := time.Now()
			for range b.N {
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
				run(b, o)
			}
			report(b, start)
		})
		b.Run(string(kt)+"/cold", func(b *testing.B) {
			start := time.Now()
			for range b.N {
				b.StopTimer()
				os.RemoveAll(filepath.Join(dir, "certs"))
				b.StartTimer()
				run(b, o)
			}
			report(b, start)
		})
		b.Run(string(kt)+"/warm", func(b *testing.B) {
			b.ReportAllocs()
			var before, after runtime.MemStats
			start := time.Now()
			for range b.N {
				b.StopTimer()
				certs = make([]*tls.Certificate, 0, n) // drop the last run's certificates
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.StartTimer()
				run(b, o)
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.StartTimer()
			}
			report(b, start)
			b.ReportMetric((float64(after.HeapAlloc)-float64(before.HeapAlloc))/float64(n), "heap-B/tenant")
			runtime.KeepAlive(certs)
		})
	}
}

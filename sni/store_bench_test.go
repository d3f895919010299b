package sni

import (
	"crypto/tls"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// The sizes the issue asks about: a small provider, a large one, and where SNI selection would
// stop being free if it were going to.
var benchSizes = []int{1_000, 100_000, 1_000_000}

func benchNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "mra.tenant-" + strconv.Itoa(i+1) + ".example"
	}
	return names
}

// rwMap is the baseline the store is measured against: a map under sync.RWMutex.
type rwMap struct {
	mu sync.RWMutex
	m  map[string]*tls.Certificate
}

func (r *rwMap) get(name string) *tls.Certificate {
	r.mu.RLock()
	c := r.m[name]
	r.mu.RUnlock()
	return c
}

// BenchmarkLookup measures parallel lookups of names spread over the whole set, the store
// against the RWMutex map in the same run:
//
//	go test ./sni -run '^$' -bench Lookup -benchtime 2s
func BenchmarkLookup(b *testing.B) {
	cert := &tls.Certificate{}
	for _, n := range benchSizes {
		names := benchNames(n)
		s := New()
		bt := s.Batch()
		base := &rwMap{m: make(map[string]*tls.Certificate, n)}
		for _, name := range names {
			_ = bt.Set(name, cert)
			base.m[name] = cert
		}
		bt.Commit()
		// A handshake's server name is a fresh string parsed from the ClientHello, never the
		// very string the map holds: look up copies so neither side wins by pointer equality.
		// Tenants connect in no particular order: both sides look names up in the same
		// shuffled order, so neither gains from memory laid out in insertion order.
		names = cloneAll(names)
		rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { names[i], names[j] = names[j], names[i] })
		var next atomic.Uint64 // each goroutine starts at a different place in the names
		b.Run("store/names="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := next.Add(7919) * 104729
				for pb.Next() {
					i++
					if c, _ := s.Lookup(names[i%uint64(n)]); c == nil {
						b.Fatal("miss")
					}
				}
			})
		})
		b.Run("rwmutex-map/names="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := next.Add(7919) * 104729
				for pb.Next() {
					i++
					if base.get(names[i%uint64(n)]) == nil {
						b.Fatal("miss")
					}
				}
			})
		})
	}
}

// BenchmarkLookupUpperCase is the slow path: every name needs case folding.
func BenchmarkLookupUpperCase(b *testing.B) {
	s := New()
	s.Set("mra.tenant-42.example", &tls.Certificate{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, k := s.Lookup("MRA.Tenant-42.Example"); k != Exact {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkLookupDuringWrites looks names up while another goroutine keeps replacing
// certificates, as an ACME renewal wave or a rotation would.
func BenchmarkLookupDuringWrites(b *testing.B) {
	const n = 100_000
	s, names := loadedStore(n)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = s.Set(names[(i*7)%n], &tls.Certificate{})
		}
	})
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(7919) * 104729
		for pb.Next() {
			i++
			if c, _ := s.Lookup(names[i%n]); c == nil {
				b.Fatal("miss")
			}
		}
	})
	b.StopTimer()
	close(stop)
	wg.Wait()
}

// BenchmarkSet measures replacing one certificate at 100k names.
func BenchmarkSet(b *testing.B) {
	const n = 100_000
	s, names := loadedStore(n)
	cert := &tls.Certificate{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = s.Set(names[i%n], cert)
	}
}

// loadedStore returns a store holding n synthetic names, and the names.
func loadedStore(n int) (*Store, []string) {
	names := benchNames(n)
	s := New()
	bt := s.Batch()
	for _, name := range names {
		_ = bt.Set(name, &tls.Certificate{})
	}
	bt.Commit()
	return s, names
}

func cloneAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.Clone(n)
	}
	return out
}

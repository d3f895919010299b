package certdir

import (
	"fmt"
	"testing"
)

// BenchmarkScanUnchanged is one poll of a directory of 10,000 kubelet-style folders of which
// none changed: what an idle edge pays every --cert-dir-poll.
//
//	go test ./tenant/certdir -run '^$' -bench ScanUnchanged
func BenchmarkScanUnchanged(b *testing.B) {
	dir := b.TempDir()
	ca := newCA(b)
	l := ca.issue(b, []string{"mra.example.com"})
	const n = 10_000
	for i := range n {
		writeKubelet(b, dir, fmt.Sprintf("tenant-%d", i), l)
	}
	store := newFakeStore()
	s, err := New(Config{Dir: dir, Install: store.install, Remove: store.remove})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Load(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.mu.Lock()
		err := s.scan(true)
		s.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}

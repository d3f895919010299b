package sni

import (
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// certs are distinct certificate values; the store only keeps pointers, so identity is enough.
func newCert() *tls.Certificate { return &tls.Certificate{} }

func TestLookup(t *testing.T) {
	s := New()
	exact, wild, deep, platform := newCert(), newCert(), newCert(), newCert()
	mustSet(t, s, "mra.example.com", exact)
	mustSet(t, s, "*.example.org", wild)
	mustSet(t, s, "MRA.Deep.Example.NET.", deep) // stored normalised
	s.SetPlatform(platform)

	tests := []struct {
		name string
		sni  string
		want *tls.Certificate
		kind Kind
	}{
		{"exact", "mra.example.com", exact, Exact},
		{"upper case", "MRA.EXAMPLE.COM", exact, Exact},
		{"mixed case and trailing dot", "Mra.Example.Com.", exact, Exact},
		{"stored normalised", "mra.deep.example.net", deep, Exact},
		{"wildcard", "mra.example.org", wild, Wildcard},
		{"wildcard upper case", "XMPP.EXAMPLE.ORG", wild, Wildcard},
		{"wildcard covers one label only", "a.b.example.org", platform, Platform},
		{"wildcard does not cover the apex", "example.org", platform, Platform},
		{"unknown", "mra.example.net", platform, Platform},
		{"empty SNI (client connected by IP)", "", platform, Platform},
		{"lone dot", ".", platform, Platform},
		{"leading dot", ".example.org", platform, Platform},
		{"over-long", strings.Repeat("a", 300), platform, Platform},
		{"odd bytes", "m\x00ra.example.com", platform, Platform},
		{"non-ASCII", "mrä.example.com", platform, Platform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kind := s.Lookup(tt.sni)
			if got != tt.want || kind != tt.kind {
				t.Fatalf("Lookup(%q) = %p %v, want %p %v", tt.sni, got, kind, tt.want, tt.kind)
			}
		})
	}

	s.SetPlatform(nil)
	if c, k := s.Lookup("nobody.example"); c != nil || k != None {
		t.Fatalf("without platform: got %p %v, want nil none", c, k)
	}
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "nobody.example"}); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("GetCertificate without match: err = %v, want ErrNoCertificate", err)
	}
}

func TestSetDeleteReplace(t *testing.T) {
	s := New()
	a, b := newCert(), newCert()
	mustSet(t, s, "x.example.com", a)
	mustSet(t, s, "*.example.com", a)
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
	mustSet(t, s, "X.example.com", b) // replaces, case-insensitively
	if c, _ := s.Lookup("x.example.com"); c != b {
		t.Fatal("replace did not take effect")
	}
	if s.Len() != 2 {
		t.Fatalf("Len after replace = %d, want 2", s.Len())
	}
	if !s.Delete("x.EXAMPLE.com") {
		t.Fatal("Delete of a present name reported false")
	}
	if s.Delete("x.example.com") {
		t.Fatal("second Delete reported true")
	}
	if c, k := s.Lookup("x.example.com"); c != a || k != Wildcard {
		t.Fatalf("after delete: %p %v, want the wildcard", c, k)
	}
	if !s.Delete("*.example.com") || s.Len() != 0 {
		t.Fatalf("wildcard delete: Len = %d", s.Len())
	}
	if _, ok := s.Get("x.example.com"); ok {
		t.Fatal("Get found a deleted name")
	}
}

func TestSetRejectsBadNames(t *testing.T) {
	s := New()
	for _, name := range []string{"", ".", strings.Repeat("a", 254), "*.", "a.*.example.com", "**.example.com"} {
		if err := s.Set(name, newCert()); !errors.Is(err, ErrBadName) {
			t.Errorf("Set(%q) err = %v, want ErrBadName", name, err)
		}
	}
	if err := s.Set("ok.example.com", nil); err == nil {
		t.Error("Set with a nil certificate succeeded")
	}
	if s.Len() != 0 {
		t.Fatalf("Len = %d after rejected sets", s.Len())
	}
}

func TestBatch(t *testing.T) {
	s := New()
	c := newCert()
	b := s.Batch()
	for i := range 5000 {
		if err := b.Set("mra.tenant-"+strconv.Itoa(i)+".example", c); err != nil {
			t.Fatal(err)
		}
	}
	if r := b.Commit(); r.Added != 5000 || s.Len() != 5000 {
		t.Fatalf("commit %+v, Len %d", r, s.Len())
	}
	for i := range 5000 {
		if i%2 == 0 {
			_ = b.Delete("mra.tenant-" + strconv.Itoa(i) + ".example")
		} else {
			_ = b.Set("mra.tenant-"+strconv.Itoa(i)+".example", newCert())
		}
	}
	r := b.Commit()
	if r.Deleted != 2500 || r.Replaced != 2500 || s.Len() != 2500 {
		t.Fatalf("second commit %+v, Len %d", r, s.Len())
	}
	n := 0
	s.Range(func(string, *tls.Certificate) bool { n++; return true })
	if n != 2500 {
		t.Fatalf("Range saw %d names", n)
	}
}

func TestGetCertificateCountsSelections(t *testing.T) {
	s := New()
	mustSet(t, s, "a.example.com", newCert())
	mustSet(t, s, "*.example.org", newCert())
	s.SetPlatform(newCert())
	for _, n := range []string{"a.example.com", "A.EXAMPLE.COM", "b.example.org", "z.example.net"} {
		if _, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: n}); err != nil {
			t.Fatal(err)
		}
	}
	got := s.Selections()
	if got[Exact] != 2 || got[Wildcard] != 1 || got[Platform] != 1 || got[None] != 0 {
		t.Fatalf("selections = %v", got)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	s := New()
	mustSet(t, s, "mra.example.com", newCert())
	mustSet(t, s, "*.example.org", newCert())
	s.SetPlatform(newCert())
	for _, name := range []string{"mra.example.com", "MRA.EXAMPLE.COM.", "x.example.org", "X.Example.Org", "none.example"} {
		if n := testing.AllocsPerRun(100, func() { s.Lookup(name) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times", name, n)
		}
	}
	hello := &tls.ClientHelloInfo{ServerName: "Mra.Example.Com"}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.GetCertificate(hello) }); n != 0 {
		t.Errorf("GetCertificate allocates %v times", n)
	}
}

// TestConcurrentChurn replaces and removes names while readers look up names that always
// exist: a reader must never see anything but one of the certificates set for its name.
func TestConcurrentChurn(t *testing.T) {
	s := New()
	const n = 2000
	names := make([]string, n)
	old, cur := newCert(), newCert()
	for i := range names {
		names[i] = "mra.tenant-" + strconv.Itoa(i) + ".example"
		mustSet(t, s, names[i], old)
	}
	// Churn names come and go in the slots around the stable ones; each has its own
	// certificate, so a reader that got another key's certificate would notice.
	churn := make([]string, n)
	churnCert := make(map[string]*tls.Certificate, n)
	for i := range churn {
		churn[i] = "churn-" + strconv.Itoa(i) + ".example"
		churnCert[churn[i]] = newCert()
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for i := r; !stop.Load(); i++ {
				c, k := s.Lookup(names[i%n])
				if k != Exact || (c != old && c != cur) {
					bad.Add(1)
				}
				name := churn[(i*7)%n]
				if c, k := s.Lookup(name); k == Exact && c != churnCert[name] {
					bad.Add(1)
				}
			}
		})
	}
	for round := range 20 {
		b := s.Batch()
		for i, name := range names {
			c := old
			if round%2 == 0 {
				c = cur
			}
			_ = b.Set(name, c)
			_ = b.Set(churn[i], churnCert[churn[i]]) // added and removed alongside
		}
		b.Commit()
		for i := range churn {
			s.Delete(churn[i])
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d lookups saw a missing or foreign certificate during churn", bad.Load())
	}
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"mra.example.com", "MRA.Example.COM.", "", ".", "..", "*.example.com", strings.Repeat("A", 260), "\xff\x00."} {
		f.Add(s)
	}
	s := New()
	s.SetPlatform(newCert())
	mustSet(f, s, "mra.example.com", newCert())
	f.Fuzz(func(t *testing.T, name string) {
		var buf [MaxNameLen + 1]byte
		got, ok := normalize(name, &buf)
		want := strings.TrimSuffix(name, ".")
		if len(want) > MaxNameLen {
			if ok {
				t.Fatalf("normalize accepted %d octets", len(want))
			}
		} else if !ok || got != asciiLower(want) {
			t.Fatalf("normalize(%q) = %q %v, want %q", name, got, ok, asciiLower(want))
		}
		if c, k := s.Lookup(name); c == nil || k == None {
			t.Fatalf("Lookup(%q) found nothing despite a platform certificate", name)
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func mustSet(t testing.TB, s *Store, name string, c *tls.Certificate) {
	t.Helper()
	if err := s.Set(name, c); err != nil {
		t.Fatal(err)
	}
}

func TestCollector(t *testing.T) {
	s := New()
	mustSet(t, s, "a.example.com", newCert())
	s.SetPlatform(newCert())
	_, _ = s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.com"})
	_, _ = s.GetCertificate(&tls.ClientHelloInfo{ServerName: "b.example.com"})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	want := `
# HELP edgesim_sni_names Host names (wildcards included) in the SNI certificate store.
# TYPE edgesim_sni_names gauge
edgesim_sni_names 1
# HELP edgesim_sni_selections_total Certificates chosen by SNI during TLS handshakes, by how the name matched (exact, wildcard, platform fallback, none).
# TYPE edgesim_sni_selections_total counter
edgesim_sni_selections_total{kind="exact"} 1
edgesim_sni_selections_total{kind="none"} 0
edgesim_sni_selections_total{kind="platform"} 1
edgesim_sni_selections_total{kind="wildcard"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestKeyLengths covers names stored inline in the slot and names kept outside it, around the
// boundary, including two names that differ only past it.
func TestKeyLengths(t *testing.T) {
	s := New()
	certs := map[string]*tls.Certificate{}
	for n := 4; n <= 120; n++ {
		name := strings.Repeat("a", n-4) + ".com"
		certs[name] = newCert()
		mustSet(t, s, name, certs[name])
	}
	twinA, twinB := strings.Repeat("b", 40)+"1.example", strings.Repeat("b", 40)+"2.example"
	certs[twinA], certs[twinB] = newCert(), newCert()
	mustSet(t, s, twinA, certs[twinA])
	mustSet(t, s, twinB, certs[twinB])
	for name, want := range certs {
		if got, k := s.Lookup(strings.ToUpper(name)); got != want || k != Exact {
			t.Fatalf("Lookup(%d octets) = %p %v, want %p", len(name), got, k, want)
		}
	}
	seen := 0
	s.Range(func(name string, c *tls.Certificate) bool {
		if certs[name] != c {
			t.Fatalf("Range gave %q with a foreign certificate", name)
		}
		seen++
		return true
	})
	if seen != len(certs) {
		t.Fatalf("Range saw %d of %d names", seen, len(certs))
	}
	for name := range certs {
		if !s.Delete(name) {
			t.Fatalf("Delete(%d octets) found nothing", len(name))
		}
	}
	if s.Len() != 0 {
		t.Fatalf("Len = %d after deleting all", s.Len())
	}
}

func TestCompareAndSet(t *testing.T) {
	s := New()
	a, b, c := newCert(), newCert(), newCert()
	if ok, err := s.CompareAndSet("Mra.Example.com", nil, a); !ok || err != nil {
		t.Fatalf("add to an empty name: %v %v", ok, err)
	}
	if ok, _ := s.CompareAndSet("mra.example.com", b, c); ok {
		t.Fatal("set with a stale old value succeeded")
	}
	if got, _ := s.Get("mra.example.com"); got != a {
		t.Fatal("a failed CompareAndSet changed the name")
	}
	if ok, _ := s.CompareAndSet("mra.example.com", a, b); !ok {
		t.Fatal("set with the current value failed")
	}
	if ok, _ := s.CompareAndSet("mra.example.com", nil, c); ok {
		t.Fatal("add over an existing name succeeded")
	}
	if ok, _ := s.CompareAndSet("mra.example.com", b, nil); !ok || s.Len() != 0 {
		t.Fatalf("delete with the current value: %v, %d names left", ok, s.Len())
	}
	if _, err := s.CompareAndSet("*.", nil, a); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
	// Writers that each read, then swap in their own certificate, never lose one another's
	// change: every successful swap replaced exactly what its writer had read.
	const writers, rounds = 8, 500
	var swaps atomic.Int64
	var wg sync.WaitGroup
	seen := make([]map[*tls.Certificate]bool, writers)
	for w := range writers {
		seen[w] = map[*tls.Certificate]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				for {
					cur, _ := s.Get("*.example.org")
					next := newCert()
					if ok, _ := s.CompareAndSet("*.example.org", cur, next); ok {
						seen[w][cur] = true
						swaps.Add(1)
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	replaced := map[*tls.Certificate]bool{}
	for _, m := range seen {
		for c := range m {
			if replaced[c] {
				t.Fatal("two writers replaced the same certificate: a change was lost")
			}
			replaced[c] = true
		}
	}
	if swaps.Load() != writers*rounds || len(replaced) != writers*rounds {
		t.Fatalf("%d swaps, %d distinct replaced values; want %d", swaps.Load(), len(replaced), writers*rounds)
	}
}

package driver

import (
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestOrderSRVPriorityFirst(t *testing.T) {
	recs := []srvTarget{
		{Host: "backup", Priority: 20, Weight: 100},
		{Host: "main", Priority: 10, Weight: 1},
		{Host: "zero", Priority: 30, Weight: 0},
	}
	for i := 0; i < 50; i++ {
		got := orderSRV(recs, rand.N[int])
		if got[0].Host != "main" || got[1].Host != "backup" || got[2].Host != "zero" {
			t.Fatalf("order %v: want main, backup, zero (by priority)", got)
		}
	}
}

// Within one priority, a target is tried first in proportion to its weight (RFC 2782).
func TestOrderSRVWeights(t *testing.T) {
	recs := []srvTarget{
		{Host: "expe1", Priority: 10, Weight: 60},
		{Host: "expe2", Priority: 10, Weight: 40},
		{Host: "never-first", Priority: 10, Weight: 0},
	}
	r := rand.New(rand.NewPCG(1, 2))
	first := map[string]int{}
	const n = 20000
	for i := 0; i < n; i++ {
		got := orderSRV(recs, r.IntN)
		if len(got) != 3 {
			t.Fatalf("got %d records, want 3", len(got))
		}
		first[got[0].Host]++
	}
	share := float64(first["expe1"]) / n
	if share < 0.57 || share > 0.63 {
		t.Errorf("expe1 first in %.3f of orderings, want about 0.60 (%v)", share, first)
	}
	// Weight 0 is picked first only when the random number is exactly 0: about 1 in 101.
	if zero := float64(first["never-first"]) / n; zero > 0.02 {
		t.Errorf("weight-0 record first in %.3f of orderings, want about 0.01", zero)
	}
}

func TestSNI(t *testing.T) {
	for _, c := range []struct{ host, domain, want string }{
		{"mra-host.sp.com", "example.com", "mra-host.example.com"}, // multitenant: rewritten
		{"expe1.example.com", "example.com", "expe1.example.com"},  // single tenant: unchanged
		{"EXPE1.Example.COM.", "example.com", "expe1.example.com"}, // case and trailing dot
		{"example.com", "example.com", "example.com"},              // the domain itself
		{"mra.notexample.com", "example.com", "mra.example.com"},   // suffix without a dot is another domain
		{"a.b.sp.com", "tenant-7.example", "a.tenant-7.example"},   // only the first label is kept
	} {
		if got := SNI(c.host, c.domain); got != c.want {
			t.Errorf("SNI(%q, %q) = %q, want %q", c.host, c.domain, got, c.want)
		}
	}
}

func TestParseSteps(t *testing.T) {
	got, err := ParseSteps("tls, SRV")
	if err != nil || len(got) != 2 || got[0] != StepSRV || got[1] != StepTLS {
		t.Fatalf("ParseSteps = %v, %v; want [srv tls]", got, err)
	}
	if _, err := ParseSteps("srv,handshake"); err == nil {
		t.Fatal("unknown step accepted")
	}
	if all, _ := ParseSteps("all"); len(all) != len(Steps) {
		t.Fatalf("all = %v", all)
	}
}

func TestSplitAddress(t *testing.T) {
	if u, d, err := SplitAddress("bob@Example.COM."); err != nil || u != "bob" || d != "example.com" {
		t.Fatalf("got %q %q %v", u, d, err)
	}
	for _, bad := range []string{"bob", "@example.com", "bob@", "bob@localhost", "a b@example.com", "bob@x@example.com"} {
		if _, _, err := SplitAddress(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// closedUDPAddr returns a loopback address where nothing listens (UDP).
func closedUDPAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// A DNS server that is not running answers with ICMP port unreachable: every query fails at
// once as dns-error saying nothing answers, without sending again until the step's timeout (a
// retry on every error once spun through thousands of sockets per query, until one connected to
// itself and read its own query back as an empty NOERROR answer).
func TestResolverNothingListens(t *testing.T) {
	addr := closedUDPAddr(t)
	r := newResolver(addr, 2*time.Second)
	for i := range 50 {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := r.lookupSRV(ctx, "_collab-edge._tls.example.com")
		cancel()
		if took := time.Since(start); took > 500*time.Millisecond {
			t.Fatalf("query %d took %v: a refused query must fail at once", i, took)
		}
		if err == nil || classOf(err) != ClassDNSError || !strings.Contains(err.Error(), "nothing answers DNS on "+addr) {
			t.Fatalf("query %d: %v; want dns-error saying nothing answers DNS on %s", i, err, addr)
		}
	}
}

// A reply without the QR bit (here an echo of the query, as a socket connected to itself reads)
// is not an answer.
func TestResolverEchoIsNoAnswer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(b[:n], from)
		}
	}()
	r := newResolver(pc.LocalAddr().String(), time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = r.exchange(ctx, "_collab-edge._tls.example.com", dns.TypeSRV)
	if err == nil || classOf(err) != ClassDNSError || !strings.Contains(err.Error(), "not a DNS response") {
		t.Fatalf("echoed query: %v; want dns-error: not a DNS response", err)
	}
}

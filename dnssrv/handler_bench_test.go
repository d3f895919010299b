package dnssrv

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

var benchSizes = []int{1_000, 100_000}

// benchZones returns n multitenant zones tenant-<k>.example, each with one SRV record to
// mra.sp.example, plus the provider zone sp.example.
func benchZones(b *testing.B, n int) *MapZones {
	b.Helper()
	zones := make([]*Zone, 0, n+1)
	zones = append(zones, &Zone{Origin: "sp.example", Hosts: map[string][]netip.Addr{
		"mra.sp.example": {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
	}})
	srv := []SRV{{Target: "mra.sp.example", Port: 8443, Priority: 10, Weight: 10}}
	for k := range n {
		zones = append(zones, &Zone{Origin: fmt.Sprintf("tenant-%d.example", k), SRV: srv})
	}
	zs, err := NewMapZones(zones...)
	if err != nil {
		b.Fatal(err)
	}
	return zs
}

// benchQueries returns one _collab-edge._tls SRV query per tenant, with EDNS0 as dig sends.
func benchQueries(n int) []*dns.Msg {
	qs := make([]*dns.Msg, n)
	for k := range qs {
		qs[k] = new(dns.Msg).SetQuestion(fmt.Sprintf("_collab-edge._tls.tenant-%d.example.", k), dns.TypeSRV)
		qs[k].SetEdns0(1232, false)
	}
	return qs
}

// BenchmarkServeDNS_SRV measures the handler answering a tenant's SRV query, packing included
// (the recorder packs as the UDP writer does), cycling through all tenants.
func BenchmarkServeDNS_SRV(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("zones=%d", n), func(b *testing.B) {
			s, err := New(Config{Zones: benchZones(b, n), Nameserver: "ns.sp.example"})
			if err != nil {
				b.Fatal(err)
			}
			qs := benchQueries(n)
			w := &recorder{}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				w.msgs = w.msgs[:0]
				s.ServeDNS(w, qs[i%n])
				i++
			}
			if len(w.msgs) != 1 || len(w.msgs[0].Answer) != 1 {
				b.Fatalf("bad answer %v", w.msgs)
			}
		})
	}
	// A million tenants whose zones are built per query, never held in memory.
	b.Run("zones=1000000/synthetic", func(b *testing.B) {
		s, err := New(Config{Zones: newSynthZones(1_000_000), Nameserver: "ns.sp.example"})
		if err != nil {
			b.Fatal(err)
		}
		qs := make([]*dns.Msg, 100_000) // spread over the million
		for i := range qs {
			qs[i] = new(dns.Msg).SetQuestion(fmt.Sprintf("_collab-edge._tls.tenant-%d.example.", i*10+7), dns.TypeSRV)
			qs[i].SetEdns0(1232, false)
		}
		w := &recorder{}
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			w.msgs = w.msgs[:0]
			s.ServeDNS(w, qs[i%len(qs)])
			i++
		}
		if len(w.msgs) != 1 || len(w.msgs[0].Answer) != 1 {
			b.Fatalf("bad answer %v", w.msgs)
		}
	})
}

// BenchmarkMapServer is the baseline: a plain miekg handler over a map of prebuilt answers, the
// simplest server one could write, which materialises every record up front.
func BenchmarkMapServer(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("zones=%d", n), func(b *testing.B) {
			records := make(map[string][]dns.RR, n)
			extra := []dns.RR{
				&dns.A{Hdr: dns.RR_Header{Name: "mra.sp.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A: net.ParseIP("192.0.2.10").To4()},
				&dns.AAAA{Hdr: dns.RR_Header{Name: "mra.sp.example.", Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 60},
					AAAA: net.ParseIP("2001:db8::10")},
			}
			for k := range n {
				name := fmt.Sprintf("_collab-edge._tls.tenant-%d.example.", k)
				records[name] = []dns.RR{&dns.SRV{
					Hdr:      dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 60},
					Priority: 10, Weight: 10, Port: 8443, Target: "mra.sp.example.",
				}}
			}
			h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
				m := new(dns.Msg).SetReply(r)
				m.Authoritative = true
				if rrs, ok := records[strings.ToLower(r.Question[0].Name)]; ok {
					m.Answer = rrs
					m.Extra = extra
				} else {
					m.Rcode = dns.RcodeNameError
				}
				if opt := r.IsEdns0(); opt != nil {
					m.SetEdns0(1232, false)
				}
				w.WriteMsg(m)
			})
			qs := benchQueries(n)
			w := &recorder{}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				w.msgs = w.msgs[:0]
				h.ServeDNS(w, qs[i%n])
				i++
			}
			if len(w.msgs) != 1 || len(w.msgs[0].Answer) != 1 {
				b.Fatalf("bad answer %v", w.msgs)
			}
		})
	}
}

// BenchmarkUDPRoundTrip measures a query's round trip over loopback UDP through the server's own
// UDP loop (read, unpack, answer, pack, write), one query in flight, 1,000 zones. It guards the
// serve loop that replaced miekg/dns's (a goroutine and a deadline per packet, an IP_PKTINFO
// control message per answer); the client's share of the time is the same for both.
func BenchmarkUDPRoundTrip(b *testing.B) {
	const n = 1_000
	s, err := New(Config{Addr: "127.0.0.1:0", Zones: benchZones(b, n), Nameserver: "ns.sp.example"})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Shutdown(context.Background()) })
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	wires := make([][]byte, n)
	for i, q := range benchQueries(n) {
		if wires[i], err = q.Pack(); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 1232)
	var r dns.Msg
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(wires[i%n]); err != nil {
			b.Fatal(err)
		}
		m, err := c.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		if i%n == 0 { // check an answer now and then, off the hot path
			if err := r.Unpack(buf[:m]); err != nil || len(r.Answer) != 1 {
				b.Fatalf("answer %v: %v", &r, err)
			}
		}
		i++
	}
}

package dnssrv

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Hygiene of an authoritative server facing the internet: no recursion, nothing outside its
// zones, minimal ANY, a bounded amplification factor over UDP, TCP connections that cannot be
// held open, and malformed packets that never crash it.

// hygieneZones is testZones plus the worst cases for answer size against question size: a tenant
// whose domain is as long as a name under _collab-edge._tls can be, and a short tenant whose two
// edge hosts have the longest names a zone allows, each with an IPv4 and an IPv6 address.
func hygieneZones(t testing.TB) (*MapZones, []string) {
	t.Helper()
	var zones []*Zone
	testZones(t).Each(func(z *Zone) bool { zones = append(zones, z); return true })

	label := func(c byte) string { return strings.Repeat(string(c), 63) }
	// 253 bytes in all with "_collab-edge._tls." in front (the longest name DNS carries).
	longOrigin := label('a') + "." + label('b') + "." + label('c') + "." + strings.Repeat("d", 253-len("_collab-edge._tls.")-3*64-len(".example")) + ".example"
	longHost1 := label('h') + "." + label('i') + "." + label('j') + ".x.example"
	longHost2 := label('k') + "." + label('l') + "." + label('m') + ".x.example"
	both := func(v4, v6 string) []netip.Addr {
		return []netip.Addr{netip.MustParseAddr(v4), netip.MustParseAddr(v6)}
	}
	zones = append(zones,
		&Zone{Origin: longOrigin, SRV: []SRV{{Target: "mra.sp.example", Port: 8443, Priority: 10, Weight: 10}}},
		&Zone{Origin: "x.example",
			SRV: []SRV{
				{Target: longHost1, Port: 8443, Priority: 10, Weight: 10},
				{Target: longHost2, Port: 8443, Priority: 20, Weight: 10},
			},
			Hosts: map[string][]netip.Addr{
				longHost1: both("192.0.2.21", "2001:db8::21"),
				longHost2: both("192.0.2.22", "2001:db8::22"),
			},
			TXT: map[string][]string{"_acme-challenge.x.example": {strings.Repeat("t", 43)}},
		},
	)
	zs, err := NewMapZones(zones...)
	if err != nil {
		t.Fatal(err)
	}
	// Every name worth asking: each apex, its SRV and _cisco-uds names, a name that does not
	// exist, its hosts (two per zone at most) and TXT names; and names outside every zone.
	names := []string{".", "com.", "www.google.com.", "example.", "sp.example.x."}
	for _, z := range zones {
		names = append(names, z.Origin+".", CollabEdgeLabel+"."+z.Origin+".", CiscoUDSLabel+"."+z.Origin+".",
			"nothere."+z.Origin+".", "_tls."+z.Origin+".")
		var hosts []string
		for h := range z.Hosts {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		for _, h := range hosts[:min(len(hosts), 2)] {
			names = append(names, h+".")
		}
		for n := range z.TXT {
			names = append(names, n+".")
		}
	}
	for _, n := range names {
		if _, ok := dns.IsDomainName(n); !ok || len(n) > 254 {
			t.Fatalf("fixture name %q is not a domain name", n)
		}
	}
	return zs, names
}

// udpExchange sends raw bytes to addr over UDP and returns the raw answer, or nil when none
// comes within wait.
func udpExchange(t testing.TB, addr string, q []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		t.Fatal(err)
	}
	return buf[:n]
}

func TestNoRecursion(t *testing.T) {
	addr := startServer(t, testZones(t))
	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
	}{
		{"outside the zones", "www.google.com.", dns.TypeA, dns.RcodeRefused},
		{"outside, srv", "_collab-edge._tls.cisco.com.", dns.TypeSRV, dns.RcodeRefused},
		{"outside, any", "isc.org.", dns.TypeANY, dns.RcodeRefused},
		{"root ns (priming)", ".", dns.TypeNS, dns.RcodeRefused},
		{"tld", "com.", dns.TypeSOA, dns.RcodeRefused},
		{"suffix but not below a zone", "notexample.com.", dns.TypeA, dns.RcodeRefused},
		{"parent of a zone", "example.", dns.TypeNS, dns.RcodeRefused},
		{"inside, answered", "_collab-edge._tls.example.com.", dns.TypeSRV, dns.RcodeSuccess},
		{"inside, nxdomain", "_cisco-uds._tcp.example.com.", dns.TypeSRV, dns.RcodeNameError},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				q := new(dns.Msg)
				q.SetQuestion(tc.qname, tc.qtype) // RD=1, as a stub resolver sends it
				c := &dns.Client{Net: network, Timeout: 5 * time.Second}
				r, _, err := c.Exchange(q, addr)
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if r.RecursionAvailable {
					t.Error("RA set: the server offers recursion")
				}
				if !r.RecursionDesired {
					t.Error("RD not copied from the query (RFC 1035 §4.1.1)")
				}
				if tc.rcode == dns.RcodeRefused {
					if r.Authoritative || len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 {
						t.Errorf("REFUSED with aa=%v and records %v %v %v (a referral or cached data)", r.Authoritative, r.Answer, r.Ns, r.Extra)
					}
				}
			})
		}
	}
}

func TestANYIsMinimal(t *testing.T) {
	addr := startServer(t, testZones(t))
	// Names that own several record sets (SOA, NS, A, AAAA, SRV, TXT): each gets one HINFO.
	for _, qname := range []string{"example.com.", "_collab-edge._tls.many.example.", "mra.sp.example.", "_acme-challenge.example.com."} {
		for _, network := range []string{"udp", "tcp"} {
			for _, edns := range []uint16{0, 4096} {
				t.Run(fmt.Sprintf("%s/%s/edns%d", qname, network, edns), func(t *testing.T) {
					r := exchange(t, network, addr, qname, dns.TypeANY, edns)
					if r.Rcode != dns.RcodeSuccess || r.Truncated || len(r.Answer) != 1 {
						t.Fatalf("rcode %s tc=%v answer %v, want one record", dns.RcodeToString[r.Rcode], r.Truncated, r.Answer)
					}
					h, ok := r.Answer[0].(*dns.HINFO)
					if !ok || h.Cpu != "RFC8482" {
						t.Fatalf("answer %v, want the RFC 8482 HINFO", r.Answer[0])
					}
					if len(r.Ns) != 0 || len(rrStrings(r.Extra)) != 0 {
						t.Errorf("ANY carries authority %v / additional %v", r.Ns, r.Extra)
					}
					r.Compress = true
					if n := r.Len(); n > 120 {
						t.Errorf("ANY answer is %d bytes", n)
					}
				})
			}
		}
	}
}

// ampQuery is one query of the amplification sweep.
type ampQuery struct {
	qname string
	qtype uint16
	edns  uint16 // 0: no OPT
	do    bool
}

func (q ampQuery) String() string {
	s := q.qname + " " + dns.TypeToString[q.qtype]
	if q.edns == 0 {
		return s + " (no EDNS)"
	}
	s += fmt.Sprintf(" (EDNS %d", q.edns)
	if q.do {
		s += " DO"
	}
	return s + ")"
}

// Amplification bounds over UDP (response bytes / query bytes), for the fixture of
// hygieneZones, whose worst shapes are a tenant with 25 SRV targets and one whose two edge
// hosts have 189-byte names with an A and an AAAA each.
//
// What the server adds on its own stays near 1 to 4: REFUSED echoes the question, NXDOMAIN and
// NODATA carry one SOA, ANY is one HINFO (RFC 8482), and an answer too big for the client is
// sent as header and question with TC=1 (see fit). Only the SRV answers an operator publishes,
// with their A/AAAA glue, grow past that, and they are capped: 512 bytes without EDNS, and
// MaxUDPSize (1232) with EDNS whatever size the client claims (4096 gets 1232).
//
// Without EDNS the bound is 12: a complete two-target answer with the longest names fits in
// 503 bytes and is asked with a 45-byte query (11.2); common tenants (short names, one or two
// targets) stay under 5. With EDNS the bound is 21: 25 targets fill 1219 of the 1232 bytes for a
// 59-byte query (20.7). Both are deterministic byte counts, so the margin is small on purpose: a
// change that lets answers grow (more glue, no compression, a larger cap) shows up here.
const (
	maxAmpNoEDNS = 12
	maxAmpEDNS   = 21
)

func TestAmplification(t *testing.T) {
	zs, names := hygieneZones(t)
	addr := startServer(t, zs)
	qtypes := []uint16{dns.TypeSRV, dns.TypeA, dns.TypeAAAA, dns.TypeSOA, dns.TypeNS, dns.TypeTXT, dns.TypeANY, dns.TypeMX, dns.TypeCAA}
	type result struct {
		q          ampQuery
		qlen, rlen int
		factor     float64
		tc         bool
	}
	var worstPlain, worstEDNS result
	var queries int
	byType := map[string]float64{}
	for _, name := range names {
		for _, qt := range qtypes {
			for _, e := range []struct {
				size uint16
				do   bool
			}{{0, false}, {512, false}, {1232, false}, {4096, false}, {4096, true}} {
				q := ampQuery{name, qt, e.size, e.do}
				m := new(dns.Msg)
				m.SetQuestion(name, qt)
				m.RecursionDesired = false
				if e.size > 0 {
					m.SetEdns0(e.size, e.do)
				}
				wire, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				resp := udpExchange(t, addr, wire, 5*time.Second)
				if resp == nil {
					t.Fatalf("%v: no answer", q)
				}
				queries++
				r := new(dns.Msg)
				if err := r.Unpack(resp); err != nil {
					t.Fatalf("%v: answer does not unpack: %v", q, err)
				}
				if r.RecursionAvailable {
					t.Errorf("%v: RA set", q)
				}
				limit := dns.MinMsgSize
				if e.size > 0 {
					limit = max(dns.MinMsgSize, min(int(e.size), DefaultMaxUDPSize))
				}
				if len(resp) > limit {
					t.Errorf("%v: %d-byte answer over UDP, client accepts %d", q, len(resp), limit)
				}
				res := result{q, len(wire), len(resp), float64(len(resp)) / float64(len(wire)), r.Truncated}
				if r.Truncated && len(r.Answer)+len(r.Ns)+len(rrStrings(r.Extra)) != 0 {
					t.Errorf("%v: truncated answer still carries records", q)
				}
				key := dns.TypeToString[qt]
				if r.Rcode == dns.RcodeNameError {
					key = "NXDOMAIN"
				} else if r.Rcode == dns.RcodeRefused {
					key = "REFUSED"
				}
				byType[key] = max(byType[key], res.factor)
				if e.size == 0 {
					if res.factor > worstPlain.factor {
						worstPlain = res
					}
				} else if res.factor > worstEDNS.factor {
					worstEDNS = res
				}
			}
		}
	}
	keys := make([]string, 0, len(byType))
	for k := range byType {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, " %s %.2f", k, byType[k])
	}
	t.Logf("%d UDP queries; max factor by kind:%s", queries, sb.String())
	t.Logf("max without EDNS: %.2f = %d/%d bytes, tc=%v: %v", worstPlain.factor, worstPlain.rlen, worstPlain.qlen, worstPlain.tc, worstPlain.q)
	t.Logf("max with EDNS:    %.2f = %d/%d bytes, tc=%v: %v", worstEDNS.factor, worstEDNS.rlen, worstEDNS.qlen, worstEDNS.tc, worstEDNS.q)
	if worstPlain.factor > maxAmpNoEDNS {
		t.Errorf("amplification without EDNS %.2f > %d: %v", worstPlain.factor, maxAmpNoEDNS, worstPlain.q)
	}
	if worstEDNS.factor > maxAmpEDNS {
		t.Errorf("amplification with EDNS %.2f > %d: %v", worstEDNS.factor, maxAmpEDNS, worstEDNS.q)
	}
}

// TestTruncatedIsEmpty: an answer that does not fit a UDP client's size comes back as header and
// question with TC=1 (and OPT when asked), and the same query over TCP gets everything.
func TestTruncatedIsEmpty(t *testing.T) {
	addr := startServer(t, testZones(t))
	const qname = "_collab-edge._tls.many.example."
	for _, edns := range []uint16{0, 512} {
		r := exchange(t, "udp", addr, qname, dns.TypeSRV, edns)
		if !r.Truncated || len(r.Answer) != 0 || len(r.Ns) != 0 || len(rrStrings(r.Extra)) != 0 {
			t.Errorf("edns %d: tc=%v with %d answers, %d authority, %v additional; want TC and no records",
				edns, r.Truncated, len(r.Answer), len(r.Ns), rrStrings(r.Extra))
		}
		if len(r.Question) != 1 || r.Question[0].Name != qname || r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			t.Errorf("edns %d: question %v rcode %s aa=%v", edns, r.Question, dns.RcodeToString[r.Rcode], r.Authoritative)
		}
		if (edns > 0) != (r.IsEdns0() != nil) {
			t.Errorf("edns %d: OPT in answer = %v", edns, r.IsEdns0())
		}
	}
	if r := exchange(t, "tcp", addr, qname, dns.TypeSRV, 0); r.Truncated || len(r.Answer) != manyTargets {
		t.Errorf("tcp: tc=%v answers %d, want %d", r.Truncated, len(r.Answer), manyTargets)
	}
}

// tcpQuery frames m for DNS over TCP (RFC 1035 §4.2.2).
func tcpQuery(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

func readTCPMsg(c net.Conn) (*dns.Msg, error) {
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(b)
}

// waitClosed reads c until the server closes it and returns how long that took from start; it
// fails when the server sends anything or keeps the connection past limit.
func waitClosed(t testing.TB, c net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	c.SetReadDeadline(start.Add(limit))
	b, err := io.ReadAll(c)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", took)
	}
	if len(b) != 0 {
		t.Errorf("server sent %d bytes before closing", len(b))
	}
	return took
}

func TestTCPPipelining(t *testing.T) {
	addr := startServer(t, testZones(t))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	qs := []struct {
		qname string
		qtype uint16
		rcode int
	}{
		{"_collab-edge._tls.example.com.", dns.TypeSRV, dns.RcodeSuccess},
		{"_cisco-uds._tcp.example.com.", dns.TypeSRV, dns.RcodeNameError},
		{"expe1.example.com.", dns.TypeA, dns.RcodeSuccess},
		{"www.google.com.", dns.TypeA, dns.RcodeRefused},
		{"_collab-edge._tls.many.example.", dns.TypeSRV, dns.RcodeSuccess},
		{"mra.sp.example.", dns.TypeAAAA, dns.RcodeSuccess},
		{"example.com.", dns.TypeANY, dns.RcodeSuccess},
		{"example.com.", dns.TypeSOA, dns.RcodeSuccess},
	}
	// All queries in one write, several rounds: the server must answer each, in order.
	const rounds = 4
	var batch []byte
	for i := range rounds * len(qs) {
		q := qs[i%len(qs)]
		m := new(dns.Msg).SetQuestion(q.qname, q.qtype)
		m.Id = uint16(1000 + i)
		batch = append(batch, tcpQuery(t, m)...)
	}
	if _, err := c.Write(batch); err != nil {
		t.Fatal(err)
	}
	for i := range rounds * len(qs) {
		r, err := readTCPMsg(c)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		q := qs[i%len(qs)]
		if r.Id != uint16(1000+i) || r.Question[0].Name != q.qname || r.Rcode != q.rcode {
			t.Fatalf("answer %d: id %d %v %s, want id %d %s %s", i, r.Id, r.Question, dns.RcodeToString[r.Rcode],
				1000+i, q.qname, dns.RcodeToString[q.rcode])
		}
	}
}

func TestTCPIdleAndSlowloris(t *testing.T) {
	const idle = 300 * time.Millisecond
	addr := startServer(t, testZones(t), func(c *Config) { c.TCPIdleTimeout = idle })
	limit := idle + 700*time.Millisecond // scheduling slack under -race on a busy machine
	query := tcpQuery(t, new(dns.Msg).SetQuestion("example.com.", dns.TypeSOA))
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	answerOne := func(t *testing.T, c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(query); err != nil {
			t.Fatal(err)
		}
		if _, err := readTCPMsg(c); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		attack func(t *testing.T, c net.Conn)
	}{
		{"idle from the start", func(t *testing.T, c net.Conn) {}},
		{"idle after a query", answerOne},
		{"length prefix then stall", func(t *testing.T, c net.Conn) { c.Write(query[:2]) }},
		{"half a query then stall", func(t *testing.T, c net.Conn) { c.Write(query[:len(query)/2]) }},
		{"query then length prefix then stall", func(t *testing.T, c net.Conn) { answerOne(t, c); c.Write(query[:2]) }},
		{"one byte at a time", func(t *testing.T, c net.Conn) {
			go func() {
				for _, b := range query[:len(query)-1] {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(idle / 4)
				}
			}()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t)
			tc.attack(t, c)
			start := time.Now()
			took := waitClosed(t, c, start, limit)
			t.Logf("closed after %v (idle timeout %v)", took.Round(time.Millisecond), idle)
			if took < idle/2 {
				t.Errorf("closed after %v, before the idle timeout %v", took, idle)
			}
		})
	}
}

func TestTCPReadTimeouts(t *testing.T) {
	for _, tc := range []struct {
		idle, first time.Duration
	}{{0, firstQueryTimeout}, {300 * time.Millisecond, 300 * time.Millisecond}, {time.Minute, firstQueryTimeout}} {
		s, err := New(Config{Zones: testZones(t), TCPIdleTimeout: tc.idle})
		if err != nil {
			t.Fatal(err)
		}
		srv := s.tcpServer()
		if srv.ReadTimeout != tc.first || srv.IdleTimeout() != s.cfg.TCPIdleTimeout {
			t.Errorf("TCPIdleTimeout %v: first query %v, later %v; want %v and %v", tc.idle, srv.ReadTimeout,
				srv.IdleTimeout(), tc.first, s.cfg.TCPIdleTimeout)
		}
	}
}

// TestMalformedPackets: garbage gets FORMERR or nothing, and the server keeps answering.
func TestMalformedPackets(t *testing.T) {
	const idle = 500 * time.Millisecond // the garbage after a message ends as a stalled one
	addr := startServer(t, testZones(t), func(c *Config) { c.TCPIdleTimeout = idle })
	good := new(dns.Msg).SetQuestion("example.com.", dns.TypeSOA)
	good.Id = 0x1234
	goodWire, err := good.Pack()
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(id, flags, qd, an, ns, ar uint16) []byte {
		b := make([]byte, 0, 12)
		for _, v := range []uint16{id, flags, qd, an, ns, ar} {
			b = binary.BigEndian.AppendUint16(b, v)
		}
		return b
	}
	q := func(b ...byte) []byte { return append(b, 0, 1, 0, 1) } // name bytes, then type A, class IN
	random := make([]byte, 1400)
	rand.Read(random)
	random[2] &^= 0x80 // QR=0 so that it is taken as a query
	tests := []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0}},
		{"truncated header", goodWire[:7]},
		{"header only, qdcount 1", hdr(1, 0, 1, 0, 0, 0)},
		{"question cut short", goodWire[:len(goodWire)-3]},
		{"compression loop", append(hdr(2, 0, 1, 0, 0, 0), q(0xc0, 12)...)},
		{"compression pointer forward", append(hdr(3, 0, 1, 0, 0, 0), q(0xc0, 40)...)},
		{"label of 64", append(hdr(4, 0, 1, 0, 0, 0), q(append(append([]byte{64}, make([]byte, 64)...), 0)...)...)},
		{"extended label type", append(hdr(5, 0, 1, 0, 0, 0), q(0x41, 'a', 0)...)},
		{"name over 255", append(hdr(6, 0, 1, 0, 0, 0), q(append(bytesRepeat(append([]byte{63}, make([]byte, 63)...), 5), 0)...)...)},
		// miekg/dns reads the records that are there and ignores the counts: an answer.
		{"counts beyond the packet", append(hdr(7, 0, 1, 0xffff, 0xffff, 0xffff), q(0)...)},
		{"qdcount 0xffff", append(hdr(8, 0, 0xffff, 0, 0, 0), q(0)...)},
		{"rr with rdlength past the end", append(append(hdr(9, 0, 1, 1, 0, 0), q(0)...), 0, 0, 1, 0, 1, 0, 0, 0, 60, 0xff, 0xff, 1, 2)},
		{"random bytes", random},
	}
	check := func(t *testing.T, pkt, resp []byte) {
		if resp == nil {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(resp); err != nil {
			t.Fatalf("answer does not unpack: %v (%x)", err, resp)
		}
		if len(pkt) >= 2 && r.Id != binary.BigEndian.Uint16(pkt) {
			t.Errorf("answer id %d", r.Id)
		}
		if r.Rcode != dns.RcodeFormatError && r.Rcode != dns.RcodeNotImplemented && r.Rcode != dns.RcodeRefused {
			t.Errorf("rcode %s, want FORMERR (NOTIMP for an odd opcode, REFUSED for the root)", dns.RcodeToString[r.Rcode])
		}
		if len(resp) > max(len(pkt), 12)+300 {
			t.Errorf("%d-byte answer to %d bytes of garbage", len(resp), len(pkt))
		}
	}
	for _, tc := range tests {
		t.Run("udp/"+tc.name, func(t *testing.T) {
			resp := udpExchange(t, addr, tc.pkt, 300*time.Millisecond)
			check(t, tc.pkt, resp)
			verdict := "no answer"
			if resp != nil {
				r := new(dns.Msg)
				r.Unpack(resp)
				verdict = dns.RcodeToString[r.Rcode]
			}
			t.Logf("%s", verdict)
		})
		t.Run("tcp/"+tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			frame := append(binary.BigEndian.AppendUint16(nil, uint16(len(tc.pkt))), tc.pkt...)
			if _, err := c.Write(frame); err != nil {
				t.Fatal(err)
			}
			// The answer (if any) comes before the answer to a good query behind it, or the
			// server closes the connection.
			c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(goodWire))), goodWire...))
			var resp *dns.Msg
			for {
				r, err := readTCPMsg(c)
				if err != nil {
					if resp == nil && !errors.Is(err, io.EOF) && !isConnReset(err) {
						t.Fatalf("reading: %v", err)
					}
					break
				}
				if r.Id == good.Id && r.Rcode == dns.RcodeSuccess {
					break
				}
				if resp != nil {
					t.Fatalf("two answers to one malformed message")
				}
				resp = r
			}
			if resp != nil {
				b, _ := resp.Pack()
				check(t, tc.pkt, b)
			}
		})
	}
	t.Run("tcp/128 KiB of garbage", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		garbage := make([]byte, 2+65535+64<<10)
		rand.Read(garbage)
		garbage[0], garbage[1] = 0xff, 0xff // a 65535-byte message of random bytes, then 64 KiB more
		go c.Write(garbage)
		start := time.Now()
		c.SetReadDeadline(start.Add(idle + 2*time.Second))
		b, err := io.ReadAll(c)
		if err != nil && !isConnReset(err) {
			t.Fatalf("after 128 KiB of garbage: %v (%d bytes)", err, len(b))
		}
		t.Logf("128 KiB of garbage over TCP: %d bytes back, closed after %v (idle timeout %v)", len(b), time.Since(start).Round(time.Millisecond), idle)
	})
	t.Run("tcp/64 KiB of 0x00", func(t *testing.T) {
		// Zero-length frames one after another: each is an empty message, dropped.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go c.Write(make([]byte, 64<<10))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil && !isConnReset(err) {
			t.Fatalf("after 64 KiB of zeros: %v (%d bytes)", err, len(b))
		}
		t.Logf("64 KiB of zeros over TCP: %d bytes back", len(b))
	})
	// Still serving, over both transports.
	for _, network := range []string{"udp", "tcp"} {
		if r := exchange(t, network, addr, "example.com.", dns.TypeSOA, 0); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s after the garbage: %s", network, dns.RcodeToString[r.Rcode])
		}
	}
}

func bytesRepeat(b []byte, n int) []byte {
	var out []byte
	for range n {
		out = append(out, b...)
	}
	return out
}

func isConnReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

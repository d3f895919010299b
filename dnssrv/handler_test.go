package dnssrv

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// recorder is a dns.ResponseWriter that keeps what the handler writes, so that ServeDNS can be
// fuzzed and benchmarked without sockets.
type recorder struct {
	tcp  bool
	msgs []*dns.Msg
	wire []byte // the last message packed
}

var (
	localUDP  = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	localTCP  = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	remoteUDP = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	remoteTCP = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
)

func (w *recorder) LocalAddr() net.Addr {
	if w.tcp {
		return localTCP
	}
	return localUDP
}

func (w *recorder) RemoteAddr() net.Addr {
	if w.tcp {
		return remoteTCP
	}
	return remoteUDP
}

func (w *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.PackBuffer(w.wire[:cap(w.wire)]) // reuse the buffer: benchmarks count the handler's allocations
	if err != nil {
		return err
	}
	w.wire = b
	w.msgs = append(w.msgs, m)
	return nil
}

func (w *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (w *recorder) Close() error                { return nil }
func (w *recorder) TsigStatus() error           { return nil }
func (w *recorder) TsigTimersOnly(bool)         {}
func (w *recorder) Hijack()                     {}

// newTestServer returns a Server over the test zones that is not listening.
func newTestServer(t testing.TB) *Server {
	t.Helper()
	s, err := New(Config{Zones: testZones(t), Nameserver: "ns.sp.example"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServeDNSDirect(t *testing.T) {
	s := newTestServer(t)
	tests := []struct {
		name    string
		msg     *dns.Msg
		written bool
		rcode   int
	}{
		{"nil", nil, false, 0},
		{"response dropped", &dns.Msg{MsgHdr: dns.MsgHdr{Response: true},
			Question: []dns.Question{{Name: "example.com.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}}, false, 0},
		{"no question", &dns.Msg{}, true, dns.RcodeFormatError},
		{"relative qname", &dns.Msg{Question: []dns.Question{{Name: "example.com", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}},
			true, dns.RcodeSuccess},
		{"empty qname", &dns.Msg{Question: []dns.Question{{Name: "", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}},
			true, dns.RcodeRefused},
		// a\.b is one label, so the zone is example.com and the name does not exist.
		{"escaped dot in label", &dns.Msg{Question: []dns.Question{{Name: `a\.b.example.com.`, Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
			true, dns.RcodeNameError},
		// example\.com is a single label under the root: no zone.
		{"escaped apex", &dns.Msg{Question: []dns.Question{{Name: `example\.com.`, Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
			true, dns.RcodeRefused},
		{"upper case", &dns.Msg{Question: []dns.Question{{Name: `EXPE1.Example.COM.`, Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
			true, dns.RcodeSuccess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// answer, not ServeDNS: a relative qname, which never comes off the wire, cannot be packed.
			m, _ := s.answer(tc.msg, false)
			if (m != nil) != tc.written {
				t.Fatalf("answer = %v, want written=%v", m, tc.written)
			}
			if tc.written && m.Rcode != tc.rcode {
				t.Fatalf("rcode = %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
		})
	}
}

// badZones returns zones whose Origin differs from the apex asked for; the server must skip them.
type badZones struct{}

func (badZones) Zone(apex string) (*Zone, bool) {
	return &Zone{Origin: "a-much-longer-origin-than-any-query.example"}, true
}
func (badZones) Each(func(*Zone) bool) {}

func TestServeDNSInconsistentZones(t *testing.T) {
	s, err := New(Config{Zones: badZones{}})
	if err != nil {
		t.Fatal(err)
	}
	w := &recorder{}
	q := new(dns.Msg).SetQuestion("x.example.", dns.TypeA)
	s.ServeDNS(w, q)
	if len(w.msgs) != 1 || w.msgs[0].Rcode != dns.RcodeRefused {
		t.Fatalf("answer = %v, want REFUSED", w.msgs)
	}
}

func TestFitKeepsOPTLast(t *testing.T) {
	s := newTestServer(t)
	q := new(dns.Msg).SetQuestion("_collab-edge._tls.many.example.", dns.TypeSRV)
	q.SetEdns0(1232, true)
	w := &recorder{}
	s.ServeDNS(w, q)
	r := w.msgs[0]
	if r.Truncated || len(r.Answer) != manyTargets {
		t.Fatalf("tc=%v answers=%d", r.Truncated, len(r.Answer))
	}
	if len(w.wire) > 1232 {
		t.Fatalf("answer is %d bytes", len(w.wire))
	}
	last := r.Extra[len(r.Extra)-1]
	opt, ok := last.(*dns.OPT)
	if !ok || !opt.Do() {
		t.Fatalf("last additional = %v, want OPT with DO copied", last)
	}
}

func TestLowerASCII(t *testing.T) {
	for in, want := range map[string]string{"": "", "abc.": "abc.", "ExAmPle.COM.": "example.com.", `A\066.`: `a\066.`} {
		if got := lowerASCII(in); got != want {
			t.Errorf("lowerASCII(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitTXT(t *testing.T) {
	long := strings.Repeat("x", 600)
	got := splitTXT(long)
	if len(got) != 3 || len(got[0]) != 255 || len(got[2]) != 90 || strings.Join(got, "") != long {
		t.Fatalf("splitTXT(600 bytes) = %d parts", len(got))
	}
}

func TestAdditionalOnlyForServedTargets(t *testing.T) {
	zs, err := NewMapZones(&Zone{Origin: "c.example", SRV: []SRV{
		{Target: "edge.elsewhere.example", Port: 8443},
		{Target: "e.c.example", Port: 8443},
		{Target: "e.c.example", Port: 5061},
	}, Hosts: map[string][]netip.Addr{"e.c.example": {netip.MustParseAddr("192.0.2.7")}}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Zones: zs})
	if err != nil {
		t.Fatal(err)
	}
	w := &recorder{}
	s.ServeDNS(w, new(dns.Msg).SetQuestion("_collab-edge._tls.c.example.", dns.TypeSRV))
	r := w.msgs[0]
	if len(r.Answer) != 3 || len(r.Extra) != 1 || r.Extra[0].(*dns.A).A.String() != "192.0.2.7" {
		t.Fatalf("answer %v\nadditional %v, want 3 SRV and one A", r.Answer, r.Extra)
	}
}

// FuzzHandler feeds raw messages to ServeDNS, as the server does after unpacking, over both
// transports. Whatever comes in, the handler must not panic, must answer queries with their ID,
// and must fit UDP answers in the size the client allows.
func FuzzHandler(f *testing.F) {
	for _, q := range []*dns.Msg{
		new(dns.Msg).SetQuestion("_collab-edge._tls.example.com.", dns.TypeSRV),
		new(dns.Msg).SetQuestion("_cisco-uds._tcp.example.com.", dns.TypeSRV),
		new(dns.Msg).SetQuestion("expe1.example.com.", dns.TypeAAAA),
		new(dns.Msg).SetQuestion("_collab-edge._tls.many.example.", dns.TypeSRV).SetEdns0(512, true),
		new(dns.Msg).SetQuestion("example.com.", dns.TypeANY),
	} {
		b, err := q.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s := newTestServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(data); err != nil {
			return // the server answers FORMERR itself before any handler runs
		}
		for _, tcp := range []bool{false, true} {
			w := &recorder{tcp: tcp}
			s.ServeDNS(w, r)
			if r.Response {
				if len(w.msgs) != 0 {
					t.Fatalf("answered a response")
				}
				continue
			}
			if len(w.msgs) != 1 {
				t.Fatalf("wrote %d messages, want 1", len(w.msgs))
			}
			m := w.msgs[0]
			if m.Id != r.Id || !m.Response || m.RecursionAvailable {
				t.Fatalf("header %+v for query %d", m.MsgHdr, r.Id)
			}
			limit := dns.MaxMsgSize
			if !tcp {
				limit = dns.MinMsgSize
				if opt := r.IsEdns0(); opt != nil {
					limit = max(limit, min(int(opt.UDPSize()), DefaultMaxUDPSize))
				}
			}
			if len(w.wire) > limit {
				t.Fatalf("answer of %d bytes over limit %d", len(w.wire), limit)
			}
			back := new(dns.Msg)
			if err := back.Unpack(w.wire); err != nil {
				t.Fatalf("answer does not unpack: %v", err)
			}
		}
	})
}

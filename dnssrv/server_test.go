package dnssrv

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer starts a Server for zones on 127.0.0.1:0 and returns its address; the server is
// shut down when the test ends.
func startServer(t testing.TB, zones Zones, opts ...func(*Config)) string {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Zones: zones, Nameserver: "ns.sp.example"}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s.Addr()
}

// exchange sends one query with miekg's client over network; edns 0 means no OPT record.
func exchange(t testing.TB, network, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = false
	if edns > 0 {
		q.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

// rrStrings returns the records of sec without OPT, as text with the TTL and class cut off.
func rrStrings(sec []dns.RR) []string {
	var out []string
	for _, rr := range sec {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		h := rr.Header()
		out = append(out, h.Name+" "+dns.TypeToString[h.Rrtype]+" "+strings.TrimPrefix(rr.String(), h.String()))
	}
	return out
}

func TestServerAnswers(t *testing.T) {
	addr := startServer(t, testZones(t))
	const soaEx = "example.com. SOA ns.sp.example. hostmaster.example.com. 1 3600 600 86400 60"
	tests := []struct {
		name       string
		qname      string
		qtype      uint16
		rcode      int
		aa         bool
		answer     []string // exact answer section, in order
		authority  []string
		additional []string // must be present (subset)
	}{
		{name: "srv single tenant", qname: "_collab-edge._tls.example.com.", qtype: dns.TypeSRV, aa: true,
			answer: []string{
				"_collab-edge._tls.example.com. SRV 10 10 8443 expe1.example.com.",
				"_collab-edge._tls.example.com. SRV 20 5 8443 expe2.example.com.",
			},
			additional: []string{"expe1.example.com. A 198.51.100.1", "expe2.example.com. A 198.51.100.2"}},
		{name: "srv multitenant", qname: "_collab-edge._tls.tenant-1.example.", qtype: dns.TypeSRV, aa: true,
			answer:     []string{"_collab-edge._tls.tenant-1.example. SRV 10 10 8443 mra.sp.example."},
			additional: []string{"mra.sp.example. A 192.0.2.10", "mra.sp.example. AAAA 2001:db8::10"}},
		{name: "a", qname: "expe1.example.com.", qtype: dns.TypeA, aa: true,
			answer: []string{"expe1.example.com. A 198.51.100.1"}},
		{name: "aaaa", qname: "mra.sp.example.", qtype: dns.TypeAAAA, aa: true,
			answer: []string{"mra.sp.example. AAAA 2001:db8::10"}},
		{name: "aaaa nodata", qname: "expe1.example.com.", qtype: dns.TypeAAAA, aa: true, authority: []string{soaEx}},
		{name: "soa", qname: "example.com.", qtype: dns.TypeSOA, aa: true, answer: []string{soaEx}},
		{name: "ns", qname: "example.com.", qtype: dns.TypeNS, aa: true,
			answer:     []string{"example.com. NS ns.sp.example."},
			additional: []string{"ns.sp.example. A 192.0.2.53"}},
		{name: "cisco-uds nxdomain", qname: "_cisco-uds._tcp.example.com.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError,
			aa: true, authority: []string{soaEx}},
		{name: "cisco-uds nxdomain multitenant", qname: "_cisco-uds._tcp.tenant-1.example.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, aa: true,
			authority: []string{"tenant-1.example. SOA ns.sp.example. hostmaster.tenant-1.example. 1 3600 600 86400 60"}},
		{name: "unknown host nxdomain", qname: "nothere.example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError,
			aa: true, authority: []string{soaEx}},
		{name: "empty non-terminal nodata", qname: "_tls.example.com.", qtype: dns.TypeSRV, aa: true, authority: []string{soaEx}},
		{name: "srv name other type nodata", qname: "_collab-edge._tls.example.com.", qtype: dns.TypeA, aa: true,
			authority: []string{soaEx}},
		{name: "zone without srv nxdomain", qname: "_collab-edge._tls.bare.example.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, aa: true,
			authority: []string{"bare.example. SOA ns.sp.example. hostmaster.bare.example. 1 3600 600 86400 60"}},
		{name: "out of zone refused", qname: "www.google.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "parent of zone refused", qname: "example.", qtype: dns.TypeSOA, rcode: dns.RcodeRefused},
		{name: "root refused", qname: ".", qtype: dns.TypeNS, rcode: dns.RcodeRefused},
		{name: "any minimal", qname: "example.com.", qtype: dns.TypeANY, aa: true,
			answer: []string{`example.com. HINFO "RFC8482" ""`}},
		{name: "any nxdomain", qname: "nothere.example.com.", qtype: dns.TypeANY, rcode: dns.RcodeNameError, aa: true,
			authority: []string{soaEx}},
		{name: "uppercase qname", qname: "_COLLAB-EDGE._TLS.Example.COM.", qtype: dns.TypeSRV, aa: true,
			answer: []string{
				"_COLLAB-EDGE._TLS.Example.COM. SRV 10 10 8443 expe1.example.com.",
				"_COLLAB-EDGE._TLS.Example.COM. SRV 20 5 8443 expe2.example.com.",
			}},
		{name: "uppercase nxdomain", qname: "_CISCO-UDS._TCP.EXAMPLE.COM.", qtype: dns.TypeSRV, rcode: dns.RcodeNameError,
			aa: true, authority: []string{"EXAMPLE.COM. SOA ns.sp.example. hostmaster.example.com. 1 3600 600 86400 60"}},
		{name: "acme txt", qname: "_acme-challenge.example.com.", qtype: dns.TypeTXT, aa: true,
			answer: []string{`_acme-challenge.example.com. TXT "token-1"`}},
		{name: "axfr refused", qname: "example.com.", qtype: dns.TypeAXFR, rcode: dns.RcodeRefused},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				if tc.qtype == dns.TypeAXFR && network == "udp" {
					t.Skip("AXFR is a TCP query")
				}
				r := exchange(t, network, addr, tc.qname, tc.qtype, 1232)
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode = %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if r.Authoritative != tc.aa || r.RecursionAvailable || r.Truncated {
					t.Errorf("flags aa=%v ra=%v tc=%v, want aa=%v ra=false tc=false",
						r.Authoritative, r.RecursionAvailable, r.Truncated, tc.aa)
				}
				if len(r.Question) != 1 || r.Question[0].Name != tc.qname {
					t.Errorf("question = %v, want %s echoed", r.Question, tc.qname)
				}
				if got := rrStrings(r.Answer); strings.Join(got, "\n") != strings.Join(tc.answer, "\n") {
					t.Errorf("answer:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.answer, "\n"))
				}
				if got := rrStrings(r.Ns); strings.Join(got, "\n") != strings.Join(tc.authority, "\n") {
					t.Errorf("authority:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.authority, "\n"))
				}
				extra := strings.Join(rrStrings(r.Extra), "\n")
				for _, want := range tc.additional {
					if !strings.Contains(extra, want) {
						t.Errorf("additional lacks %q:\n%s", want, extra)
					}
				}
				if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != DefaultMaxUDPSize {
					t.Errorf("OPT = %v, want one advertising %d", opt, DefaultMaxUDPSize)
				}
				for _, rr := range append(r.Answer, r.Ns...) {
					if rr.Header().Ttl != 60 {
						t.Errorf("TTL of %v = %d, want 60", rr, rr.Header().Ttl)
					}
				}
			})
		}
	}
}

func TestServerTruncation(t *testing.T) {
	addr := startServer(t, testZones(t))
	const qname = "_collab-edge._tls.many.example."
	tests := []struct {
		name      string
		network   string
		edns      uint16
		tc        bool
		answers   int // exact when !tc
		fullExtra bool
	}{
		{name: "udp no edns", network: "udp", tc: true},
		{name: "udp edns 512", network: "udp", edns: 512, tc: true},
		{name: "udp edns below minimum", network: "udp", edns: 100, tc: true},
		// The 25 SRV fit in 1232 bytes but not all the additional A records: those are cut without TC.
		{name: "udp edns 4096 capped", network: "udp", edns: 4096, answers: manyTargets},
		{name: "tcp", network: "tcp", answers: manyTargets, fullExtra: true},
		{name: "tcp edns 512", network: "tcp", edns: 512, answers: manyTargets, fullExtra: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(t, tc.network, addr, qname, dns.TypeSRV, tc.edns)
			r.Compress = true // as the server packed it
			size := r.Len()
			if r.Truncated != tc.tc {
				t.Fatalf("TC = %v, want %v (%d answers, %d bytes)", r.Truncated, tc.tc, len(r.Answer), size)
			}
			limit := 512
			if tc.edns > 512 {
				limit = min(int(tc.edns), DefaultMaxUDPSize)
			}
			if tc.network == "udp" && size > limit {
				t.Errorf("UDP answer is %d bytes, client accepts %d", size, limit)
			}
			if tc.tc {
				return
			}
			if len(r.Answer) != tc.answers {
				t.Errorf("answers = %d, want %d", len(r.Answer), tc.answers)
			}
			extra := len(rrStrings(r.Extra))
			if tc.fullExtra && extra != manyTargets {
				t.Errorf("additional records = %d, want %d", extra, manyTargets)
			}
			if !tc.fullExtra && extra >= manyTargets {
				t.Errorf("additional records = %d, expected some cut to fit", extra)
			}
		})
	}
}

func TestServerOddQueries(t *testing.T) {
	addr := startServer(t, testZones(t))
	query := func() *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("_collab-edge._tls.example.com.", dns.TypeSRV)
		return m
	}
	tests := []struct {
		name  string
		msg   func() *dns.Msg
		rcode int
	}{
		{"no question", func() *dns.Msg { m := query(); m.Question = nil; return m }, dns.RcodeFormatError},
		{"two questions", func() *dns.Msg {
			m := query()
			m.Question = append(m.Question, dns.Question{Name: "example.com.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
			return m
		}, dns.RcodeFormatError},
		{"two OPT", func() *dns.Msg { m := query().SetEdns0(1232, false); m.SetEdns0(1232, false); return m }, dns.RcodeFormatError},
		{"opcode notify", func() *dns.Msg { m := query(); m.Opcode = dns.OpcodeNotify; return m }, dns.RcodeNotImplemented},
		{"opcode update", func() *dns.Msg { m := query(); m.Opcode = dns.OpcodeUpdate; return m }, dns.RcodeNotImplemented},
		{"opcode status", func() *dns.Msg { m := query(); m.Opcode = dns.OpcodeStatus; return m }, dns.RcodeNotImplemented},
		{"class chaos", func() *dns.Msg {
			m := new(dns.Msg)
			m.Question = []dns.Question{{Name: "version.bind.", Qtype: dns.TypeTXT, Qclass: dns.ClassCHAOS}}
			return m
		}, dns.RcodeRefused},
		{"class any", func() *dns.Msg { m := query(); m.Question[0].Qclass = dns.ClassANY; return m }, dns.RcodeRefused},
		{"edns version 1", func() *dns.Msg {
			m := query().SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			return m
		}, dns.RcodeBadVers},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				co, err := dns.Dial(network, addr)
				if err != nil {
					t.Fatal(err)
				}
				defer co.Close()
				co.SetDeadline(time.Now().Add(5 * time.Second))
				// A response sent to the server is dropped: the first answer read must be the
				// one to the query that follows it.
				resp := query()
				resp.Response, resp.Id = true, 1
				q := tc.msg()
				q.Id = 2
				if err := co.WriteMsg(resp); err != nil {
					t.Fatal(err)
				}
				if err := co.WriteMsg(q); err != nil {
					t.Fatal(err)
				}
				r, err := co.ReadMsg()
				if err != nil {
					t.Fatal(err)
				}
				if r.Id != 2 {
					t.Fatalf("got an answer to message %d, want only the one to 2", r.Id)
				}
				if !r.Response || r.Rcode != tc.rcode {
					t.Fatalf("QR=%v rcode = %s, want %s", r.Response, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if len(r.Answer) != 0 || r.Authoritative {
					t.Errorf("error answer has aa=%v and records %v", r.Authoritative, r.Answer)
				}
				if q.IsEdns0() != nil && r.IsEdns0() == nil {
					t.Errorf("query had EDNS0, answer has no OPT")
				}
			})
		}
	}
}

func TestServerDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (apt-get install dnsutils)")
	}
	host, port, _ := net.SplitHostPort(startServer(t, testZones(t)))
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"srv udp", []string{"_collab-edge._tls.example.com", "SRV"},
			[]string{"status: NOERROR", "flags: qr aa;", "10 10 8443 expe1.example.com.", "expe1.example.com. 60 IN A 198.51.100.1"}},
		{"srv tcp", []string{"+tcp", "_collab-edge._tls.tenant-1.example", "SRV"},
			[]string{"status: NOERROR", "10 10 8443 mra.sp.example.", "mra.sp.example. 60 IN AAAA 2001:db8::10"}},
		{"cisco-uds", []string{"_cisco-uds._tcp.example.com", "SRV"},
			[]string{"status: NXDOMAIN", "example.com. 60 IN SOA ns.sp.example. hostmaster.example.com. 1 3600 600 86400 60"}},
		{"aaaa nodata", []string{"expe1.example.com", "AAAA"}, []string{"status: NOERROR", "ANSWER: 0"}},
		{"refused", []string{"example.org", "A"}, []string{"status: REFUSED"}},
		{"truncated then tcp", []string{"+bufsize=512", "_collab-edge._tls.many.example", "SRV"},
			[]string{"Truncated, retrying in TCP mode", "ANSWER: 25"}},
		{"any", []string{"example.com", "ANY"}, []string{`example.com. 60 IN HINFO "RFC8482" ""`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			args := append([]string{"@" + host, "-p", port, "+norec", "+time=2", "+tries=1", "+nocookie", "+nottlunits"}, tc.args...)
			out, err := exec.CommandContext(ctx, dig, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("dig %v: %v\n%s", args, err, out)
			}
			text := strings.Join(strings.Fields(string(out)), " ")
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("dig %v output lacks %q:\n%s", tc.args, w, out)
				}
			}
		})
	}
}

func TestServerLifecycle(t *testing.T) {
	zs := testZones(t)
	s, err := New(Config{Addr: "127.0.0.1:0", Zones: zs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Shutdown(ctx); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Shutdown before Start = %v, want ErrNotStarted", err)
	}
	if s.Addr() != "" {
		t.Fatalf("Addr before Start = %q", s.Addr())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start = %v, want ErrStarted", err)
	}
	// UDP and TCP share the port Addr reports.
	for _, network := range []string{"udp", "tcp"} {
		if r := exchange(t, network, s.Addr(), "example.com.", dns.TypeSOA, 0); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s SOA rcode %s", network, dns.RcodeToString[r.Rcode])
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.Shutdown(ctx); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("second Shutdown = %v, want ErrNotStarted", err)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Fatalf("Start after Shutdown = %v, want ErrStarted", err)
	}
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Fatalf("TCP still accepts after Shutdown")
	}
}

func TestServerPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := New(Config{Addr: ln.Addr().String(), Zones: testZones(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		s.Shutdown(context.Background())
		t.Fatalf("Start on a taken TCP port succeeded")
	}
}

func TestNewConfig(t *testing.T) {
	zs := testZones(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no zones", Config{}},
		{"bad addr", Config{Zones: zs, Addr: "localhost"}},
		{"bad nameserver", Config{Zones: zs, Nameserver: "ns.example."}},
		{"sub-second ttl", Config{Zones: zs, TTL: time.Millisecond}},
		{"negative ttl", Config{Zones: zs, TTL: -time.Second}},
		{"negative idle", Config{Zones: zs, TCPIdleTimeout: -1}},
		{"udp size small", Config{Zones: zs, MaxUDPSize: 100}},
		{"udp size large", Config{Zones: zs, MaxUDPSize: 70000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("New = %v, want ErrBadConfig", err)
			}
		})
	}
	s, err := New(Config{Zones: zs})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Addr != DefaultAddr || s.cfg.Nameserver != DefaultNameserver || s.cfg.TTL != DefaultTTL ||
		s.cfg.TCPIdleTimeout != DefaultTCPIdleTimeout || s.cfg.MaxUDPSize != DefaultMaxUDPSize || s.ttl != 60 {
		t.Fatalf("defaults not applied: %+v", s.cfg)
	}
}

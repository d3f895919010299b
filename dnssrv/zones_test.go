package dnssrv

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// manyTargets is the number of SRV targets of many.example, enough to overflow a 512-byte answer.
const manyTargets = 25

// testZones returns the fixture served by the tests:
//
//	sp.example       the provider: mra (v4+v6), mra2 (v4), ns (v4)
//	example.com      single tenant: two SRV targets in the zone, v4 only; an ACME TXT
//	tenant-1.example multitenant: SRV target mra.sp.example
//	many.example     manyTargets SRV targets with an A each
//	bare.example     a zone with no SRV
func testZones(t testing.TB) *MapZones {
	t.Helper()
	many := &Zone{Origin: "many.example", Hosts: map[string][]netip.Addr{}}
	for i := range manyTargets {
		h := fmt.Sprintf("host-%02d.many.example", i)
		many.SRV = append(many.SRV, SRV{Target: h, Port: 8443, Priority: 10, Weight: uint16(i)})
		many.Hosts[h] = []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}
	}
	zs, err := NewMapZones(
		&Zone{Origin: "sp.example", Hosts: map[string][]netip.Addr{
			"mra.sp.example":  {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
			"mra2.sp.example": {netip.MustParseAddr("192.0.2.11")},
			"ns.sp.example":   {netip.MustParseAddr("192.0.2.53")},
		}},
		&Zone{Origin: "example.com",
			SRV: []SRV{
				{Target: "expe1.example.com", Port: 8443, Priority: 10, Weight: 10},
				{Target: "expe2.example.com", Port: 8443, Priority: 20, Weight: 5},
			},
			Hosts: map[string][]netip.Addr{
				"expe1.example.com": {netip.MustParseAddr("198.51.100.1")},
				"expe2.example.com": {netip.MustParseAddr("198.51.100.2")},
			},
			TXT: map[string][]string{"_acme-challenge.example.com": {"token-1"}},
		},
		&Zone{Origin: "tenant-1.example", SRV: []SRV{{Target: "mra.sp.example", Port: 8443, Priority: 10, Weight: 10}}},
		many,
		&Zone{Origin: "bare.example"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return zs
}

func TestZoneValidate(t *testing.T) {
	addr := []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	tests := []struct {
		name string
		zone *Zone
		ok   bool
	}{
		{"minimal", &Zone{Origin: "example.com"}, true},
		{"full", &Zone{Origin: "example.com", SRV: []SRV{{Target: "mra.sp.example", Port: 8443}},
			Hosts: map[string][]netip.Addr{"example.com": addr, "a.b.example.com": addr},
			TXT:   map[string][]string{"_acme-challenge.example.com": {"x"}}}, true},
		{"nil", nil, false},
		{"empty origin", &Zone{}, false},
		{"trailing dot", &Zone{Origin: "example.com."}, false},
		{"upper case", &Zone{Origin: "Example.com"}, false},
		{"empty label", &Zone{Origin: "example..com"}, false},
		{"srv target address", &Zone{Origin: "example.com", SRV: []SRV{{Target: "192.0.2.1"}}}, false},
		{"srv target empty", &Zone{Origin: "example.com", SRV: []SRV{{}}}, false},
		{"host outside zone", &Zone{Origin: "example.com", Hosts: map[string][]netip.Addr{"example.org": addr}}, false},
		{"host suffix but not below", &Zone{Origin: "example.com", Hosts: map[string][]netip.Addr{"badexample.com": addr}}, false},
		{"invalid address", &Zone{Origin: "example.com", Hosts: map[string][]netip.Addr{"a.example.com": {{}}}}, false},
		{"txt outside zone", &Zone{Origin: "example.com", TXT: map[string][]string{"example.net": {"x"}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.zone.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrBadZone) {
				t.Fatalf("Validate = %v, want ErrBadZone", err)
			}
		})
	}
}

func TestMapZones(t *testing.T) {
	zs := testZones(t)
	if got := zs.Len(); got != 5 {
		t.Fatalf("Len = %d, want 5", got)
	}
	if z, ok := zs.Zone("example.com"); !ok || z.Origin != "example.com" {
		t.Fatalf("Zone(example.com) = %v, %v", z, ok)
	}
	for _, miss := range []string{"example.org", "www.example.com", "com", "EXAMPLE.COM", "example.com."} {
		if _, ok := zs.Zone(miss); ok {
			t.Errorf("Zone(%q) found a zone", miss)
		}
	}
	var order []string
	zs.Each(func(z *Zone) bool { order = append(order, z.Origin); return true })
	want := []string{"bare.example", "example.com", "many.example", "sp.example", "tenant-1.example"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("Each order = %v, want %v", order, want)
	}
	n := 0
	zs.Each(func(*Zone) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("Each went on after false: %d calls", n)
	}
	if _, err := NewMapZones(&Zone{Origin: "a.example"}, &Zone{Origin: "a.example"}); !errors.Is(err, ErrBadZone) {
		t.Fatalf("duplicate apex: err = %v, want ErrBadZone", err)
	}
}

func TestZoneExists(t *testing.T) {
	zs := testZones(t)
	ex, _ := zs.Zone("example.com")
	bare, _ := zs.Zone("bare.example")
	tests := []struct {
		zone *Zone
		name string
		want bool
	}{
		{ex, "example.com", true},
		{ex, "_collab-edge._tls.example.com", true},
		{ex, "_tls.example.com", true}, // empty non-terminal
		{ex, "expe1.example.com", true},
		{ex, "_acme-challenge.example.com", true},
		{ex, "_cisco-uds._tcp.example.com", false},
		{ex, "_tcp.example.com", false},
		{ex, "x._collab-edge._tls.example.com", false},
		{ex, "xpe1.example.com", false},
		{bare, "_collab-edge._tls.bare.example", false},
		{bare, "_tls.bare.example", false},
	}
	for _, tc := range tests {
		if got := tc.zone.exists(tc.name); got != tc.want {
			t.Errorf("exists(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	deep := &Zone{Origin: "d.example", Hosts: map[string][]netip.Addr{"a.b.c.d.example": nil}}
	for _, n := range []string{"b.c.d.example", "c.d.example"} {
		if !deep.exists(n) {
			t.Errorf("empty non-terminal %s does not exist", n)
		}
	}
}

// synthZones serves tenant-<k>.example for k < n, building each zone on demand, as a Zones for a
// million tenants would; sp.example is the provider zone.
type synthZones struct {
	n        int
	provider *Zone
}

func newSynthZones(n int) synthZones {
	return synthZones{n: n, provider: &Zone{Origin: "sp.example", Hosts: map[string][]netip.Addr{
		"mra.sp.example": {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
	}}}
}

var synthSRV = []SRV{{Target: "mra.sp.example", Port: 8443, Priority: 10, Weight: 10}}

func (s synthZones) Zone(apex string) (*Zone, bool) {
	if apex == s.provider.Origin {
		return s.provider, true
	}
	num, ok := strings.CutPrefix(apex, "tenant-")
	if num, ok = strings.CutSuffix(num, ".example"); !ok {
		return nil, false
	}
	k, err := strconv.Atoi(num)
	if err != nil || k < 0 || k >= s.n || strconv.Itoa(k) != num {
		return nil, false
	}
	return &Zone{Origin: apex, SRV: synthSRV}, true
}

func (s synthZones) Each(fn func(*Zone) bool) {
	if !fn(s.provider) {
		return
	}
	for k := range s.n {
		if !fn(&Zone{Origin: "tenant-" + strconv.Itoa(k) + ".example", SRV: synthSRV}) {
			return
		}
	}
}

func TestSyntheticMillionZones(t *testing.T) {
	s, err := New(Config{Zones: newSynthZones(1_000_000), Nameserver: "ns.sp.example"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		qname string
		rcode int
		n     int
	}{
		{"_collab-edge._tls.tenant-0.example.", dns.RcodeSuccess, 1},
		{"_collab-edge._tls.tenant-999999.example.", dns.RcodeSuccess, 1},
		{"_cisco-uds._tcp.tenant-999999.example.", dns.RcodeNameError, 0},
		{"_collab-edge._tls.tenant-1000000.example.", dns.RcodeRefused, 0},
		{"_collab-edge._tls.tenant-01.example.", dns.RcodeRefused, 0},
	}
	for _, tc := range tests {
		w := &recorder{}
		s.ServeDNS(w, new(dns.Msg).SetQuestion(tc.qname, dns.TypeSRV))
		if r := w.msgs[0]; r.Rcode != tc.rcode || len(r.Answer) != tc.n {
			t.Errorf("%s: rcode %s, %d answers; want %s, %d", tc.qname, dns.RcodeToString[r.Rcode], len(r.Answer),
				dns.RcodeToString[tc.rcode], tc.n)
		}
	}
}

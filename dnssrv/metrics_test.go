package dnssrv

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// counterValue returns edgesim_dns_queries_total for the labels, or -1 if there is no series.
func counterValue(t *testing.T, reg *prometheus.Registry, qtype, rcode, proto string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "edgesim_dns_queries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["qtype"] == qtype && l["rcode"] == rcode && l["proto"] == proto {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	zs := testZones(t)
	s1, err := New(Config{Zones: zs, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	// A second server on the same registry shares the collectors.
	s2, err := New(Config{Zones: zs, Registerer: reg})
	if err != nil {
		t.Fatalf("second server on one registry: %v", err)
	}
	ask := func(s *Server, tcp bool, m *dns.Msg) { s.ServeDNS(&recorder{tcp: tcp}, m) }
	ask(s1, false, new(dns.Msg).SetQuestion("_collab-edge._tls.example.com.", dns.TypeSRV))
	ask(s2, false, new(dns.Msg).SetQuestion("_collab-edge._tls.tenant-1.example.", dns.TypeSRV))
	ask(s1, true, new(dns.Msg).SetQuestion("_cisco-uds._tcp.example.com.", dns.TypeSRV))
	ask(s1, false, new(dns.Msg).SetQuestion("example.org.", dns.TypeMX))
	ask(s1, false, &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}}) // dropped, not counted

	tests := []struct {
		qtype, rcode, proto string
		want                float64
	}{
		{"SRV", "NOERROR", "udp", 2},
		{"SRV", "NXDOMAIN", "tcp", 1},
		{"other", "REFUSED", "udp", 1},
		{"A", "NOERROR", "udp", 0},
		{"other", "FORMERR", "udp", 0},
	}
	for _, tc := range tests {
		if got := counterValue(t, reg, tc.qtype, tc.rcode, tc.proto); got != tc.want {
			t.Errorf("queries_total{qtype=%s,rcode=%s,proto=%s} = %v, want %v", tc.qtype, tc.rcode, tc.proto, got, tc.want)
		}
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "edgesim_dns_request_duration_seconds" {
			for _, m := range mf.GetMetric() {
				found = found || m.GetHistogram().GetSampleCount() > 0
			}
		}
	}
	if !found {
		t.Error("no edgesim_dns_request_duration_seconds samples")
	}
}

func TestMetricIndexes(t *testing.T) {
	if qtypeIndex(dns.TypeMX) != qtOther || qtypeLabels[qtypeIndex(dns.TypeAAAA)] != "AAAA" {
		t.Fatal("qtype index")
	}
	if rcodeLabel(rcodeIndex(dns.RcodeBadVers)) != "BADVERS" || rcodeLabel(rcodeIndex(dns.RcodeYXDomain)) != "other" {
		t.Fatal("rcode index")
	}
}

// TestMetricsMalformed: a query that does not unpack is answered FORMERR and counted the same on
// UDP (the server's own loop) and TCP (miekg/dns answers it); one shorter than a header gets
// nothing and is not counted.
func TestMetricsMalformed(t *testing.T) {
	reg := prometheus.NewRegistry()
	addr := startServer(t, testZones(t), func(c *Config) { c.Registerer = reg })
	bad := []byte{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0} // a question cut off
	for _, network := range []string{"udp", "tcp"} {
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		msg := bad
		if network == "tcp" {
			msg = append([]byte{0, byte(len(bad))}, bad...)
		}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		c.Close()
		if network == "tcp" && err == nil && n >= 2 {
			buf, n = buf[2:], n-2
		}
		var r dns.Msg
		if err != nil || r.Unpack(buf[:n]) != nil || r.Rcode != dns.RcodeFormatError {
			t.Fatalf("%s: want a FORMERR answer, got %v (%v)", network, &r, err)
		}
		// The count lands after the answer is written.
		deadline := time.Now().Add(2 * time.Second)
		for counterValue(t, reg, "other", "FORMERR", network) != 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := counterValue(t, reg, "other", "FORMERR", network); got != 1 {
			t.Errorf("queries_total{qtype=other,rcode=FORMERR,proto=%s} = %v, want 1", network, got)
		}
	}
}

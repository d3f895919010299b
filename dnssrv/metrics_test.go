package dnssrv

import (
	"testing"

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

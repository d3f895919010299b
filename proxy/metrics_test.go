package proxy

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsLintAndPreBound(t *testing.T) {
	te := startEdge(t, nil)
	problems, err := testutil.GatherAndLint(te.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	// Series exist before any traffic, so dashboards show zeros rather than gaps.
	want := map[string]int{
		"edgesim_tls_handshake_duration_seconds":   numListeners * (len(tlsVersionNames) + 2),
		"edgesim_tls_handshakes_total":             numListeners * 3,
		"edgesim_tls_resumed_handshakes_total":     numListeners,
		"edgesim_proxy_open_connections":           numListeners,
		"edgesim_proxy_connections_rejected_total": numListeners,
		"edgesim_http_requests_total":              len(httpCodes),
		"edgesim_sip_requests_total":               len(sipMethods) * len(sipCodes),
		"edgesim_xmpp_logins_total":                2,
		"edgesim_xmpp_bound_streams_total":         1,
	}
	mfs, err := te.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s: %d series, want %d", name, got[name], n)
		}
	}
}

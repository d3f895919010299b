package proxy

import (
	"context"
	"crypto/tls"
	"testing"

	"go.uber.org/goleak"
)

// TestShutdownLeavesNoGoroutines: once Shutdown returns, no goroutine of the edge is left,
// neither the listeners' accept loops nor those of the connections that were open on each
// listener (a SIP dialog, a bound XMPP stream, an HTTPS keep-alive connection).
func TestShutdownLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	te := startEdge(t, nil)

	sip, err := tls.Dial("tcp", te.sip, te.pki.clientTLS("mra-host.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer sip.Close()
	sipRoundTrip(t, sip, sipOptions("leak"))
	xmpp := xmppLogin(t, te, "bob", "any")
	defer xmpp.conn.Close()
	if resp, _ := te.get(t, "GET", "/ZXhhbXBsZS5jb20/get_edge_config", "bob", "x"); resp.StatusCode != 200 {
		t.Fatalf("get_edge_config: status %d", resp.StatusCode)
	}

	if err := te.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	sip.Close()
	xmpp.conn.Close()
	goleak.VerifyNone(t, before)
}

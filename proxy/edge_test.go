package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesim/edgesim/tenant"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// testPKI is an ECDSA CA with leaf certificates keyed by SNI host and a platform fallback.
type testPKI struct {
	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	pool     *x509.CertPool
	certs    map[string]*tls.Certificate
	platform *tls.Certificate
}

func newTestPKI(tb testing.TB) *testPKI {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edgesim test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	p := &testPKI{ca: ca, caKey: key, pool: x509.NewCertPool(), certs: map[string]*tls.Certificate{}}
	p.pool.AddCert(ca)
	// Domain certificates as edgesim issues them: the SNI host plus the service domain.
	p.certs["mra-host.example.com"] = p.leaf(tb, "mra-host.example.com", "example.com")
	p.certs["expe1.single.example"] = p.leaf(tb, "expe1.single.example", "single.example")
	p.platform = p.leaf(tb, "mra-host.sp.com")
	return p
}

func (p *testPKI) leaf(tb testing.TB, names ...string) *tls.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// getCertificate is a minimal SNI store: exact name, else the platform certificate.
func (p *testPKI) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c, ok := p.certs[strings.ToLower(hello.ServerName)]; ok {
		return c, nil
	}
	return p.platform, nil
}

// clientTLS is what a Jabber client for example.com uses against the edge.
func (p *testPKI) clientTLS(serverName string) *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: serverName}
}

// caFile writes the CA as PEM for external tools.
func (p *testPKI) caFile(tb testing.TB) string {
	path := filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.Raw}), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func testTenants(tb testing.TB) tenant.Directory {
	tb.Helper()
	d, err := tenant.Config{
		Provider: tenant.Provider{EdgeHost: "mra-host.sp.com"},
		Tenants: []tenant.Tenant{
			{Domain: "example.com", Users: []string{"bob", "alice"}, Passwords: map[string]string{"alice": "secret"}},
			{Domain: "single.example", Users: []string{"carol"}, EdgeHost: "expe1.single.example"},
		},
	}.Directory()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// testEdge is a running Edge on loopback with its PKI and metrics registry.
type testEdge struct {
	*Edge
	pki   *testPKI
	reg   *prometheus.Registry
	https string
	xmpp  string
	sip   string
}

// startEdge starts an Edge on 127.0.0.1 port 0; the listeners are bound when New returns, so
// clients can connect at once. It is shut down when the test ends.
func startEdge(tb testing.TB, mutate func(*Config)) *testEdge {
	tb.Helper()
	pki := newTestPKI(tb)
	reg := prometheus.NewRegistry()
	cfg := Config{
		HTTPSAddr: "127.0.0.1:0", XMPPAddr: "127.0.0.1:0", SIPAddr: "127.0.0.1:0",
		GetCertificate: pki.getCertificate,
		Tenants:        testTenants(tb),
		Registerer:     reg,
	}
	if t, ok := tb.(*testing.T); ok {
		cfg.Logger = zaptest.NewLogger(t)
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	e.Start()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
	})
	h, x, s := e.Addrs()
	return &testEdge{Edge: e, pki: pki, reg: reg, https: h.String(), xmpp: x.String(), sip: s.String()}
}

func (te *testEdge) port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n := 0
	for _, c := range p {
		n = n*10 + int(c-'0')
	}
	return n
}

// counter reads one series of a vector from the registry.
func (te *testEdge) metric(tb testing.TB, name string, labels ...string) float64 {
	tb.Helper()
	mfs, err := te.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// expectClosed reads from c until the edge closes it, failing after 5s.
func expectClosed(tb testing.TB, c net.Conn) []byte {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		tb.Fatalf("want the edge to close the connection, got %v after %q", err, b)
	}
	return b
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func TestNewValidates(t *testing.T) {
	pki := newTestPKI(t)
	dir := testTenants(t)
	ok := func() Config {
		return Config{HTTPSAddr: "127.0.0.1:0", XMPPAddr: "127.0.0.1:0", SIPAddr: "127.0.0.1:0",
			GetCertificate: pki.getCertificate, Tenants: dir}
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no GetCertificate", func(c *Config) { c.GetCertificate = nil }, "GetCertificate is required"},
		{"no Tenants", func(c *Config) { c.Tenants = nil }, "Tenants is required"},
		{"bad port", func(c *Config) { c.AdvertisedPorts.SIP = 70000 }, "AdvertisedPorts.SIP 70000"},
		{"versions", func(c *Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS13, tls.VersionTLS12 }, "MinVersion"},
		{"negative timeout", func(c *Config) { c.IdleTimeout = -1 }, "IdleTimeout"},
		{"negative conns", func(c *Config) { c.MaxConns = -1 }, "MaxConns"},
		{"bad edge host", func(c *Config) { c.EdgeHost = "no_such host" }, "EdgeHost"},
		{"address in use", func(c *Config) { c.XMPPAddr = busy.Addr().String() }, "XMPPAddr " + busy.Addr().String()},
		{"bad address", func(c *Config) { c.SIPAddr = "127.0.0.1:http-nope" }, "SIPAddr 127.0.0.1:http-nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mutate(&c)
			e, err := New(c)
			if err == nil {
				e.Shutdown(context.Background())
				t.Fatal("New accepted a bad config")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	// The bad-address cases released the listeners bound before the failing one.
	e, err := New(ok())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown of a never-started edge: %v", err)
	}
	if err := e.Serve(); err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func TestNewSharedRegistererCollides(t *testing.T) {
	reg := prometheus.NewRegistry()
	startEdge(t, func(c *Config) { c.Registerer = reg })
	pki := newTestPKI(t)
	_, err := New(Config{HTTPSAddr: "127.0.0.1:0", XMPPAddr: "127.0.0.1:0", SIPAddr: "127.0.0.1:0",
		GetCertificate: pki.getCertificate, Tenants: testTenants(t), Registerer: reg})
	if err == nil || !strings.Contains(err.Error(), "own Registerer") {
		t.Fatalf("second Edge on one registry: err = %v", err)
	}
}

func TestHandshakeTimeoutClosesSilentConn(t *testing.T) {
	te := startEdge(t, func(c *Config) { c.HandshakeTimeout = 150 * time.Millisecond })
	for _, addr := range []string{te.sip, te.https, te.xmpp} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		expectClosed(t, c) // the edge closes; the client never sends a byte
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s: closed after %v, want about the handshake timeout", addr, d)
		}
		c.Close()
	}
	for _, ln := range []string{"sip", "https"} {
		if got := te.metric(t, "edgesim_tls_handshakes_total", "listener", ln, "result", "timeout"); got != 1 {
			t.Errorf("%s timeouts = %v, want 1", ln, got)
		}
		if got := te.metric(t, "edgesim_tls_handshake_duration_seconds", "listener", ln, "version", "none", "result", "timeout"); got != 1 {
			t.Errorf("%s timeout observations = %v, want 1", ln, got)
		}
	}
}

func TestMaxConnsRejects(t *testing.T) {
	te := startEdge(t, func(c *Config) { c.MaxConns = 1 })
	first, err := tls.Dial("tcp", te.sip, te.pki.clientTLS("mra-host.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := net.Dial("tcp", te.sip)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if b := expectClosed(t, second); len(b) != 0 {
		t.Errorf("rejected conn got %q", b)
	}
	if got := testutil.ToFloat64(te.m.ln[lnSIP].rejected); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
	if got := te.metric(t, "edgesim_proxy_connections_rejected_total", "listener", "sip"); got != 1 {
		t.Errorf("edgesim_proxy_connections_rejected_total{listener=sip} = %v, want 1", got)
	}
	if got := te.metric(t, "edgesim_proxy_open_connections", "listener", "sip"); got != 1 {
		t.Errorf("open sip connections = %v, want 1", got)
	}
	// The first connection still works.
	if resp := sipRoundTrip(t, first, sipOptions("a1")); !strings.HasPrefix(resp.status, "SIP/2.0 200") {
		t.Errorf("first conn: %q", resp.status)
	}
}

func TestShutdownDrains(t *testing.T) {
	te := startEdge(t, nil)

	// Idle SIP connection: answered once, now waiting.
	idleSIP, err := tls.Dial("tcp", te.sip, te.pki.clientTLS("mra-host.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer idleSIP.Close()
	sipRoundTrip(t, idleSIP, sipOptions("s1"))

	// Idle XMPP stream, bound.
	idleXMPP := xmppLogin(t, te, "bob", "any")
	defer idleXMPP.conn.Close()

	// Idle HTTPS keep-alive connection.
	idleHTTP, err := tls.Dial("tcp", te.https, te.pki.clientTLS("mra-host.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer idleHTTP.Close()
	br := bufio.NewReader(idleHTTP)
	if resp := httpOverConn(t, idleHTTP, br, "/ZXhhbXBsZS5jb20/get_edge_config", "bob", "x"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}

	// In-flight XMPP connection: before STARTTLS, which is never idle.
	busy := xmppDial(t, te.xmpp)
	defer busy.conn.Close()
	busy.send(streamOpen("example.com"))
	busy.header()
	busy.element() // features

	done := make(chan error, 1)
	go func() { done <- te.Shutdown(context.Background()) }()

	if b := expectClosed(t, idleSIP); len(b) != 0 {
		t.Errorf("idle SIP conn got %q before closing", b)
	}
	if b := expectClosed(t, idleXMPP.conn); !strings.Contains(string(b), "<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") {
		t.Errorf("idle XMPP stream got %q, want a system-shutdown stream error", b)
	}
	idleHTTP.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Error("idle HTTPS conn still open")
	}

	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a connection was in its handshake", err)
	default:
	}
	// The in-flight stream finishes STARTTLS and its handshake, then meets the shutdown.
	busy.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	if el := busy.element(); el.XMLName.Local != "proceed" {
		t.Fatalf("got %v", el.XMLName)
	}
	busy.startTLS(te.pki.clientTLS("mra-host.example.com"))
	busy.send(streamOpen("example.com"))
	if b := expectClosed(t, busy.conn); !strings.Contains(string(b), "system-shutdown") {
		t.Errorf("in-flight stream got %q", b)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := te.metric(t, "edgesim_tls_handshakes_total", "listener", "xmpp", "result", "ok"); got != 2 {
		t.Errorf("xmpp handshakes = %v, want 2", got)
	}
	for i := range te.ln {
		if n := te.ln[i].open.Load(); n != 0 {
			t.Errorf("%s: %d connections still counted open", listenerNames[i], n)
		}
	}
	if c, err := net.Dial("tcp", te.sip); err == nil {
		c.Close()
		t.Error("SIP listener still accepts after Shutdown")
	}
}

func TestShutdownContextEnds(t *testing.T) {
	te := startEdge(t, nil)
	idle, err := tls.Dial("tcp", te.sip, te.pki.clientTLS("mra-host.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	sipRoundTrip(t, idle, sipOptions("c1"))
	stuck := xmppDial(t, te.xmpp) // stays before STARTTLS
	defer stuck.conn.Close()
	stuck.send(streamOpen("example.com"))
	stuck.header()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- te.Shutdown(ctx) }()
	expectClosed(t, idle) // shutdown has begun
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	expectClosed(t, stuck.conn)
}

func TestIdleTimeout(t *testing.T) {
	te := startEdge(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	x := xmppLogin(t, te, "bob", "x")
	defer x.conn.Close()
	if got := string(expectClosed(t, x.conn)); !strings.Contains(got, "<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") {
		t.Errorf("idle XMPP stream got %q", got)
	}
	s, err := tls.Dial("tcp", te.sip, te.pki.clientTLS("mra-host.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sipRoundTrip(t, s, sipOptions("idle"))
	if b := expectClosed(t, s); len(b) != 0 {
		t.Errorf("idle SIP conn got %q", b)
	}
}

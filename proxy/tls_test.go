package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"
)

func TestTLSSettings(t *testing.T) {
	te := startEdge(t, nil)
	tests := []struct {
		name    string
		tweak   func(*tls.Config)
		ok      bool
		version uint16
		curve   tls.CurveID
	}{
		{"default client", func(*tls.Config) {}, true, tls.VersionTLS13, tls.X25519},
		{"P-256 only", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP256} }, true, tls.VersionTLS13, tls.CurveP256},
		{"TLS 1.2", func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, true, tls.VersionTLS12, tls.X25519},
		{"hybrid post-quantum only", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768} }, false, 0, 0},
		{"TLS 1.1", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS11, tls.VersionTLS11 }, false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := te.pki.clientTLS("mra-host.example.com")
			tt.tweak(cfg)
			c, err := tls.Dial("tcp", te.sip, cfg)
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if st.Version != tt.version || st.CurveID != tt.curve {
				t.Errorf("version %#x curve %v, want %#x %v", st.Version, st.CurveID, tt.version, tt.curve)
			}
		})
	}
	// SNI selection: an unknown name gets the platform certificate.
	cfg := te.pki.clientTLS("mra-host.sp.com")
	cfg.NextProtos = []string{"h2", "http/1.1"}
	c, err := tls.Dial("tcp", te.https, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ConnectionState().PeerCertificates[0].DNSNames[0]; got != "mra-host.sp.com" {
		t.Errorf("platform certificate names %q", got)
	}
	if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("HTTPS ALPN %q", p)
	}
	c.Close()
	if err := te.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := te.metric(t, "edgesim_tls_handshakes_total", "listener", "sip", "result", "error"); got != 2 {
		t.Errorf("failed sip handshakes = %v, want 2", got)
	}
	if got := te.metric(t, "edgesim_tls_handshake_duration_seconds", "listener", "sip", "version", "1.2", "result", "ok"); got != 1 {
		t.Errorf("TLS 1.2 observations = %v, want 1", got)
	}
}

// A session ticket from the HTTPS listener resumes on the SIP listener: one ticket key is shared.
func TestSessionResumption(t *testing.T) {
	te := startEdge(t, nil)
	cfg := te.pki.clientTLS("mra-host.example.com")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	first, err := tls.Dial("tcp", te.https, cfg)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(first)
	httpOverConn(t, first, br, "/ZXhhbXBsZS5jb20/get_edge_config", "bob", "x") // reads the TLS 1.3 ticket too
	first.Close()

	for _, addr := range []string{te.https, te.sip} {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !c.ConnectionState().DidResume {
			t.Errorf("%s: no resumption", addr)
		}
		if addr == te.https { // fetch a fresh ticket for the next dial
			httpOverConn(t, c, bufio.NewReader(c), "/ZXhhbXBsZS5jb20/get_edge_config", "bob", "x")
		}
		c.Close()
	}
	if err := te.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	resumed := te.metric(t, "edgesim_tls_resumed_handshakes_total", "listener", "https") +
		te.metric(t, "edgesim_tls_resumed_handshakes_total", "listener", "sip")
	if resumed != 2 {
		t.Errorf("resumed handshakes = %v, want 2", resumed)
	}
}

// BenchmarkHandshake measures full TLS 1.3 handshakes (ECDSA P-256 certificate, X25519) through
// the real SIP listener over loopback, client and server in this process. Compare CPU per
// handshake with nginx on the same certificate: go test -bench Handshake -cpuprofile cpu.out.
func BenchmarkHandshake(b *testing.B) {
	te := startEdge(b, nil)
	cfg := te.pki.clientTLS("mra-host.example.com")
	cfg.MinVersion = tls.VersionTLS13
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	dialer := &net.Dialer{}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		raw, err := dialer.Dial("tcp", te.sip)
		if err != nil {
			b.Fatal(err)
		}
		c := tls.Client(raw, cfg)
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		raw.Close()
	}
	b.StopTimer()
	if n := te.metric(b, "edgesim_tls_handshakes_total", "listener", "sip", "result", "error"); n > 0 {
		b.Logf("%v server handshakes failed (client closed before the server finished)", n)
	}
}

func BenchmarkHandshakeParallel(b *testing.B) {
	te := startEdge(b, func(c *Config) { c.MaxConns = 1 << 20 })
	cfg := te.pki.clientTLS("mra-host.example.com")
	cfg.MinVersion = tls.VersionTLS13
	cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := tls.Dial("tcp", te.sip, cfg)
			if err != nil {
				b.Error(err)
				return
			}
			c.Close()
		}
	})
}

// An ACME TLS-ALPN-01 validator (offering only acme-tls/1) gets the challenge certificate and
// a closed connection; ordinary clients still get the SNI store's certificate.
func TestACMEChallengeHandshake(t *testing.T) {
	var challenge *tls.Certificate
	te := startEdge(t, func(c *Config) {
		c.ACMEChallenge = func(hello *tls.ClientHelloInfo) (*tls.Certificate, bool) {
			return challenge, hello.ServerName == "mra-host.example.com"
		}
	})
	challenge = te.pki.leaf(t, "challenge.invalid")
	dial := func(protos []string, sni string) (*tls.Conn, error) {
		return tls.Dial("tcp", te.https, &tls.Config{ServerName: sni, NextProtos: protos, InsecureSkipVerify: true})
	}
	c, err := dial([]string{ACMETLS1Protocol}, "mra-host.example.com")
	if err != nil {
		t.Fatal(err)
	}
	st := c.ConnectionState()
	if st.NegotiatedProtocol != ACMETLS1Protocol || st.PeerCertificates[0].DNSNames[0] != "challenge.invalid" {
		t.Fatalf("validator got protocol %q and certificate for %v", st.NegotiatedProtocol, st.PeerCertificates[0].DNSNames)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the validator's connection stayed open")
	}
	c.Close()
	if c, err := dial([]string{ACMETLS1Protocol}, "other.example.com"); err == nil {
		c.Close()
		t.Fatal("a validator without a pending challenge got a certificate")
	}
	c, err = dial([]string{"http/1.1"}, "mra-host.example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if names := c.ConnectionState().PeerCertificates[0].DNSNames; len(names) > 0 && names[0] == "challenge.invalid" {
		t.Fatal("an ordinary client got the challenge certificate")
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// Slow and hostile clients against the edge: connections that never speak, the connection
// limit, and garbage or oversized input on each listener. Each must end in a clean close or an
// error answer within the configured timeouts, without delaying honest clients, and with
// bounded memory.
//
// The memory figures come from runtime.ReadMemStats, which is process-wide: these tests do not
// call t.Parallel, so nothing else runs while they measure.

// handshakeTimes does n full TLS handshakes (fresh client config, so no resumption) with the
// HTTPS listener and returns their durations (TCP connect included), sorted.
func handshakeTimes(tb testing.TB, te *testEdge, n int) []time.Duration {
	tb.Helper()
	var out []time.Duration
	for range n {
		cfg := te.pki.clientTLS("mra-host.example.com")
		start := time.Now()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", te.https, cfg)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, time.Since(start))
		c.Close()
	}
	slices.Sort(out)
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// waitMetric polls a gauge or counter until it equals want, failing after limit.
func (te *testEdge) waitMetric(tb testing.TB, limit time.Duration, want float64, name string, labels ...string) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		got := te.metric(tb, name, labels...)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			tb.Fatalf("%s%v = %v after %v, want %v", name, labels, got, limit, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSilentConnsDoNotDelayHandshakes opens 1,000 TCP connections to the HTTPS listener that
// never send a ClientHello. An honest client's handshake must not slow down while they wait,
// and the edge must close every one of them at the handshake timeout.
func TestSilentConnsDoNotDelayHandshakes(t *testing.T) {
	const (
		silent    = 1000
		hsTimeout = 2 * time.Second // room for 1,000 dials under -race on a small shared machine
		slack     = 2 * time.Second
		maxHS     = 200 * time.Millisecond
	)
	if testing.Short() {
		t.Skip("1,000 connections and a 2 s handshake timeout: about 4 s; not with -short")
	}
	testStart := time.Now()
	te := startEdge(t, func(c *Config) {
		c.HandshakeTimeout = hsTimeout
		c.Logger = zap.NewNop() // a debug line per timed-out handshake otherwise
	})
	handshakeTimes(t, te, 3) // warm up: first handshakes pay for goroutine stacks and key setup
	before := handshakeTimes(t, te, 20)

	type silentConn struct {
		c      net.Conn
		dialed time.Time
		closed time.Duration // after dialed
		err    error
		n      int
	}
	conns := make([]silentConn, silent)
	var wg sync.WaitGroup
	dialErrs := make(chan error, silent)
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", te.https, 5*time.Second)
			if err != nil {
				dialErrs <- err
				return
			}
			sc := &conns[i]
			sc.c, sc.dialed = c, time.Now()
		}()
	}
	wg.Wait()
	close(dialErrs)
	for err := range dialErrs {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		for _, sc := range conns {
			sc.c.Close()
		}
	})
	dialedAll := time.Now()
	// Each reads until the edge closes it.
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := &conns[i]
			sc.c.SetReadDeadline(sc.dialed.Add(hsTimeout + slack + 2*time.Second))
			var buf [64]byte
			sc.n, sc.err = sc.c.Read(buf[:])
			sc.closed = time.Since(sc.dialed)
		}()
	}
	// All accepted: open, or (on a slow run) already timed out.
	var acceptWait time.Duration
	for {
		open := te.metric(t, "edgesim_proxy_open_connections", "listener", "https")
		timedOut := te.metric(t, "edgesim_tls_handshakes_total", "listener", "https", "result", "timeout")
		if open+timedOut >= silent {
			acceptWait = time.Since(dialedAll)
			break
		}
		if time.Since(dialedAll) > 5*time.Second {
			t.Fatalf("%v of %d silent conns accepted after 5s", open+timedOut, silent)
		}
		time.Sleep(5 * time.Millisecond)
	}
	openDuring := te.metric(t, "edgesim_proxy_open_connections", "listener", "https")
	during := handshakeTimes(t, te, 20)
	duringAt := time.Since(dialedAll)
	wg.Wait()

	t.Logf("full handshake (connect + TLS 1.3), 20 each: without silent conns median %s max %s; with %v silent conns open median %s max %s",
		ms(before[len(before)/2]), ms(before[len(before)-1]), openDuring, ms(during[len(during)/2]), ms(during[len(during)-1]))
	if duringAt > hsTimeout {
		t.Logf("note: the handshakes under load ended %v after the last dial, after the silent conns began to time out", duringAt)
	}
	if d := during[len(during)-1]; d > maxHS {
		t.Errorf("slowest handshake with %d silent conns open took %v, want < %v", silent, d, maxHS)
	}

	var closedMin, closedMax time.Duration = time.Hour, 0
	var notEOF int
	for _, sc := range conns {
		if sc.n != 0 || !(errors.Is(sc.err, io.EOF) || isReset(sc.err)) {
			notEOF++
			if notEOF <= 3 {
				t.Errorf("silent conn: read %d bytes, err %v after %v; want EOF at the handshake timeout", sc.n, sc.err, sc.closed)
			}
			continue
		}
		closedMin, closedMax = min(closedMin, sc.closed), max(closedMax, sc.closed)
	}
	t.Logf("%d silent conns accepted %v after the last dial; closed by the edge %s .. %s after their dial (handshake timeout %v); %d not closed with EOF",
		silent, acceptWait.Round(time.Millisecond), ms(closedMin), ms(closedMax), hsTimeout, notEOF)
	if closedMin < hsTimeout-50*time.Millisecond {
		t.Errorf("a silent conn was closed after %v, before the handshake timeout %v", closedMin, hsTimeout)
	}
	if closedMax > hsTimeout+slack {
		t.Errorf("a silent conn was closed after %v, want by %v", closedMax, hsTimeout+slack)
	}
	gone := te.waitMetric(t, 2*time.Second, 0, "edgesim_proxy_open_connections", "listener", "https")
	if got := te.metric(t, "edgesim_tls_handshakes_total", "listener", "https", "result", "timeout"); got != silent {
		t.Errorf("https handshake timeouts = %v, want %d", got, silent)
	}
	t.Logf("open_connections{https} back to 0 %v after the last EOF; test took %v", gone.Round(time.Millisecond), time.Since(testStart).Round(time.Millisecond))
}

// TestConnLimitHolds fills each listener to MaxConns with connections that wait in their
// handshake; further connections are closed at once and counted, and a freed slot is usable.
func TestConnLimitHolds(t *testing.T) {
	const limit = 100
	te := startEdge(t, func(c *Config) {
		c.MaxConns = limit
		c.HandshakeTimeout = 30 * time.Second // the held connections keep their slots
		c.Logger = zap.NewNop()
	})
	for _, ln := range []struct {
		name, addr string
	}{{"https", te.https}, {"xmpp", te.xmpp}, {"sip", te.sip}} {
		t.Run(ln.name, func(t *testing.T) {
			held := make([]net.Conn, 0, limit)
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for range limit {
				c, err := net.Dial("tcp", ln.addr)
				if err != nil {
					t.Fatal(err)
				}
				held = append(held, c)
			}
			te.waitMetric(t, 5*time.Second, limit, "edgesim_proxy_open_connections", "listener", ln.name)
			const extra = 10
			var worst time.Duration
			for i := range extra {
				start := time.Now()
				c, err := net.Dial("tcp", ln.addr)
				if err != nil {
					t.Fatal(err)
				}
				if b := expectClosed(t, c); len(b) != 0 {
					t.Errorf("connection %d over the limit got %q", limit+1+i, b)
				}
				worst = max(worst, time.Since(start))
				c.Close()
			}
			if worst > 500*time.Millisecond {
				t.Errorf("a connection over the limit stayed open %v, want closed at once", worst)
			}
			if got := te.metric(t, "edgesim_proxy_connections_rejected_total", "listener", ln.name); got != extra {
				t.Errorf("connections_rejected_total{%s} = %v, want %d", ln.name, got, extra)
			}
			if got := te.metric(t, "edgesim_proxy_open_connections", "listener", ln.name); got != limit {
				t.Errorf("open_connections{%s} = %v, want %d", ln.name, got, limit)
			}
			t.Logf("%s: %d held, connections %d..%d closed by the edge within %s each (dial to EOF), rejected_total %d",
				ln.name, limit, limit+1, limit+extra, ms(worst), extra)

			// A freed slot takes an honest client.
			held[0].Close()
			held = held[1:]
			te.waitMetric(t, 5*time.Second, limit-1, "edgesim_proxy_open_connections", "listener", ln.name)
			switch ln.name {
			case "xmpp":
				x := xmppDial(t, ln.addr)
				defer x.conn.Close()
				x.send(streamOpen("example.com"))
				x.header()
				if f := x.element(); f.XMLName.Local != "features" {
					t.Fatalf("freed slot: got %v", f.XMLName)
				}
			default:
				c, err := tls.Dial("tcp", ln.addr, te.pki.clientTLS("mra-host.example.com"))
				if err != nil {
					t.Fatalf("freed slot: %v", err)
				}
				c.Close()
			}
			if got := te.metric(t, "edgesim_proxy_connections_rejected_total", "listener", ln.name); got != extra {
				t.Errorf("connections_rejected_total{%s} = %v after the freed slot, want %d", ln.name, got, extra)
			}
		})
	}
	// The other listeners' limits are their own.
	for _, name := range listenerNames {
		if got := te.metric(t, "edgesim_proxy_connections_rejected_total", "listener", name); got != 10 {
			t.Errorf("rejected{%s} = %v, want 10", name, got)
		}
	}
}

// Hostile-input test settings: short timeouts so that every stalled attacker ends in a second.
const (
	hostileHandshake = 500 * time.Millisecond
	hostileIdle      = time.Second
	hostileSlack     = 2 * time.Second // scheduling on a small shared machine, under -race
	hostileParallel  = 20
	hostileMaxGrowth = 64 << 20
)

// hostilePayloads are built once, before memory is measured, and shared by the attackers.
type hostilePayloads struct {
	random4K, x16, mega, megaSpaces, megaAttr, megaStanza, sipLongLine, sipManyHeaders, httpHuge, nested []byte
}

func newHostilePayloads() *hostilePayloads {
	p := &hostilePayloads{}
	p.random4K = make([]byte, 4096)
	rand.Read(p.random4K)
	p.x16 = bytes.Repeat([]byte{0x16}, 64<<10)
	const mb = 4 << 20
	p.mega = append([]byte(streamOpen("example.com")+"<message to='bob@example.com'><body>"), bytes.Repeat([]byte("a"), mb)...)
	p.megaSpaces = append([]byte(streamOpen("example.com")), bytes.Repeat([]byte(" "), mb)...)
	p.megaAttr = append([]byte("<?xml version='1.0'?><stream:stream to='example.com' x='"), bytes.Repeat([]byte("y"), mb)...)
	p.nested = append([]byte(streamOpen("example.com")+"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"), bytes.Repeat([]byte("<a>"), mb/3)...)
	p.megaStanza = append([]byte("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"), bytes.Repeat([]byte("QUFB"), mb/4)...)
	p.sipLongLine = append([]byte("OPTIONS sip:mra-host.example.com SIP/2.0\r\nX-Pad: "), bytes.Repeat([]byte("a"), 1<<20)...)
	p.sipManyHeaders = append([]byte("OPTIONS sip:mra-host.example.com SIP/2.0\r\n"), bytes.Repeat([]byte("X-H: 0123456789abcdef\r\n"), 50000)...)
	p.httpHuge = append([]byte("GET /ZXhhbXBsZS5jb20/get_edge_config HTTP/1.1\r\nHost: mra-host.example.com\r\nX-Pad: "), bytes.Repeat([]byte("a"), 1<<20)...)
	return p
}

// hostileCase is one attack. run gets a fresh TCP connection to addr's listener and returns the
// connection the edge's answer comes on (the TLS one after a handshake); writes that may block
// when the edge stops reading run in their own goroutines.
type hostileCase struct {
	name     string
	ln       string // https, xmpp or sip
	run      func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error)
	within   time.Duration // the edge must have closed by then (from the dial)
	parallel int           // attackers at once; default hostileParallel
	// slowReader: run starts writing requests for ever and the client never reads; the edge
	// must close the connection when its writes time out.
	slowReader bool
	want       string // part of the edge's answer (alternatives split by |), checked when the close was clean
}

// writeAsync writes b on c in the background; the edge may close before it is all sent.
func writeAsync(c io.Writer, parts ...[]byte) {
	go func() {
		for _, b := range parts {
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
}

func sendRaw(parts ...[]byte) func(net.Conn, *testEdge, *hostilePayloads) (io.Reader, error) {
	return func(c net.Conn, _ *testEdge, _ *hostilePayloads) (io.Reader, error) {
		writeAsync(c, parts...)
		return c, nil
	}
}

// overTLS does a TLS handshake on c, then calls send with the TLS connection.
func overTLS(send func(tc *tls.Conn, p *hostilePayloads)) func(net.Conn, *testEdge, *hostilePayloads) (io.Reader, error) {
	return func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
		tc := tls.Client(c, te.pki.clientTLS("mra-host.example.com"))
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		send(tc, p)
		return tc, nil
	}
}

// readUntil reads r until its data contains marker.
func readUntil(br *bufio.Reader, marker string) error {
	var got []byte
	for !bytes.Contains(got, []byte(marker)) {
		b, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("waiting for %q: %w after %q", marker, err, got)
		}
		got = append(got, b)
	}
	return nil
}

// xmppAfterTLS runs STARTTLS and restarts the stream, then calls send with the TLS connection.
func xmppAfterTLS(send func(tc *tls.Conn, p *hostilePayloads)) func(net.Conn, *testEdge, *hostilePayloads) (io.Reader, error) {
	return func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
		io.WriteString(c, streamOpen("example.com"))
		br := bufio.NewReader(c)
		if err := readUntil(br, "</stream:features>"); err != nil {
			return nil, err
		}
		io.WriteString(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
		if err := readUntil(br, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
			return nil, err
		}
		tc := tls.Client(c, te.pki.clientTLS("mra-host.example.com"))
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		io.WriteString(tc, streamOpen("example.com"))
		tbr := bufio.NewReader(tc)
		if err := readUntil(tbr, "</stream:features>"); err != nil {
			return nil, err
		}
		send(tc, p)
		return tbr, nil
	}
}

func hostileCases() []hostileCase {
	hs, idle := hostileHandshake+hostileSlack, hostileIdle+hostileSlack
	var cases []hostileCase
	// The same garbage on both listeners that start with TLS.
	for _, ln := range []string{"https", "sip"} {
		cases = append(cases,
			hostileCase{name: "random bytes", ln: ln, within: hs, run: func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
				writeAsync(c, p.random4K)
				return c, nil
			}},
			hostileCase{name: "HTTP request on the TLS port", ln: ln, within: hs,
				run: sendRaw([]byte("GET /ZXhhbXBsZS5jb20/get_edge_config HTTP/1.1\r\nHost: mra-host.example.com\r\n\r\n"))},
			hostileCase{name: "record header claiming 16 KiB, then nothing", ln: ln, within: hs, run: sendRaw([]byte{0x16, 0x03, 0x01, 0x40, 0x00})},
			hostileCase{name: "ClientHello claiming 16 MiB", ln: ln, within: hs, run: sendRaw([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff})},
			hostileCase{name: "64 KiB of 0x16", ln: ln, within: hs, run: func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
				writeAsync(c, p.x16)
				return c, nil
			}},
		)
	}
	streamErr := func(cond string) string { return "<" + cond + " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" }
	cases = append(cases,
		hostileCase{name: "random bytes", ln: "xmpp", within: hs, want: streamErr("not-well-formed"),
			run: func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
				writeAsync(c, p.random4K)
				return c, nil
			}},
		hostileCase{name: "64 KiB of 0x16", ln: "xmpp", within: hs, want: streamErr("not-well-formed"),
			run: func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
				writeAsync(c, p.x16)
				return c, nil
			}},
		hostileCase{name: "stream tag never closed", ln: "xmpp", within: hs, want: streamErr("connection-timeout"),
			run: sendRaw([]byte("<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client'"))},
		hostileCase{name: "stream tag of megabytes", ln: "xmpp", within: hs, want: streamErr("policy-violation"),
			run: func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
				writeAsync(c, p.megaAttr)
				return c, nil
			}},
		hostileCase{name: "megabytes of stanza before STARTTLS", ln: "xmpp", within: hs, want: "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
			run: func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
				writeAsync(c, p.mega)
				return c, nil
			}},
		hostileCase{name: "megabytes of whitespace before STARTTLS", ln: "xmpp", within: hs, want: streamErr("policy-violation"),
			run: func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
				writeAsync(c, p.megaSpaces)
				return c, nil
			}},
		hostileCase{name: "starttls element nested without end", ln: "xmpp", within: hs, want: streamErr("policy-violation"),
			run: func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
				writeAsync(c, p.nested)
				return c, nil
			}},
		// connection-timeout when a loaded machine delays the first 64 KiB past the idle timeout.
		hostileCase{name: "stanza of megabytes after TLS", ln: "xmpp", within: idle, want: streamErr("policy-violation") + "|" + streamErr("connection-timeout"),
			run: xmppAfterTLS(func(tc *tls.Conn, p *hostilePayloads) { writeAsync(tc, p.megaStanza) })},
		hostileCase{name: "stanza never ends after TLS", ln: "xmpp", within: idle, want: streamErr("connection-timeout"),
			run: xmppAfterTLS(func(tc *tls.Conn, p *hostilePayloads) {
				io.WriteString(tc, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGJvYgB4")
			})},

		hostileCase{name: "one header line of 1 MiB", ln: "sip", within: hs, want: "SIP/2.0 513 Message Too Large",
			run: overTLS(func(tc *tls.Conn, p *hostilePayloads) { writeAsync(tc, p.sipLongLine) })},
		hostileCase{name: "50,000 header lines", ln: "sip", within: hs, want: "SIP/2.0 513 Message Too Large",
			run: overTLS(func(tc *tls.Conn, p *hostilePayloads) { writeAsync(tc, p.sipManyHeaders) })},
		hostileCase{name: "request that never ends", ln: "sip", within: hs,
			run: overTLS(func(tc *tls.Conn, p *hostilePayloads) {
				io.WriteString(tc, "OPTIONS sip:mra-host.example.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.1;branch=z9hG4bK-x\r\n")
			})},
		hostileCase{name: "request one byte every 50ms", ln: "sip", within: hs,
			run: overTLS(func(tc *tls.Conn, p *hostilePayloads) {
				go func() {
					for _, b := range []byte(sipOptions("drip")) {
						if _, err := tc.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}()
			})},
		hostileCase{name: "body that never ends", ln: "sip", within: hs,
			run: overTLS(func(tc *tls.Conn, p *hostilePayloads) {
				io.WriteString(tc, strings.Replace(sipOptions("body"), "Content-Length: 0\r\n\r\n", "Content-Length: 60000\r\n\r\n0123456789", 1))
			})},

		hostileCase{name: "headers that never end", ln: "https", within: hs,
			run: overTLS(func(tc *tls.Conn, p *hostilePayloads) {
				io.WriteString(tc, "GET /ZXhhbXBsZS5jb20/get_edge_config HTTP/1.1\r\nHost: mra-host.example.com\r\n")
			})},
		hostileCase{name: "header of 1 MiB", ln: "https", within: hs, want: "HTTP/1.1 431 ",
			run: overTLS(func(tc *tls.Conn, p *hostilePayloads) { writeAsync(tc, p.httpHuge) })},
		hostileCase{name: "body that never ends", ln: "https", within: hs, want: "HTTP/1.1 404 ",
			run: overTLS(func(tc *tls.Conn, p *hostilePayloads) {
				io.WriteString(tc, "POST /upload HTTP/1.1\r\nHost: mra-host.example.com\r\nContent-Length: 100000\r\n\r\n0123456789")
			})},
	)
	return cases
}

// slowReaderCases never read what the edge answers while they keep sending requests: the edge's
// writes must time out rather than hold the connection, and its MaxConns slot, for ever. After
// a write timed out, closing a TLS connection still tries to send close_notify, which
// crypto/tls bounds at 5 s of its own (tls.Conn.Close): net/http closes that way; SIP and XMPP
// close the socket at once.
func slowReaderCases() []hostileCase {
	const (
		closeNotify = 5 * time.Second
		fill        = 8 * time.Second // for the edge to fill its socket buffers: several at once, on a small machine, under -race
		parallel    = 4
	)
	flood := func(req string) func(io.Writer) {
		batch := []byte(strings.Repeat(req, 64))
		return func(w io.Writer) {
			go func() {
				for {
					if _, err := w.Write(batch); err != nil {
						return
					}
				}
			}()
		}
	}
	overTLSNoRead := func(start func(io.Writer)) func(net.Conn, *testEdge, *hostilePayloads) (io.Reader, error) {
		return func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
			c.(*net.TCPConn).SetReadBuffer(4096)
			tc := tls.Client(c, te.pki.clientTLS("mra-host.example.com"))
			if err := tc.Handshake(); err != nil {
				return nil, err
			}
			start(tc)
			return nil, nil
		}
	}
	xmppPings := func(c net.Conn, te *testEdge, p *hostilePayloads) (io.Reader, error) {
		c.(*net.TCPConn).SetReadBuffer(4096)
		var tc *tls.Conn
		r, err := xmppAfterTLS(func(t *tls.Conn, _ *hostilePayloads) { tc = t })(c, te, p)
		if err != nil {
			return nil, err
		}
		br := r.(*bufio.Reader)
		io.WriteString(tc, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"+plain("bob", "x")+"</auth>")
		if err := readUntil(br, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"); err != nil {
			return nil, err
		}
		io.WriteString(tc, streamOpen("example.com"))
		if err := readUntil(br, "</stream:features>"); err != nil {
			return nil, err
		}
		// A long id, which the answer echoes: the edge's socket buffers fill after few pings.
		flood("<iq type='get' id='" + strings.Repeat("p", 2000) + "'><ping xmlns='urn:xmpp:ping'/></iq>")(tc)
		return nil, nil
	}
	return []hostileCase{
		{name: "pipelined requests never read", ln: "https", slowReader: true, parallel: parallel,
			within: fill + 2*hostileHandshake + closeNotify + hostileSlack, // WriteTimeout is twice HandshakeTimeout
			run:    overTLSNoRead(flood("GET /ZXhhbXBsZS5jb20/get_edge_config HTTP/1.1\r\nHost: mra-host.example.com\r\nAuthorization: Basic Ym9iOng=\r\n\r\n"))},
		{name: "pipelined requests never read", ln: "sip", slowReader: true, parallel: parallel,
			within: fill + hostileHandshake + hostileSlack, run: overTLSNoRead(flood(sipOptions("slow-reader")))},
		{name: "pings never read", ln: "xmpp", slowReader: true, parallel: parallel,
			within: fill + hostileHandshake + hostileSlack, run: xmppPings},
	}
}

// TestHostileInput runs each attack from hostileParallel clients at once, one attack after
// another, and checks that each ends within its bound, that the edge keeps serving, and that the
// heap stays bounded.
func TestHostileInput(t *testing.T) {
	te := startEdge(t, func(c *Config) {
		c.HandshakeTimeout = hostileHandshake
		c.IdleTimeout = hostileIdle
		c.Logger = zap.NewNop()
	})
	p := newHostilePayloads()
	addr := map[string]string{"https": te.https, "xmpp": te.xmpp, "sip": te.sip}
	var worstPeak, worstResidual int64
	var worstPeakCase string
	type outcome struct {
		took   time.Duration
		answer []byte
		err    error // how the read ended: nil or EOF for a clean close
	}
	for _, hc := range append(hostileCases(), slowReaderCases()...) {
		t.Run(hc.ln+"/"+hc.name, func(t *testing.T) {
			if hc.slowReader && hc.within > 3*time.Second && testing.Short() {
				t.Skipf("takes %v (crypto/tls's close_notify timeout); not with -short", hc.within)
			}
			runtime.GC()
			var ms0 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			var peak atomic.Uint64
			peak.Store(ms0.HeapInuse)
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				var m runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						runtime.ReadMemStats(&m)
						if m.HeapInuse > peak.Load() {
							peak.Store(m.HeapInuse)
						}
					}
				}
			}()

			n := hostileParallel
			if hc.parallel > 0 {
				n = hc.parallel
			}
			outcomes := make([]outcome, n)
			errs := make([]error, n)
			var wg, ready sync.WaitGroup
			release := make(chan struct{}) // slow readers hold their connections until then
			launched := time.Now()
			for i := range n {
				wg.Add(1)
				ready.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					c, err := net.DialTimeout("tcp", addr[hc.ln], 5*time.Second)
					if err != nil {
						errs[i] = err
						ready.Done()
						return
					}
					defer c.Close()
					c.SetDeadline(start.Add(hc.within + 2*time.Second))
					r, err := hc.run(c, te, p)
					ready.Done()
					if err != nil {
						errs[i] = fmt.Errorf("setting up the attack: %w", err)
						return
					}
					o := &outcomes[i]
					if hc.slowReader {
						// The attacker's own socket may learn of the close late (its receive
						// window is shut, so the edge's RST can fall outside it): what counts is
						// the edge's side, measured below.
						<-release
						return
					}
					o.answer, o.err = io.ReadAll(r)
					o.took = time.Since(start)
				}()
			}
			ready.Wait()
			if hc.slowReader {
				opened := te.metric(t, "edgesim_proxy_open_connections", "listener", hc.ln)
				took := te.waitMetric(t, hc.within+2*time.Second, 0, "edgesim_proxy_open_connections", "listener", hc.ln)
				took += time.Since(launched) - took // from the launch
				for i := range outcomes {
					outcomes[i].took = took
				}
				t.Logf("%v of %d connections open once all had handshaken; the edge closed all within %s of the launch", opened, n, ms(took))
				close(release)
			}
			wg.Wait()
			// Everything the attackers opened is closed on the edge's side as well.
			for _, name := range listenerNames {
				te.waitMetric(t, hc.within+2*time.Second, 0, "edgesim_proxy_open_connections", "listener", name)
			}
			close(stop)
			<-sampled
			runtime.GC()
			var ms1 runtime.MemStats
			runtime.ReadMemStats(&ms1)
			growth := int64(peak.Load()) - int64(ms0.HeapInuse)
			residual := int64(ms1.HeapInuse) - int64(ms0.HeapInuse)
			if growth > worstPeak {
				worstPeak, worstPeakCase = growth, hc.ln+"/"+hc.name
			}
			worstResidual = max(worstResidual, residual)

			var slowest time.Duration
			kinds := map[string]int{}
			for i, o := range outcomes {
				if errs[i] != nil {
					t.Fatalf("attacker %d: %v", i, errs[i])
				}
				slowest = max(slowest, o.took)
				clean := o.err == nil || errors.Is(o.err, io.EOF)
				switch {
				case hc.slowReader:
					kinds["closed by the edge's write timeout"]++
				case clean && len(o.answer) > 0:
					kinds["answer, then close"]++
				case clean:
					kinds["close"]++
				case isReset(o.err):
					kinds["reset"]++
				default:
					kinds[o.err.Error()]++
					if isTimeout(o.err) || o.err.Error() == "still open" {
						t.Errorf("attacker %d: the edge kept the connection open for %v (%v)", i, o.took, o.err)
					} else {
						t.Errorf("attacker %d: %v", i, o.err)
					}
				}
				if o.took > hc.within {
					t.Errorf("attacker %d: closed after %v, want within %v", i, o.took, hc.within)
				}
				if hc.want != "" && clean && !slices.ContainsFunc(strings.Split(hc.want, "|"), func(w string) bool { return bytes.Contains(o.answer, []byte(w)) }) {
					t.Errorf("attacker %d: the edge answered %q, want %q", i, trim(o.answer), hc.want)
				}
			}
			sample := ""
			for _, o := range outcomes {
				if len(o.answer) > 0 {
					sample = fmt.Sprintf("; e.g. %q", trim(o.answer))
					break
				}
			}
			t.Logf("%d attackers: %v, all closed within %s; heap in use %+.1f MB at peak, %+.1f MB after%s",
				n, kinds, ms(slowest), float64(growth)/(1<<20), float64(residual)/(1<<20), sample)
			if growth > hostileMaxGrowth {
				t.Errorf("heap grew %.1f MB under %d attackers, want < %d MB", float64(growth)/(1<<20), n, hostileMaxGrowth>>20)
			}
		})
	}
	t.Logf("worst heap growth %.1f MB at peak (%s), %.1f MB after", float64(worstPeak)/(1<<20), worstPeakCase, float64(worstResidual)/(1<<20))

	// The edge still serves honest clients on every listener.
	for _, addr := range []string{te.https, te.sip} {
		c, err := tls.Dial("tcp", addr, te.pki.clientTLS("mra-host.example.com"))
		if err != nil {
			t.Fatalf("after the attacks: %v", err)
		}
		c.Close()
	}
	x := xmppLogin(t, te, "bob", "x")
	x.conn.Close()
}

func trim(b []byte) []byte {
	if len(b) > 160 {
		return b[len(b)-160:]
	}
	return b
}

// TestXMPPNestingBounded: elements nested past xmppMaxDepth end the stream with
// policy-violation before and after TLS, so a stalled client cannot make the decoder hold a
// record per open element; nesting within the bound still parses.
func TestXMPPNestingBounded(t *testing.T) {
	nested := func(depth int) string {
		return strings.Repeat("<a>", depth) + strings.Repeat("</a>", depth)
	}
	starttls := "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
	tests := []struct {
		name  string
		in    string
		deep  bool
		wants string
	}{
		// The stream is level 1 and starttls level 2.
		{"within the bound", streamOpen("example.com") + starttls + nested(xmppMaxDepth-2) + "</starttls>", false, xmlProceed},
		{"one level too deep", streamOpen("example.com") + starttls + nested(xmppMaxDepth-1) + "</starttls>", true, "<policy-violation"},
		{"20,000 levels", streamOpen("example.com") + starttls + strings.Repeat("<a>", 20000), true, "<policy-violation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			br := bufio.NewReader(strings.NewReader(tt.in))
			_, err := xmppPreTLS(&byteBudget{br: br, n: 1 << 20}, &out, lookupExample, "mra-host.sp.com")
			if errors.Is(err, errXMPPTooDeep) != tt.deep {
				t.Fatalf("err = %v, want too deep: %v", err, tt.deep)
			}
			if !strings.Contains(out.String(), tt.wants) {
				t.Errorf("edge wrote %q, want %q", out.String(), tt.wants)
			}
		})
	}
	// After TLS: a stanza nested too deep, through the decoder the session uses.
	dec := newXMPPDecoder(strings.NewReader(streamOpen("example.com") + "<message>" + strings.Repeat("<a>", 100)))
	if _, err := readStreamHeader(dec); err != nil {
		t.Fatal(err)
	}
	start, err := nextElement(dec)
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Skip(); !errors.Is(err, errXMPPTooDeep) || streamErrorFor(err) != "policy-violation" {
		t.Fatalf("skipping %v nested 100 deep: %v", start, err)
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// xmppClient is a hand-written c2s client: just enough XMPP to drive the edge.
type xmppClient struct {
	tb   testing.TB
	conn net.Conn
	br   *bufio.Reader
	dec  *xml.Decoder
}

// xmlElem is any element, with its attributes and inner XML.
type xmlElem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (e xmlElem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func xmppDial(tb testing.TB, addr string) *xmppClient {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	x := &xmppClient{tb: tb, conn: c, br: bufio.NewReader(c)}
	x.dec = xml.NewDecoder(x.br)
	return x
}

func streamOpen(to string) string {
	return "<?xml version='1.0'?><stream:stream to='" + to + "' xmlns='jabber:client' " +
		"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
}

func (x *xmppClient) send(s string) {
	x.tb.Helper()
	if _, err := io.WriteString(x.conn, s); err != nil {
		x.tb.Fatal(err)
	}
}

// header reads the edge's stream header.
func (x *xmppClient) header() xml.StartElement {
	x.tb.Helper()
	for {
		tok, err := x.dec.Token()
		if err != nil {
			x.tb.Fatalf("reading stream header: %v", err)
		}
		if s, ok := tok.(xml.StartElement); ok {
			if s.Name.Space != nsStreams || s.Name.Local != "stream" {
				x.tb.Fatalf("got %v, want stream:stream", s.Name)
			}
			return s
		}
	}
}

// element reads the next top-level element; an end of stream fails the test.
func (x *xmppClient) element() xmlElem {
	x.tb.Helper()
	for {
		tok, err := x.dec.Token()
		if err != nil {
			x.tb.Fatalf("reading element: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var e xmlElem
			if err := x.dec.DecodeElement(&e, &t); err != nil {
				x.tb.Fatal(err)
			}
			return e
		case xml.EndElement:
			x.tb.Fatalf("stream ended, want an element")
		}
	}
}

// restart begins a new stream on the current connection (after STARTTLS or SASL).
func (x *xmppClient) restart(to string) xmlElem {
	x.tb.Helper()
	x.dec = xml.NewDecoder(x.br)
	x.send(streamOpen(to))
	h := x.header()
	if got := attr(h, "", "from"); got != to {
		x.tb.Errorf("stream from %q, want %q", got, to)
	}
	return x.element()
}

func (x *xmppClient) startTLS(cfg *tls.Config) *tls.ConnectionState {
	x.tb.Helper()
	if n := x.br.Buffered(); n != 0 {
		x.tb.Fatalf("%d bytes after <proceed/>", n)
	}
	tc := tls.Client(x.conn, cfg)
	if err := tc.Handshake(); err != nil {
		x.tb.Fatalf("tls after STARTTLS: %v", err)
	}
	x.conn = tc
	x.br = bufio.NewReader(tc)
	st := tc.ConnectionState()
	return &st
}

func plain(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
}

// xmppLogin runs the whole login for user@example.com and returns the bound client.
func xmppLogin(tb testing.TB, te *testEdge, user, password string) *xmppClient {
	tb.Helper()
	x := xmppDial(tb, te.xmpp)
	x.send(streamOpen("example.com"))
	h := x.header()
	if attr(h, "", "from") != "example.com" || attr(h, "", "id") == "" || attr(h, "", "version") != "1.0" {
		tb.Errorf("pre-TLS stream header %+v", h.Attr)
	}
	f := x.element()
	if f.XMLName.Local != "features" || !strings.Contains(f.Inner, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>") {
		tb.Fatalf("features %+v", f)
	}
	x.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	if p := x.element(); p.XMLName != (xml.Name{Space: nsTLS, Local: "proceed"}) {
		tb.Fatalf("got %v, want proceed", p.XMLName)
	}
	st := x.startTLS(te.pki.clientTLS("mra-host.example.com"))
	if got := st.PeerCertificates[0].DNSNames; len(got) == 0 || got[0] != "mra-host.example.com" {
		tb.Errorf("certificate for SNI mra-host.example.com names %v", got)
	}
	f = x.restart("example.com")
	if !strings.Contains(f.Inner, "<mechanism>PLAIN</mechanism>") {
		tb.Fatalf("post-TLS features %q", f.Inner)
	}
	x.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + plain(user, password) + "</auth>")
	if r := x.element(); r.XMLName.Local != "success" {
		tb.Fatalf("SASL: %v %q", r.XMLName, r.Inner)
	}
	f = x.restart("example.com")
	if !strings.Contains(f.Inner, "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>") {
		tb.Fatalf("post-SASL features %q", f.Inner)
	}
	x.send("<iq type='set' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>jabber_1</resource></bind></iq>")
	r := x.element()
	if r.attr("type") != "result" || r.attr("id") != "bind_1" || !strings.Contains(r.Inner, "<jid>"+user+"@example.com/jabber_1</jid>") {
		tb.Fatalf("bind: %+v", r)
	}
	return x
}

func TestXMPPLogin(t *testing.T) {
	te := startEdge(t, nil)
	x := xmppLogin(t, te, "bob", "anything")
	defer x.conn.Close()

	for _, tt := range []struct{ send, typ string }{
		{"<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>", "result"},
		{" \n <iq type='get' id='p&amp;1'><ping xmlns='urn:xmpp:ping'/></iq>", "result"},
		{"<presence/><message to='a@example.com'><body>hi</body></message><iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>", "error"},
	} {
		x.send(tt.send)
		if r := x.element(); r.XMLName.Local != "iq" || r.attr("type") != tt.typ {
			t.Errorf("%s: got %+v, want iq %s", tt.send, r, tt.typ)
		}
	}
	x.send("</stream:stream>")
	if tok, err := x.dec.Token(); err != nil || tok != (xml.EndElement{Name: xml.Name{Space: nsStreams, Local: "stream"}}) {
		t.Errorf("want the edge to close the stream, got %v, %v", tok, err)
	}
	expectClosed(t, x.conn)

	if got := te.metric(t, "edgesim_xmpp_logins_total", "result", "success"); got != 1 {
		t.Errorf("logins = %v", got)
	}
	if got := te.metric(t, "edgesim_xmpp_bound_streams_total"); got != 1 {
		t.Errorf("bound streams = %v", got)
	}
	if got := te.metric(t, "edgesim_tls_handshake_duration_seconds", "listener", "xmpp", "version", "1.3", "result", "ok"); got != 1 {
		t.Errorf("xmpp handshake observations = %v", got)
	}
}

func TestXMPPAuthRetry(t *testing.T) {
	te := startEdge(t, nil)
	x := xmppDial(t, te.xmpp)
	defer x.conn.Close()
	x.send(streamOpen("example.com"))
	x.header()
	x.element()
	x.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	x.element()
	x.startTLS(te.pki.clientTLS("mra-host.example.com"))
	x.restart("example.com")
	for _, tt := range []struct{ auth, want string }{
		{plain("alice", "wrong"), "not-authorized"}, // pinned password
		{"!!!", "incorrect-encoding"},               // not base64
	} {
		x.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + tt.auth + "</auth>")
		if r := x.element(); r.XMLName.Local != "failure" || !strings.Contains(r.Inner, "<"+tt.want+"/>") {
			t.Errorf("%s: got %v %q", tt.auth, r.XMLName, r.Inner)
		}
	}
	x.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>")
	if r := x.element(); !strings.Contains(r.Inner, "invalid-mechanism") {
		t.Errorf("DIGEST-MD5: %q", r.Inner)
	}
	// No initial response: an empty challenge, then the response.
	x.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>")
	if r := x.element(); r.XMLName.Local != "challenge" {
		t.Fatalf("got %v, want challenge", r.XMLName)
	}
	x.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + plain("alice@example.com", "secret") + "</response>")
	if r := x.element(); r.XMLName.Local != "success" {
		t.Fatalf("alice with her password: %v %q", r.XMLName, r.Inner)
	}
	if got := te.metric(t, "edgesim_xmpp_logins_total", "result", "failure"); got != 2 {
		t.Errorf("failures = %v, want 2", got)
	}

	// Three failed attempts end the stream.
	y := xmppDial(t, te.xmpp)
	defer y.conn.Close()
	y.send(streamOpen("example.com"))
	y.header()
	y.element()
	y.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	y.element()
	y.startTLS(te.pki.clientTLS("mra-host.example.com"))
	y.restart("example.com")
	for _, a := range []string{plain("mallory", "x"), base64.StdEncoding.EncodeToString([]byte("x")), plain("bob@example.net", "x")} {
		y.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + a + "</auth>")
	}
	got := string(expectClosed(t, y.conn))
	for _, w := range []string{"<not-authorized/>", "<malformed-request/>", "</failure></stream:stream>"} {
		if !strings.Contains(got, w) {
			t.Errorf("after three failures got %q, missing %q", got, w)
		}
	}
}

func TestXMPPBadSequences(t *testing.T) {
	te := startEdge(t, nil)
	tests := []struct {
		name string
		send string
		want []string // all must appear in what the edge sends before closing
	}{
		{"unknown domain", streamOpen("example.net"),
			[]string{"from='mra-host.sp.com'", "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"}},
		{"no to", strings.Replace(streamOpen("x"), "to='x' ", "", 1), []string{"<host-unknown"}},
		{"message before starttls", streamOpen("example.com") + "<message to='x@example.com'><body>hi</body></message>",
			[]string{"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>", "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"}},
		{"close before starttls", streamOpen("example.com") + "</stream:stream>", []string{"</stream:features></stream:stream>"}},
		{"wrong namespace", strings.Replace(streamOpen("example.com"), "jabber:client", "jabber:server", 1), []string{"<invalid-namespace"}},
		{"old version", strings.Replace(streamOpen("example.com"), "version='1.0'>", "version='0.9'>", 1), []string{"<unsupported-version"}},
		{"not xml", "GET / HTTP/1.1\r\n\r\n", []string{"<not-well-formed"}},
		{"not a stream", "<iq/>", []string{"<invalid-namespace"}},
		{"text before starttls", streamOpen("example.com") + "hello", []string{"</stream:features><stream:error><not-well-formed"}},
		{"too large", streamOpen("example.com") + "<x a='" + strings.Repeat("y", xmppPreTLSLimit) + "'/>", []string{"<policy-violation"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := xmppDial(t, te.xmpp)
			defer x.conn.Close()
			go io.WriteString(x.conn, tt.send)
			got := string(expectClosed(t, x.conn))
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("edge sent %q, missing %q", got, w)
				}
			}
		})
	}
}

func TestXMPPStanzaBeforeAuth(t *testing.T) {
	te := startEdge(t, nil)
	x := xmppDial(t, te.xmpp)
	defer x.conn.Close()
	x.send(streamOpen("example.com"))
	x.header()
	x.element()
	x.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	x.element()
	x.startTLS(te.pki.clientTLS("mra-host.example.com"))
	x.restart("example.com")
	x.send("<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>")
	if got := string(expectClosed(t, x.conn)); !strings.Contains(got, "<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") {
		t.Errorf("got %q", got)
	}
	// A restarted stream for another domain than the one STARTTLS was for.
	y := xmppDial(t, te.xmpp)
	defer y.conn.Close()
	y.send(streamOpen("example.com"))
	y.header()
	y.element()
	y.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	y.element()
	y.startTLS(te.pki.clientTLS("mra-host.example.com"))
	y.send(streamOpen("single.example"))
	if got := string(expectClosed(t, y.conn)); !strings.Contains(got, "<host-unknown") {
		t.Errorf("got %q", got)
	}
}

// TestXMPPPreAuthBounded: after TLS, a stream header or an element before login larger than
// xmppPreAuthLimit ends the stream with policy-violation (a client that has not logged in cannot
// hold 64 KiB of attributes); after login an element may be larger.
func TestXMPPPreAuthBounded(t *testing.T) {
	te := startEdge(t, nil)
	big := strings.Repeat("y", xmppPreAuthLimit)
	tlsUp := func() *xmppClient {
		x := xmppDial(t, te.xmpp)
		x.send(streamOpen("example.com"))
		x.header()
		x.element()
		x.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
		x.element()
		x.startTLS(te.pki.clientTLS("mra-host.example.com"))
		return x
	}
	x := tlsUp()
	defer x.conn.Close()
	x.send(strings.Replace(streamOpen("example.com"), "<stream:stream ", "<stream:stream x='"+big+"' ", 1))
	if got := string(expectClosed(t, x.conn)); !strings.Contains(got, "<policy-violation") {
		t.Errorf("oversized stream header after TLS: got %q", got)
	}
	y := tlsUp()
	defer y.conn.Close()
	y.restart("example.com")
	y.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN' x='" + big + "'>")
	if got := string(expectClosed(t, y.conn)); !strings.Contains(got, "<policy-violation") {
		t.Errorf("oversized <auth/>: got %q", got)
	}
}

func lookupExample(d string) (string, bool) {
	if strings.EqualFold(d, "example.com") {
		return "example.com", true
	}
	return "", false
}

func FuzzXMPPPreTLS(f *testing.F) {
	f.Add(streamOpen("example.com") + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	f.Add("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' to='example.com' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'></starttls>")
	f.Add(streamOpen("example.net"))
	f.Add(streamOpen("example.com") + "<message/>")
	f.Add("<?xml version='1.0' encoding='latin1'?><a:b xmlns:a='x'>")
	f.Add("<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")
	f.Fuzz(func(t *testing.T, in string) {
		var out bytes.Buffer
		br := bufio.NewReader(strings.NewReader(in))
		domain, err := xmppPreTLS(&byteBudget{br: br, n: xmppPreTLSLimit}, &out, lookupExample, "mra-host.sp.com")
		if out.Len() > 2048 {
			t.Fatalf("wrote %d bytes", out.Len())
		}
		if err == nil {
			if domain != "example.com" || !strings.HasSuffix(out.String(), xmlProceed) {
				t.Fatalf("TLS for %q after %q", domain, out.String())
			}
			return
		}
		if errors.Is(err, io.EOF) {
			return // the client went away; nothing more to say
		}
		if s := out.String(); !strings.HasSuffix(s, xmlStreamEnd) {
			t.Fatalf("stream not closed on error %v: %q", err, s)
		}
	})
}

func TestXMPPOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	te := startEdge(t, nil)
	out, err := exec.Command(openssl, "s_client", "-connect", te.xmpp, "-starttls", "xmpp", "-xmpphost", "example.com",
		"-servername", "mra-host.example.com", "-CAfile", te.pki.caFile(t), "-verify_return_error",
		"-verify_hostname", "mra-host.example.com", "-brief").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "CONNECTION ESTABLISHED") || !strings.Contains(string(out), "Verification: OK") {
		t.Fatalf("openssl s_client -starttls xmpp: %v\n%s", err, out)
	}
	if err := te.Shutdown(context.Background()); err != nil { // waits for the edge's side of the connection
		t.Fatal(err)
	}
	if got := te.metric(t, "edgesim_tls_handshakes_total", "listener", "xmpp", "result", "ok"); got != 1 {
		t.Errorf("xmpp handshakes ok = %v, want 1", got)
	}
}

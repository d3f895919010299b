package driver

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// xmppCase says how the test edge behaves.
type xmppCase struct {
	noStartTLS  bool // offer no STARTTLS
	refuseTLS   bool // answer <failure/> to <starttls/>
	silent      bool // never answer the stream header
	wrongPass   bool // refuse every password
	streamError bool // answer the first header with a stream error
	bindError   bool // refuse resource binding
}

// testXMPPEdge serves one client stream on ln as a minimal XMPP edge and reports what went
// wrong on its side (nil when the exchange went as the case intends).
func testXMPPEdge(t *testing.T, ln net.Listener, cfg *tls.Config, c xmppCase) <-chan error {
	errc := make(chan error, 1)
	go func() {
		errc <- func() error {
			conn, err := ln.Accept()
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(conn)
			dec := xml.NewDecoder(br)
			header := "<?xml version='1.0'?><stream:stream from='example.com' id='x' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
			readStart := func() (xml.StartElement, error) {
				for {
					tok, err := dec.Token()
					if err != nil {
						return xml.StartElement{}, err
					}
					if st, ok := tok.(xml.StartElement); ok {
						return st, nil
					}
				}
			}
			st, err := readStart()
			if err != nil {
				return err
			}
			if st.Name.Local != "stream" || attrValue(st, "to") != "example.com" {
				return io.ErrUnexpectedEOF
			}
			if c.silent {
				io.Copy(io.Discard, conn)
				return nil
			}
			if c.streamError {
				io.WriteString(conn, header+"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
				return nil
			}
			if c.noStartTLS {
				io.WriteString(conn, header+"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>")
				io.Copy(io.Discard, conn)
				return nil
			}
			io.WriteString(conn, header+"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>")
			if st, err = readStart(); err != nil || st.Name.Local != "starttls" {
				return io.ErrUnexpectedEOF
			}
			if c.refuseTLS {
				io.WriteString(conn, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>")
				return nil
			}
			io.WriteString(conn, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
			tc := tls.Server(conn, cfg)
			if err := tc.Handshake(); err != nil {
				return err
			}
			dec = xml.NewDecoder(tc)
			if _, err := readStart(); err != nil {
				return err
			}
			io.WriteString(tc, header+"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>")
			st, err = readStart()
			if err != nil {
				return err
			}
			var auth struct {
				Mech string `xml:"mechanism,attr"`
				Data string `xml:",chardata"`
			}
			if err := dec.DecodeElement(&auth, &st); err != nil {
				return err
			}
			raw, _ := base64.StdEncoding.DecodeString(auth.Data)
			if auth.Mech != "PLAIN" || string(raw) != "\x00bob\x00secret" || c.wrongPass {
				io.WriteString(tc, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>no</text></failure>")
				io.Copy(io.Discard, tc)
				return nil
			}
			io.WriteString(tc, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
			if _, err := readStart(); err != nil {
				return err
			}
			io.WriteString(tc, header+"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>")
			if st, err = readStart(); err != nil {
				return err
			}
			var q struct {
				ID       string `xml:"id,attr"`
				Resource string `xml:"bind>resource"`
			}
			if err := dec.DecodeElement(&q, &st); err != nil {
				return err
			}
			io.WriteString(tc, "<presence from='example.com'/>") // something else first
			if c.bindError {
				io.WriteString(tc, "<iq type='error' id='"+q.ID+"'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
			} else {
				io.WriteString(tc, "<iq type='result' id='"+q.ID+"'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>bob@example.com/"+q.Resource+"</jid></bind></iq>")
			}
			for {
				tok, err := dec.Token()
				if err != nil {
					return err
				}
				if _, ok := tok.(xml.EndElement); ok {
					return nil // the client closed its stream
				}
			}
		}()
	}()
	return errc
}

// attrValue returns an attribute of a start tag by local name.
func attrValue(st xml.StartElement, name string) string {
	for _, a := range st.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func TestXMPPLogin(t *testing.T) {
	ca := newTestCA(t, "edgesim local CA")
	srvCfg := ca.tlsServerConfig(t, "mra.example.com")
	verifyOK := func(st tls.ConnectionState) (Class, string) {
		return verifyPeer(st.PeerCertificates, "mra.example.com", "mra.sp.example", rulesXMPP, ca.pool(), time.Now())
	}
	verifyWrongHost := func(st tls.ConnectionState) (Class, string) {
		return verifyPeer(st.PeerCertificates, "other.example.com", "", rulesXMPP, ca.pool(), time.Now())
	}
	tests := []struct {
		name    string
		c       xmppCase
		pass    string
		verify  func(tls.ConnectionState) (Class, string)
		timeout time.Duration
		want    Class
		detail  string
	}{
		{"success", xmppCase{}, "secret", verifyOK, 0, ClassNone, "STARTTLS, TLS 1.3, SASL PLAIN, bound bob@example.com/edgesim"},
		{"no verify", xmppCase{}, "secret", nil, 0, ClassNone, "bound bob@example.com/edgesim"},
		{"proceed failure", xmppCase{refuseTLS: true}, "secret", verifyOK, 0, ClassXMPP, "<failure/>"},
		{"no starttls", xmppCase{noStartTLS: true}, "secret", verifyOK, 0, ClassXMPP, "did not offer STARTTLS"},
		{"stream error", xmppCase{streamError: true}, "secret", verifyOK, 0, ClassXMPP, "stream error <host-unknown>"},
		{"sasl failure", xmppCase{wrongPass: true}, "wrong", verifyOK, 0, ClassUnauthorized, `SASL PLAIN refused for user "bob": <not-authorized/>`},
		{"verify failure", xmppCase{}, "secret", verifyWrongHost, 0, ClassNameMismatch, "XMPP edge certificate: the certificate does not name other.example.com"},
		{"bind error", xmppCase{bindError: true}, "secret", nil, 0, ClassXMPP, "<not-allowed/>"},
		{"timeout", xmppCase{silent: true}, "secret", nil, 200 * time.Millisecond, ClassTimeout, "before STARTTLS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			errc := testXMPPEdge(t, ln, srvCfg, tc.c)
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			st, class, detail := xmppLogin(ctx, conn, xmppParams{
				Domain: "example.com", User: "bob", Password: tc.pass,
				TLS:    &tls.Config{ServerName: "mra.example.com", InsecureSkipVerify: true},
				Verify: tc.verify,
			})
			conn.Close()
			if class != tc.want || !strings.Contains(detail, tc.detail) {
				t.Errorf("xmppLogin = %q, %q; want %q with %q", class, detail, tc.want, tc.detail)
			}
			if tc.want == ClassNone && !st.HandshakeComplete {
				t.Error("no TLS state returned")
			}
			if err := <-errc; err != nil && tc.want == ClassNone {
				t.Errorf("edge side: %v", err)
			}
		})
	}
}

func TestXMPPLoginCanceled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := testXMPPEdge(t, ln, nil, xmppCase{silent: true})
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, class, detail := xmppLogin(ctx, conn, xmppParams{Domain: "example.com", User: "bob"})
	conn.Close()
	<-errc
	if class != ClassCanceled {
		t.Errorf("class %q (%s), want canceled", class, detail)
	}
}

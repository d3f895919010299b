package driver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// XMPP namespaces (RFC 6120).
const (
	xmppNSStreams = "http://etherx.jabber.org/streams"
	xmppNSClient  = "jabber:client"
	xmppNSTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	xmppNSSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	xmppNSBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	xmppNSStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
)

// xmppStageLimit bounds what the edge may send in each stage of the exchange (a stream header
// and its features, or one answer).
const xmppStageLimit = 64 << 10

// xmppResource is the resource the driver binds.
const xmppResource = "edgesim"

// errTooLarge is returned by a capReader once its budget is spent.
var errTooLarge = errors.New("the edge sent more than the size limit")

// capReader reads through a bufio.Reader and fails once n bytes have been read. It is an
// io.ByteReader, so an xml.Decoder on it reads no further than it parses: nothing that belongs
// to a TLS handshake after <proceed/> is consumed.
type capReader struct {
	br *bufio.Reader
	n  int
}

// ReadByte implements io.ByteReader.
func (c *capReader) ReadByte() (byte, error) {
	if c.n <= 0 {
		return 0, errTooLarge
	}
	c.n--
	return c.br.ReadByte()
}

// Read implements io.Reader.
func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errTooLarge
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.br.Read(p)
	c.n -= n
	return n, err
}

// xmppParams says how xmppLogin logs in.
type xmppParams struct {
	Domain, User, Password string
	// TLS is the client configuration for STARTTLS: ServerName already set to the SNI, and
	// InsecureSkipVerify true (Verify checks the certificate).
	TLS *tls.Config
	// Verify checks the handshake's outcome; nil means no check. A failure ends the exchange
	// with its class.
	Verify func(tls.ConnectionState) (Class, string)
}

// xmppFail is a failure of the exchange: its class and a sentence.
type xmppFail struct {
	class  Class
	detail string
}

func (f *xmppFail) Error() string { return f.detail }

// xmppStream is one side of an XMPP stream as the client reads and writes it.
type xmppStream struct {
	ctx  context.Context
	w    io.Writer
	in   *capReader
	dec  *xml.Decoder
	what string // the stage, for messages: "waiting for stream features"
}

// fail turns an I/O or parse error while reading into a classified failure.
func (s *xmppStream) fail(err error) *xmppFail {
	var f *xmppFail
	if errors.As(err, &f) {
		return f
	}
	class := ioClass(s.ctx, err, ClassXMPP)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &xmppFail{class, "the edge closed the connection " + s.what}
	case errors.Is(err, errTooLarge):
		return &xmppFail{ClassXMPP, fmt.Sprintf("the edge sent more than %d bytes %s", xmppStageLimit, s.what)}
	}
	return &xmppFail{class, fmt.Sprintf("%s: %v", s.what, err)}
}

// send writes raw XML.
func (s *xmppStream) send(x string) *xmppFail {
	if _, err := io.WriteString(s.w, x); err != nil {
		return &xmppFail{ioClass(s.ctx, err, ClassXMPP), fmt.Sprintf("sending to the edge %s: %v", s.what, err)}
	}
	return nil
}

// open sends the client's stream header and reads the edge's, then its features.
func (s *xmppStream) open(domain string) (*xmppFeatures, *xmppFail) {
	s.in.n = xmppStageLimit
	s.dec = xml.NewDecoder(s.in)
	var b strings.Builder
	b.WriteString("<?xml version='1.0'?><stream:stream to='")
	xml.EscapeText(&b, []byte(domain))
	b.WriteString("' version='1.0' xml:lang='en' xmlns='" + xmppNSClient + "' xmlns:stream='" + xmppNSStreams + "'>")
	if f := s.send(b.String()); f != nil {
		return nil, f
	}
	for {
		tok, err := s.dec.Token()
		if err != nil {
			return nil, s.fail(err)
		}
		if st, ok := tok.(xml.StartElement); ok {
			if st.Name.Space != xmppNSStreams || st.Name.Local != "stream" {
				return nil, &xmppFail{ClassXMPP, fmt.Sprintf("the edge answered <%s xmlns='%s'>, not a stream header, %s", st.Name.Local, st.Name.Space, s.what)}
			}
			break
		}
	}
	st, f := s.next()
	if f != nil {
		return nil, f
	}
	if st.Name.Space != xmppNSStreams || st.Name.Local != "features" {
		s.dec.Skip()
		return nil, &xmppFail{ClassXMPP, fmt.Sprintf("the edge sent <%s> instead of stream features %s", st.Name.Local, s.what)}
	}
	var feats xmppFeatures
	if err := s.dec.DecodeElement(&feats, &st); err != nil {
		return nil, s.fail(err)
	}
	return &feats, nil
}

// xmppFeatures is what the client reads of <stream:features>.
type xmppFeatures struct {
	StartTLS   *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
	Mechanisms []string  `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms>mechanism"`
	Bind       *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
}

// next returns the edge's next top-level element, resetting the stage's size budget. A stream
// error, or the end of the edge's stream, is a failure.
func (s *xmppStream) next() (xml.StartElement, *xmppFail) {
	for {
		tok, err := s.dec.Token()
		if err != nil {
			return xml.StartElement{}, s.fail(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == xmppNSStreams && t.Name.Local == "error" {
				var se struct {
					Conds []struct {
						XMLName xml.Name
					} `xml:",any"`
				}
				if err := s.dec.DecodeElement(&se, &t); err != nil {
					return t, s.fail(err)
				}
				var conds []string
				for _, c := range se.Conds {
					conds = append(conds, c.XMLName.Local)
				}
				return t, &xmppFail{ClassXMPP, fmt.Sprintf("the edge sent stream error <%s> %s", strings.Join(conds, "> <"), s.what)}
			}
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, &xmppFail{ClassXMPP, "the edge closed the stream " + s.what}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return xml.StartElement{}, &xmppFail{ClassXMPP, "the edge sent text outside any element " + s.what}
			}
		}
	}
}

// xmppLogin runs a Jabber client's XMPP login on conn, an open TCP connection to the XMPP edge:
// stream header, STARTTLS (required), the TLS handshake with p.TLS, p.Verify, a restarted stream,
// SASL PLAIN, another restart, and binding the resource "edgesim"; then it closes the stream.
// It returns the TLS state (zero before a handshake), the class of the failure (ClassNone on
// success) and a sentence, such as "STARTTLS, TLS 1.3, SASL PLAIN, bound bob@example.com/edgesim".
// ctx's deadline and cancellation apply to conn.
func xmppLogin(ctx context.Context, conn net.Conn, p xmppParams) (tls.ConnectionState, Class, string) {
	stop := watchConn(ctx, conn)
	defer stop()
	var state tls.ConnectionState
	br := bufio.NewReader(conn)
	s := &xmppStream{ctx: ctx, w: conn, in: &capReader{br: br}, what: "before STARTTLS"}
	feats, f := s.open(p.Domain)
	if f != nil {
		return state, f.class, f.detail
	}
	if feats.StartTLS == nil {
		return state, ClassXMPP, "the edge did not offer STARTTLS in its stream features"
	}
	if f := s.send("<starttls xmlns='" + xmppNSTLS + "'/>"); f != nil {
		return state, f.class, f.detail
	}
	s.in.n = xmppStageLimit
	s.what = "after <starttls/>"
	st, f := s.next()
	if f != nil {
		return state, f.class, f.detail
	}
	switch {
	case st.Name.Space == xmppNSTLS && st.Name.Local == "proceed":
	case st.Name.Local == "failure":
		return state, ClassXMPP, "the edge answered <failure/> to <starttls/>: it would not start TLS"
	default:
		return state, ClassXMPP, fmt.Sprintf("the edge answered <%s xmlns='%s'> to <starttls/>, want <proceed/>", st.Name.Local, st.Name.Space)
	}
	if n := br.Buffered(); n > 0 {
		return state, ClassXMPP, fmt.Sprintf("the edge sent %d bytes after <proceed/> before the TLS handshake", n)
	}
	if p.TLS == nil {
		return state, ClassHandshake, "no TLS configuration for STARTTLS"
	}
	tc := tls.Client(conn, p.TLS)
	if err := tc.HandshakeContext(ctx); err != nil {
		class := ioClass(ctx, err, ClassHandshake)
		if class == ClassConnect {
			class = ClassHandshake
		}
		return state, class, fmt.Sprintf("TLS handshake after STARTTLS (SNI %s): %v", p.TLS.ServerName, err)
	}
	state = tc.ConnectionState()
	if p.Verify != nil {
		if class, detail := p.Verify(state); class != ClassNone {
			return state, class, "XMPP edge certificate: " + detail
		}
	}

	br.Reset(tc)
	s = &xmppStream{ctx: ctx, w: tc, in: &capReader{br: br}, what: "after STARTTLS"}
	jid, f := s.authAndBind(p)
	if f != nil {
		return state, f.class, f.detail
	}
	s.send("</stream:stream>")
	return state, ClassNone, fmt.Sprintf("STARTTLS, %s, SASL PLAIN, bound %s", tls.VersionName(state.Version), jid)
}

// authAndBind runs the TLS part of the login: SASL PLAIN, then resource binding. It returns the
// bound JID.
func (s *xmppStream) authAndBind(p xmppParams) (string, *xmppFail) {
	feats, f := s.open(p.Domain)
	if f != nil {
		return "", f
	}
	plain := false
	for _, m := range feats.Mechanisms {
		plain = plain || strings.TrimSpace(m) == "PLAIN"
	}
	if !plain {
		return "", &xmppFail{ClassXMPP, fmt.Sprintf("the edge does not offer SASL PLAIN (offers: %s)", strings.Join(feats.Mechanisms, " "))}
	}
	cred := base64.StdEncoding.EncodeToString([]byte("\x00" + p.User + "\x00" + p.Password))
	if f := s.send("<auth xmlns='" + xmppNSSASL + "' mechanism='PLAIN'>" + cred + "</auth>"); f != nil {
		return "", f
	}
	s.what = "after SASL PLAIN"
	for tries := 0; ; tries++ {
		s.in.n = xmppStageLimit
		st, f := s.next()
		if f != nil {
			return "", f
		}
		if st.Name.Space != xmppNSSASL {
			s.dec.Skip()
			return "", &xmppFail{ClassXMPP, fmt.Sprintf("the edge answered <%s xmlns='%s'> to SASL PLAIN", st.Name.Local, st.Name.Space)}
		}
		switch st.Name.Local {
		case "success":
			if err := s.dec.Skip(); err != nil {
				return "", s.fail(err)
			}
		case "challenge": // an edge that ignored the initial response asks for it
			if err := s.dec.Skip(); err != nil {
				return "", s.fail(err)
			}
			if tries > 0 {
				return "", &xmppFail{ClassXMPP, "the edge sent a second SASL challenge to PLAIN"}
			}
			if f := s.send("<response xmlns='" + xmppNSSASL + "'>" + cred + "</response>"); f != nil {
				return "", f
			}
			continue
		case "failure":
			var fail struct {
				Conds []struct{ XMLName xml.Name } `xml:",any"`
			}
			if err := s.dec.DecodeElement(&fail, &st); err != nil {
				return "", s.fail(err)
			}
			cond := "no condition"
			for _, c := range fail.Conds {
				if c.XMLName.Local != "text" {
					cond = c.XMLName.Local
					break
				}
			}
			s.send("</stream:stream>")
			class := ClassXMPP
			switch cond {
			case "not-authorized", "account-disabled", "credentials-expired", "invalid-authzid":
				class = ClassUnauthorized
			}
			return "", &xmppFail{class, fmt.Sprintf("SASL PLAIN refused for user %q: <%s/>", p.User, cond)}
		default:
			s.dec.Skip()
			return "", &xmppFail{ClassXMPP, fmt.Sprintf("the edge answered <%s/> to SASL PLAIN", st.Name.Local)}
		}
		break
	}

	s.what = "after SASL success"
	feats, f = s.open(p.Domain)
	if f != nil {
		return "", f
	}
	if feats.Bind == nil {
		return "", &xmppFail{ClassXMPP, "the edge did not offer resource binding after SASL"}
	}
	const id = "edgesim-bind-1"
	if f := s.send("<iq type='set' id='" + id + "'><bind xmlns='" + xmppNSBind + "'><resource>" + xmppResource + "</resource></bind></iq>"); f != nil {
		return "", f
	}
	s.what = "waiting for the resource binding result"
	for skipped := 0; ; skipped++ {
		s.in.n = xmppStageLimit
		st, f := s.next()
		if f != nil {
			return "", f
		}
		var q struct {
			Type string `xml:"type,attr"`
			ID   string `xml:"id,attr"`
			JID  string `xml:"urn:ietf:params:xml:ns:xmpp-bind bind>jid"`
			Err  *struct {
				Conds []struct{ XMLName xml.Name } `xml:",any"`
			} `xml:"error"`
		}
		if err := s.dec.DecodeElement(&q, &st); err != nil {
			return "", s.fail(err)
		}
		if st.Name.Local != "iq" || q.ID != id {
			if skipped > 16 {
				return "", &xmppFail{ClassXMPP, "the edge sent many stanzas but no answer to the resource binding request"}
			}
			continue // presence, messages or other IQs may come first
		}
		switch {
		case q.Type == "result" && strings.TrimSpace(q.JID) != "":
			return strings.TrimSpace(q.JID), nil
		case q.Type == "result":
			return "", &xmppFail{ClassXMPP, "the resource binding result carries no <jid>"}
		case q.Type == "error":
			cond := "no condition"
			if q.Err != nil {
				for _, c := range q.Err.Conds {
					if c.XMLName.Space == xmppNSStanzas && c.XMLName.Local != "text" {
						cond = c.XMLName.Local
						break
					}
				}
			}
			return "", &xmppFail{ClassXMPP, fmt.Sprintf("the edge refused to bind resource %q: <%s/>", xmppResource, cond)}
		default:
			return "", &xmppFail{ClassXMPP, fmt.Sprintf("the edge answered the resource binding request with iq type %q", q.Type)}
		}
	}
}

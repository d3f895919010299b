package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/edgesim/edgesim/tenant"
	"go.uber.org/zap"
)

// XMPP namespaces (RFC 6120).
const (
	nsStreams   = "http://etherx.jabber.org/streams"
	nsClient    = "jabber:client"
	nsTLS       = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL      = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind      = "urn:ietf:params:xml:ns:xmpp-bind"
	nsStreamErr = "urn:ietf:params:xml:ns:xmpp-streams"
)

// Bounds on what a client may send: the whole plaintext exchange before TLS (a stream header
// and <starttls/>, a few hundred bytes; encoding/xml holds about 9 bytes of heap per byte of
// attributes while a client stalls inside a tag), then each element.
const (
	xmppPreTLSLimit  = 8 << 10
	xmppElementLimit = 64 << 10
	xmppMaxAuthTries = 3
	// xmppPreAuthLimit bounds each stream header, and each element before SASL succeeds (an
	// <auth/> with PLAIN credentials is a few hundred bytes): a client that has not logged in
	// and stalls inside a tag holds at most about 75 KB, where 64 KiB of attributes held about
	// 560 KB.
	xmppPreAuthLimit = 8 << 10
)

// xmppMaxDepth bounds element nesting; the stream element is level 1. encoding/xml keeps a
// record of about 100 bytes per open element, so without a bound 64 KiB of "<a>" held 2 MB of
// heap per connection for as long as the client stalled (before STARTTLS: no TLS, no login).
const xmppMaxDepth = 32

// Why a stream ended early.
var (
	errXMPPTooDeep      = fmt.Errorf("%w: elements nested deeper than %d", errXMPPTooLarge, xmppMaxDepth)
	errXMPPTooLarge     = errors.New("xmpp: client sent more than the size limit")
	errXMPPStreamError  = errors.New("xmpp: stream error sent")
	errXMPPNoStartTLS   = errors.New("xmpp: client sent something other than <starttls/> before TLS")
	errXMPPClosed       = errors.New("xmpp: client closed the stream")
	errXMPPShuttingDown = errors.New("xmpp: edge shutting down")
)

const (
	featuresStartTLS = "<stream:features><starttls xmlns='" + nsTLS + "'><required/></starttls></stream:features>"
	featuresSASL     = "<stream:features><mechanisms xmlns='" + nsSASL + "'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
	featuresBind     = "<stream:features><bind xmlns='" + nsBind + "'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session></stream:features>"
	xmlProceed       = "<proceed xmlns='" + nsTLS + "'/>"
	xmlTLSFailure    = "<failure xmlns='" + nsTLS + "'/></stream:stream>"
	xmlStreamEnd     = "</stream:stream>"
)

// byteBudget is what an xml.Decoder reads through. It is an io.ByteReader, so the decoder reads
// no further than it parses (what follows <starttls/> belongs to TLS), and it fails once n bytes
// have been read.
type byteBudget struct {
	br *bufio.Reader
	n  int
}

func (b *byteBudget) ReadByte() (byte, error) {
	if b.n <= 0 {
		return 0, errXMPPTooLarge
	}
	b.n--
	return b.br.ReadByte()
}

// startsElement skips whitespace and reports errNotWellFormed unless an element (or the
// stream's end tag) follows: the decoder would otherwise wait for a '<' that may never come. Call
// it only where the decoder holds no byte of its own (after a start or end tag).
func (b *byteBudget) startsElement() error {
	for {
		if b.n <= 0 {
			return errXMPPTooLarge
		}
		p, err := b.br.Peek(1)
		if err != nil {
			return err
		}
		switch p[0] {
		case ' ', '\t', '\r', '\n':
			b.br.Discard(1)
			b.n--
		case '<':
			return nil
		default:
			return errNotWellFormed
		}
	}
}

func (b *byteBudget) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errXMPPTooLarge
	}
	if len(p) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= n
	return n, err
}

// depthLimit feeds an XMPP decoder the raw tokens of raw, failing with errXMPPTooDeep before
// elements nest deeper than xmppMaxDepth. The decoder built on it checks that tags match and
// translates namespaces, so raw keeps no record of open elements.
type depthLimit struct {
	raw   *xml.Decoder
	depth int
}

func (d *depthLimit) Token() (xml.Token, error) {
	tok, err := d.raw.RawToken()
	switch tok.(type) {
	case xml.StartElement:
		if d.depth++; d.depth > xmppMaxDepth {
			return nil, errXMPPTooDeep
		}
	case xml.EndElement:
		d.depth--
	}
	return tok, err
}

// newXMPPDecoder returns a decoder of r whose elements may nest xmppMaxDepth deep.
func newXMPPDecoder(r io.Reader) *xml.Decoder {
	return xml.NewTokenDecoder(&depthLimit{raw: xml.NewDecoder(r)})
}

// xmppPreTLS runs the plaintext start of a client stream (RFC 6120 §5.4.2). It reads the client's
// stream header from in and answers on w with the edge's header and STARTTLS-required features,
// then reads the next element, which must be <starttls/>, and answers <proceed/>. It returns the
// stream's service domain (as lookup canonicalises it) when TLS should start. Any other outcome
// is an error, after the stream has been closed on w as RFC 6120 prescribes. in bounds what the
// client may send; the caller also sets a deadline.
func xmppPreTLS(in *byteBudget, w io.Writer, lookup func(domain string) (string, bool), edgeHost string) (string, error) {
	dec := newXMPPDecoder(in)
	err := in.startsElement()
	var start xml.StartElement
	if err == nil {
		start, err = readStreamHeader(dec)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", err
		}
		writeStreamError(w, true, edgeHost, streamErrorFor(err))
		return "", err
	}
	if cond := checkStreamHeader(start); cond != "" {
		writeStreamError(w, true, edgeHost, cond)
		return "", errXMPPStreamError
	}
	domain, ok := lookup(attr(start, "", "to"))
	if !ok {
		writeStreamError(w, true, edgeHost, "host-unknown")
		return "", errXMPPStreamError
	}
	if _, err := io.WriteString(w, streamHeader(domain)+featuresStartTLS); err != nil {
		return "", err
	}
	var tok xml.Token
	if err = in.startsElement(); err == nil {
		tok, err = nextElement(dec)
	}
	switch t := tok.(type) {
	case nil:
		if !errors.Is(err, io.EOF) {
			writeStreamError(w, false, "", streamErrorFor(err))
		}
		return "", err
	case xml.EndElement:
		io.WriteString(w, xmlStreamEnd)
		return "", errXMPPClosed
	case xml.StartElement:
		if t.Name.Space != nsTLS || t.Name.Local != "starttls" {
			io.WriteString(w, xmlTLSFailure)
			return "", errXMPPNoStartTLS
		}
		if err := dec.Skip(); err != nil {
			writeStreamError(w, false, "", streamErrorFor(err))
			return "", err
		}
	}
	if _, err := io.WriteString(w, xmlProceed); err != nil {
		return "", err
	}
	return domain, nil
}

// readStreamHeader reads up to and including the client's <stream:stream> start tag.
func readStreamHeader(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return xml.StartElement{}, errNotWellFormed
			}
		case xml.StartElement:
			return t, nil
		default:
			return xml.StartElement{}, errNotWellFormed
		}
	}
}

var errNotWellFormed = errors.New("xmpp: not a stream")

// nextElement returns the next top-level StartElement, or the EndElement closing the stream.
// Whitespace between elements is skipped; tok is nil when err is set.
func nextElement(dec *xml.Decoder) (xml.Token, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement, xml.EndElement:
			return t, nil
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return nil, errNotWellFormed
			}
		default:
			return nil, errNotWellFormed
		}
	}
}

// checkStreamHeader returns the stream error condition a client header deserves, or "".
func checkStreamHeader(s xml.StartElement) string {
	switch {
	case s.Name.Space != nsStreams || s.Name.Local != "stream":
		return "invalid-namespace"
	case attr(s, "", "xmlns") != nsClient:
		return "invalid-namespace"
	case !strings.HasPrefix(attr(s, "", "version"), "1."):
		return "unsupported-version"
	}
	return ""
}

func attr(s xml.StartElement, space, local string) string {
	for _, a := range s.Attr {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// streamErrorFor maps a read error to a stream error condition.
func streamErrorFor(err error) string {
	switch {
	case errors.Is(err, errXMPPTooLarge):
		return "policy-violation"
	case isTimeout(err):
		return "connection-timeout"
	}
	return "not-well-formed"
}

// streamHeader is the edge's answering stream header; from is a validated domain name.
func streamHeader(from string) string {
	return "<?xml version='1.0'?><stream:stream from='" + from + "' id='" + rand.Text() +
		"' version='1.0' xml:lang='en' xmlns='" + nsClient + "' xmlns:stream='" + nsStreams + "'>"
}

// writeStreamError closes a stream with a stream error; withHeader first opens the edge's side of
// the stream, which RFC 6120 §4.9.1.3 requires when it has not been sent yet.
func writeStreamError(w io.Writer, withHeader bool, from, cond string) {
	s := "<stream:error><" + cond + " xmlns='" + nsStreamErr + "'/></stream:error>" + xmlStreamEnd
	if withHeader {
		s = streamHeader(from) + s
	}
	io.WriteString(w, s)
}

// lookupDomain canonicalises a stream's "to" through the tenant directory.
func (e *Edge) lookupDomain(to string) (string, bool) {
	t, ok := e.cfg.Tenants.Lookup(to)
	if !ok {
		return "", false
	}
	return t.Domain, true
}

// deadlineWriter gives each write its own deadline. Before TLS the read deadline bounds the
// client; a write deadline of its own lets the connection-timeout stream error that answers an
// expired read still go out (with one shared deadline it could never be sent).
type deadlineWriter struct {
	c net.Conn
	d time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.d))
	return w.c.Write(p)
}

// prefixConn replays bytes read ahead of the TLS handshake (a client that did not wait for
// <proceed/>) before reading the connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// serveXMPP runs STARTTLS, then the TLS stream: SASL PLAIN, resource binding, then stanzas until
// the client closes the stream, the idle timeout or shutdown.
func (e *Edge) serveXMPP(sc *serverConn) bool {
	raw := sc.raw
	raw.SetReadDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(raw, 2048)
	in := &byteBudget{br: br, n: xmppPreTLSLimit}
	domain, err := xmppPreTLS(in, deadlineWriter{raw, e.cfg.HandshakeTimeout}, e.lookupDomain, e.cfg.EdgeHost)
	if err != nil {
		if ce := e.log.Check(zap.DebugLevel, "xmpp stream ended before tls"); ce != nil {
			ce.Write(zap.Stringer("remote", raw.RemoteAddr()), zap.Error(err))
		}
		return false
	}
	var conn net.Conn = raw
	if n := br.Buffered(); n > 0 {
		early, _ := br.Peek(n)
		conn = &prefixConn{Conn: raw, r: io.MultiReader(bytes.NewReader(bytes.Clone(early)), raw)}
	}
	tc, err := e.handshake(sc, conn)
	if err != nil {
		return false
	}
	t, ok := e.cfg.Tenants.Lookup(domain)
	if !ok {
		tc.Close()
		return false
	}
	br.Reset(tc)
	s := &xmppSession{e: e, sc: sc, tc: tc, br: br, in: byteBudget{br: br}, t: t}
	err = s.run()
	if !s.writeFailed {
		// close_notify. After a failed write the client is not reading, and crypto/tls would
		// wait up to 5 s more to send it; handle closes the socket instead.
		tc.Close()
	}
	if ce := e.log.Check(zap.DebugLevel, "xmpp stream ended"); ce != nil {
		ce.Write(zap.String("domain", domain), zap.Stringer("remote", raw.RemoteAddr()), zap.Error(err))
	}
	return false
}

// xmppSession is one client stream after TLS.
type xmppSession struct {
	e     *Edge
	sc    *serverConn
	tc    net.Conn
	br    *bufio.Reader
	in    byteBudget
	dec   *xml.Decoder
	t     *tenant.Tenant
	user  string // local part after SASL
	bound bool

	headerSent  bool // the edge has opened its side of the current stream
	writeFailed bool // a write to the client failed (timed out): no close_notify
}

func (s *xmppSession) run() error {
	if err := s.openStream(featuresSASL); err != nil {
		return s.fail(err)
	}
	if err := s.authenticate(); err != nil {
		return s.fail(err)
	}
	if err := s.openStream(featuresBind); err != nil {
		return s.fail(err)
	}
	return s.fail(s.stanzas())
}

// fail closes the stream in the way err calls for and returns err.
func (s *xmppSession) fail(err error) error {
	switch {
	case err == nil, errors.Is(err, errXMPPStreamError), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
	case errors.Is(err, errXMPPClosed):
		s.write(xmlStreamEnd)
	case errors.Is(err, errXMPPShuttingDown):
		writeStreamError(s.writer(), !s.headerSent, s.t.Domain, "system-shutdown")
	default:
		writeStreamError(s.writer(), !s.headerSent, s.t.Domain, streamErrorFor(err))
	}
	return err
}

func (s *xmppSession) writer() io.Writer { return s }

// Write writes p to the client within the handshake timeout and notes a failure.
func (s *xmppSession) Write(p []byte) (int, error) {
	s.sc.raw.SetWriteDeadline(time.Now().Add(s.e.cfg.HandshakeTimeout))
	n, err := s.tc.Write(p)
	if err != nil {
		s.writeFailed = true
	}
	return n, err
}

func (s *xmppSession) write(str string) error {
	_, err := io.WriteString(s.writer(), str)
	return err
}

// waitIdle waits, as an idle connection that Shutdown may end, for the first byte of the
// client's next element, skipping whitespace keep-alives. Call it only where the decoder holds
// no byte of its own (after a start or end tag).
func (s *xmppSession) waitIdle() error {
	s.sc.raw.SetReadDeadline(time.Now().Add(s.e.cfg.IdleTimeout))
	if s.e.idle(s.sc) {
		return errXMPPShuttingDown
	}
	for {
		b, err := s.br.Peek(1)
		if err != nil {
			if s.e.shutting.Load() && isTimeout(err) {
				return errXMPPShuttingDown
			}
			return err
		}
		if c := b[0]; c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			if c != '<' {
				return errNotWellFormed
			}
			break
		}
		s.br.Discard(1)
		if s.e.shutting.Load() {
			return errXMPPShuttingDown // a keep-alive does not hold a draining edge open
		}
		s.sc.raw.SetReadDeadline(time.Now().Add(s.e.cfg.IdleTimeout))
	}
	if !s.sc.active() {
		return errXMPPShuttingDown
	}
	s.in.n = xmppPreAuthLimit
	if s.user != "" {
		s.in.n = xmppElementLimit
	}
	return nil
}

// next returns the client's next top-level element, or errXMPPClosed when it closed the stream.
func (s *xmppSession) next() (start xml.StartElement, err error) {
	if err := s.waitIdle(); err != nil {
		return start, err
	}
	tok, err := nextElement(s.dec)
	switch t := tok.(type) {
	case xml.StartElement:
		return t, nil
	case xml.EndElement:
		return start, errXMPPClosed
	}
	return start, err
}

// openStream reads the client's (re)started stream header and answers with features.
func (s *xmppSession) openStream(features string) error {
	s.dec = newXMPPDecoder(&s.in)
	s.headerSent = false
	if err := s.waitIdle(); err != nil {
		return err
	}
	s.in.n = xmppPreAuthLimit // a stream header, logged in or not
	start, err := readStreamHeader(s.dec)
	if err != nil {
		return err
	}
	cond := checkStreamHeader(start)
	if cond == "" && tenant.Normalize(attr(start, "", "to")) != s.t.Domain {
		cond = "host-unknown"
	}
	if cond != "" {
		writeStreamError(s.writer(), true, s.t.Domain, cond)
		return errXMPPStreamError
	}
	s.headerSent = true
	return s.write(streamHeader(s.t.Domain) + features)
}

// authenticate runs SASL PLAIN (RFC 4616) against the tenant's users, allowing a few attempts.
func (s *xmppSession) authenticate() error {
	for tries := 0; tries < xmppMaxAuthTries; {
		start, err := s.next()
		if err != nil {
			return err
		}
		switch {
		case start.Name.Space == nsSASL && start.Name.Local == "auth":
		case start.Name.Space == nsSASL && start.Name.Local == "abort":
			if err := s.dec.Skip(); err != nil {
				return err
			}
			s.write(saslFailure("aborted"))
			continue
		default:
			writeStreamError(s.writer(), false, "", "not-authorized")
			return errXMPPStreamError
		}
		var auth struct {
			Mechanism string `xml:"mechanism,attr"`
			Data      string `xml:",chardata"`
		}
		if err := s.dec.DecodeElement(&auth, &start); err != nil {
			return err
		}
		if auth.Mechanism != "PLAIN" {
			s.write(saslFailure("invalid-mechanism"))
			continue
		}
		data := strings.TrimSpace(auth.Data)
		if data == "" { // no initial response: ask for it with an empty challenge
			s.write("<challenge xmlns='" + nsSASL + "'/>")
			resp, err := s.next()
			if err != nil {
				return err
			}
			if resp.Name.Space != nsSASL || resp.Name.Local != "response" {
				writeStreamError(s.writer(), false, "", "not-authorized")
				return errXMPPStreamError
			}
			if err := s.dec.DecodeElement(&auth, &resp); err != nil {
				return err
			}
			data = strings.TrimSpace(auth.Data)
		}
		tries++
		user, cond := s.checkPlain(data)
		if cond != "" {
			s.e.m.xmppLogins[0].Inc()
			s.write(saslFailure(cond))
			continue
		}
		s.e.m.xmppLogins[1].Inc()
		s.user = user
		return s.write("<success xmlns='" + nsSASL + "'/>")
	}
	s.write(xmlStreamEnd)
	return errXMPPStreamError
}

// checkPlain verifies a base64 SASL PLAIN message (authzid NUL authcid NUL password) and returns
// the user's local part, or the SASL failure condition.
func (s *xmppSession) checkPlain(data string) (user, cond string) {
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return "", "incorrect-encoding"
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return "", "malformed-request"
	}
	authzid, authcid, password := parts[0], parts[1], parts[2]
	local, _, _ := strings.Cut(authcid, "@")
	if authzid != "" && !strings.EqualFold(authzid, local+"@"+s.t.Domain) && !strings.EqualFold(authzid, authcid) {
		return "", "invalid-authzid"
	}
	if !checkUser(s.t, authcid, password) {
		return "", "not-authorized"
	}
	return strings.ToLower(local), ""
}

func saslFailure(cond string) string {
	return "<failure xmlns='" + nsSASL + "'><" + cond + "/></failure>"
}

// iq is the part of an IQ stanza the edge answers.
type iq struct {
	Type string `xml:"type,attr"`
	ID   string `xml:"id,attr"`
	Bind *struct {
		Resource string `xml:"resource"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
	Session *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-session session"`
	Ping    *struct{} `xml:"urn:xmpp:ping ping"`
}

// stanzas answers resource binding, session, ping and other IQs until the stream ends; message
// and presence stanzas are accepted and dropped.
func (s *xmppSession) stanzas() error {
	for {
		start, err := s.next()
		if err != nil {
			return err
		}
		if start.Name.Local != "iq" || start.Name.Space != nsClient {
			if err := s.dec.Skip(); err != nil {
				return err
			}
			continue
		}
		var q iq
		if err := s.dec.DecodeElement(&q, &start); err != nil {
			return err
		}
		if q.Type != "get" && q.Type != "set" {
			continue
		}
		var b strings.Builder
		b.WriteString("<iq type='result' id='")
		xml.EscapeText(&b, []byte(q.ID))
		b.WriteString("'>")
		switch {
		case q.Bind != nil && q.Type == "set":
			resource := strings.TrimSpace(q.Bind.Resource)
			if resource == "" || len(resource) > 1023 {
				resource = "edgesim-" + rand.Text()[:8]
			}
			b.WriteString("<bind xmlns='" + nsBind + "'><jid>")
			xml.EscapeText(&b, []byte(s.user+"@"+s.t.Domain+"/"+resource))
			b.WriteString("</jid></bind></iq>")
			if !s.bound {
				s.bound = true
				s.e.m.xmppStreams.Inc()
			}
		case q.Session != nil && q.Type == "set", q.Ping != nil && q.Type == "get":
			b.WriteString("</iq>")
		default:
			b.Reset()
			b.WriteString("<iq type='error' id='")
			xml.EscapeText(&b, []byte(q.ID))
			b.WriteString("'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
		}
		if err := s.write(b.String()); err != nil {
			return err
		}
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds on one SIP message (DESIGN.md: SIP over TLS on 5061).
const (
	sipMaxHeader     = 16 << 10 // start line and header block, including line ends
	sipMaxBody       = 64 << 10 // Content-Length
	sipDefaultExpiry = 3600     // REGISTER Expires when the request names none
)

// Errors from reading a SIP message. The first three end the connection after a response.
var (
	errSIPHeaderTooLarge = errors.New("sip: header block over 16 KiB")
	errSIPBodyTooLarge   = errors.New("sip: Content-Length over 64 KiB")
	errSIPMalformed      = errors.New("sip: malformed message")
)

var crlf = []byte("\r\n")

// sipMsg is what read found on the stream.
type sipMsg uint8

const (
	msgRequest  sipMsg = iota // a request, parsed
	msgResponse               // a response from the client: consumed and ignored
	msgPing                   // CRLFCRLF keep-alive (RFC 5626): answer CRLF
	msgPong                   // a lone CRLF: nothing to answer
)

// Header kinds the edge reads or echoes; hOther is everything else.
type sipHeaderKind uint8

const (
	hOther sipHeaderKind = iota
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hContentLength
	hContact
	hExpires
	numHeaderKinds
)

// sipHeaderNames maps long and compact (RFC 3261 §7.3.3) names, lower case, to kinds.
var sipHeaderNames = [...]struct {
	long, compact string
	kind          sipHeaderKind
}{
	{"via", "v", hVia}, {"from", "f", hFrom}, {"to", "t", hTo}, {"call-id", "i", hCallID},
	{"cseq", "", hCSeq}, {"content-length", "l", hContentLength}, {"contact", "m", hContact},
	{"expires", "", hExpires},
}

type span struct{ off, end int }

type sipHeader struct {
	kind  sipHeaderKind
	value span
}

// sipReader parses SIP messages from a stream with bounded memory. Its buffers are reused from
// message to message, so steady-state parsing does not allocate. Not safe for concurrent use.
type sipReader struct {
	br            *bufio.Reader
	buf           []byte // the current message's raw start line and header lines
	method, uri   span
	hdrs          []sipHeader
	first         [numHeaderKinds]int // 1 + index in hdrs of the first header of a kind; 0 = absent
	contentLength int
	out           []byte // response being built
}

var sipReaderPool = sync.Pool{New: func() any {
	return &sipReader{br: bufio.NewReaderSize(nil, 4096), buf: make([]byte, 0, 1024), hdrs: make([]sipHeader, 0, 16), out: make([]byte, 0, 1024)}
}}

func (r *sipReader) bytes(s span) []byte { return r.buf[s.off:s.end] }

// header returns the value of the first header of kind k.
func (r *sipReader) header(k sipHeaderKind) ([]byte, bool) {
	i := r.first[k]
	if i == 0 {
		return nil, false
	}
	return r.bytes(r.hdrs[i-1].value), true
}

// line appends one line to r.buf and returns it without its line end (LF or CRLF). budget is
// what remains of the header block's size limit.
func (r *sipReader) line(budget *int) (span, error) {
	start := len(r.buf)
	for {
		chunk, err := r.br.ReadSlice('\n')
		*budget -= len(chunk)
		if *budget < 0 {
			return span{}, errSIPHeaderTooLarge
		}
		r.buf = append(r.buf, chunk...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(r.buf) > start {
				err = io.ErrUnexpectedEOF
			}
			return span{}, err
		}
	}
	end := len(r.buf) - 1
	if end > start && r.buf[end-1] == '\r' {
		end--
	}
	return span{start, end}, nil
}

// read reads the next message. On errSIPHeaderTooLarge, errSIPBodyTooLarge and errSIPMalformed
// the headers read so far are available for an error response; the stream is then out of step.
func (r *sipReader) read() (sipMsg, error) {
	r.buf, r.hdrs, r.first, r.contentLength = r.buf[:0], r.hdrs[:0], [numHeaderKinds]int{}, 0
	r.method, r.uri = span{}, span{}
	budget := sipMaxHeader
	var start span
	for blank := 1; ; blank++ { // keep-alive CRLFs before the start line
		s, err := r.line(&budget)
		if err != nil {
			return 0, err
		}
		if s.end > s.off {
			start = s
			break
		}
		budget, r.buf = sipMaxHeader, r.buf[:0]
		if blank == 2 {
			return msgPing, nil
		}
		if r.br.Buffered() == 0 {
			return msgPong, nil
		}
	}
	kind := msgRequest
	if bytes.HasPrefix(r.bytes(start), []byte("SIP/")) {
		kind = msgResponse
	} else if !r.parseRequestLine(start) {
		return 0, errSIPMalformed
	}
	for {
		s, err := r.line(&budget)
		if err != nil {
			return 0, err
		}
		if s.end == s.off {
			break
		}
		if c := r.buf[s.off]; c == ' ' || c == '\t' { // folded continuation of the previous header
			if len(r.hdrs) == 0 {
				return 0, errSIPMalformed
			}
			h := &r.hdrs[len(r.hdrs)-1]
			cont := bytes.TrimSpace(r.bytes(s))
			joined := len(r.buf)
			r.buf = append(r.buf, r.buf[h.value.off:h.value.end]...)
			r.buf = append(r.buf, ' ')
			r.buf = append(r.buf, cont...)
			h.value = span{joined, len(r.buf)}
			continue
		}
		line := r.bytes(s)
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, errSIPMalformed
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !isToken(name) {
			return 0, errSIPMalformed
		}
		v := s.off + colon + 1
		for v < s.end && (r.buf[v] == ' ' || r.buf[v] == '\t') {
			v++
		}
		e := s.end
		for e > v && (r.buf[e-1] == ' ' || r.buf[e-1] == '\t') {
			e--
		}
		k := headerKind(name)
		r.hdrs = append(r.hdrs, sipHeader{k, span{v, e}})
		if r.first[k] == 0 {
			r.first[k] = len(r.hdrs)
		}
	}
	if cl, ok := r.header(hContentLength); ok {
		n, ok := parseDigits(cl)
		switch {
		case !ok:
			return 0, errSIPMalformed
		case n > sipMaxBody:
			return 0, errSIPBodyTooLarge
		}
		r.contentLength = n
	}
	if r.contentLength > 0 {
		if _, err := r.br.Discard(r.contentLength); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	return kind, nil
}

// parseRequestLine splits "METHOD SP Request-URI SP SIP/2.0".
func (r *sipReader) parseRequestLine(s span) bool {
	line := r.bytes(s)
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || !isToken(line[:sp1]) {
		return false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "SIP/2.0" {
		return false
	}
	r.method = span{s.off, s.off + sp1}
	r.uri = span{s.off + sp1 + 1, s.off + sp1 + 1 + sp2}
	return true
}

// respond builds the answer to the request just read into r.out and returns it with its status
// code; code 0 means no answer (ACK). A framing error from read is answered 513 or 400.
func (r *sipReader) respond(readErr error, tag uint64) (out []byte, code int) {
	method := r.bytes(r.method)
	reason := ""
	switch {
	case readErr == errSIPHeaderTooLarge || readErr == errSIPBodyTooLarge:
		code, reason = 513, "Message Too Large"
	case readErr != nil:
		code, reason = 400, "Bad Request"
	case string(method) == "ACK":
		return nil, 0
	case r.first[hVia] == 0 || r.first[hFrom] == 0 || r.first[hTo] == 0 || r.first[hCallID] == 0 || r.first[hCSeq] == 0:
		code, reason = 400, "Bad Request"
	case string(method) == "OPTIONS" || string(method) == "REGISTER":
		code, reason = 200, "OK"
	default:
		code, reason = 501, "Not Implemented"
	}
	b := append(r.out[:0], "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\n"...)
	for _, h := range r.hdrs {
		if h.kind == hVia {
			b = appendHeader(b, "Via", r.bytes(h.value))
		}
	}
	if v, ok := r.header(hFrom); ok {
		b = appendHeader(b, "From", v)
	}
	if v, ok := r.header(hTo); ok {
		b = appendHeader(b, "To", v)
		if !hasTag(v) {
			b = b[:len(b)-2]
			b = append(b, ";tag="...)
			b = strconv.AppendUint(b, tag, 16)
			b = append(b, "\r\n"...)
		}
	}
	if v, ok := r.header(hCallID); ok {
		b = appendHeader(b, "Call-ID", v)
	}
	if v, ok := r.header(hCSeq); ok {
		b = appendHeader(b, "CSeq", v)
	}
	if code == 200 && string(method) == "REGISTER" {
		expires := uint64(sipDefaultExpiry)
		if v, ok := r.header(hExpires); ok {
			if n, ok := parseDigits(v); ok {
				expires = uint64(n)
			}
		}
		for _, h := range r.hdrs {
			if h.kind == hContact && expires > 0 && string(r.bytes(h.value)) != "*" {
				b = appendHeader(b, "Contact", r.bytes(h.value))
			}
		}
		b = append(b, "Expires: "...)
		b = strconv.AppendUint(b, expires, 10)
		b = append(b, "\r\n"...)
	}
	if code == 200 && string(method) == "OPTIONS" || code == 501 {
		b = append(b, "Allow: OPTIONS, REGISTER, ACK\r\n"...)
	}
	b = append(b, "Content-Length: 0\r\n\r\n"...)
	r.out = b
	return b, code
}

func appendHeader(b []byte, name string, value []byte) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// hasTag reports whether a From/To value carries a tag parameter (after the URI's closing '>'
// when the URI is bracketed).
func hasTag(v []byte) bool {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i:]
	}
	for i := range v {
		if v[i] != ';' {
			continue
		}
		j := i + 1
		for j < len(v) && (v[j] == ' ' || v[j] == '\t') {
			j++
		}
		if j+4 <= len(v) && eqFold(v[j:j+4], "tag=") {
			return true
		}
	}
	return false
}

func headerKind(name []byte) sipHeaderKind {
	for _, h := range sipHeaderNames {
		if eqFold(name, h.long) || h.compact != "" && eqFold(name, h.compact) {
			return h.kind
		}
	}
	return hOther
}

// eqFold compares ASCII case-insensitively without allocating.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// isToken reports whether b is a non-empty RFC 3261 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-.!%*_+`'~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// parseDigits parses a non-negative decimal of at most 9 digits.
func parseDigits(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// serveSIP handshakes and then answers requests until the peer leaves, the idle timeout or a
// framing error.
func (e *Edge) serveSIP(sc *serverConn) bool {
	tc, err := e.handshake(sc, sc.raw)
	if err != nil {
		return false
	}
	// When the edge ends the connection it sends close_notify; when the peer has gone (EOF,
	// reset) that would be a wasted record and write, so handle just closes the socket.
	closeNotify := func(err error) bool {
		if err == nil || isTimeout(err) {
			tc.Close()
		}
		return false
	}
	r := sipReaderPool.Get().(*sipReader)
	r.br.Reset(tc)
	defer func() {
		r.br.Reset(nil)
		if cap(r.buf) <= 2*sipMaxHeader && cap(r.out) <= 2*sipMaxHeader {
			sipReaderPool.Put(r)
		}
	}()
	for {
		sc.raw.SetReadDeadline(time.Now().Add(e.cfg.IdleTimeout))
		if e.idle(sc) {
			return closeNotify(nil)
		}
		if _, err := r.br.Peek(1); err != nil || !sc.active() {
			return closeNotify(err)
		}
		sc.raw.SetReadDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
		msg, err := r.read()
		var out []byte
		var code int
		switch {
		case err == nil && msg == msgRequest:
			out, code = r.respond(nil, rand.Uint64())
		case err == nil && msg == msgPing:
			out = crlf
		case err == nil:
			continue
		case err == errSIPHeaderTooLarge || err == errSIPBodyTooLarge || err == errSIPMalformed:
			out, code = r.respond(err, rand.Uint64())
		default:
			return closeNotify(err) // EOF, reset, timeout
		}
		if code != 0 {
			e.m.sipRequest(r.bytes(r.method), code)
		}
		if len(out) > 0 {
			sc.raw.SetWriteDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
			if _, werr := tc.Write(out); werr != nil {
				return false
			}
		}
		if err != nil {
			return closeNotify(nil)
		}
	}
}

package driver

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
)

// sipResponseLimit bounds what the driver reads of the edge's answer (provisional responses
// included).
const sipResponseLimit = 64 << 10

// sipExpires is the registration lifetime the driver asks for.
const sipExpires = 3600

// sipParams says what sipExchange sends.
type sipParams struct {
	Method    string // "REGISTER" (default) or "OPTIONS"
	User      string // the user part of the address of record (or user@domain)
	Domain    string // the service domain: Request-URI sip:<domain>
	Route     string // the edge configuration's sipRequest/route; no Route header when empty
	LocalAddr string // host:port for Via and Contact; conn's local address when empty
}

// sipCompact maps compact header forms (RFC 3261 §7.3.3) to their canonical long names.
var sipCompact = map[string]string{
	"I": "Call-Id", "F": "From", "T": "To", "V": "Via", "M": "Contact", "L": "Content-Length",
}

// sipHeaders is a response's header, keyed by textproto's canonical form of the long name.
type sipHeaders map[string][]string

// get returns the first value of a header, by its long name in any case.
func (h sipHeaders) get(name string) (string, bool) {
	v := h[textproto.CanonicalMIMEHeaderKey(name)]
	if len(v) == 0 {
		return "", false
	}
	return strings.TrimSpace(v[0]), true
}

// sipToken returns a random token of letters and digits for tags, branches and Call-IDs.
func sipToken() string { return strings.ToLower(rand.Text()[:16]) }

// sipRequest builds the request sipExchange sends.
func sipRequest(method string, p sipParams, branch, tag, callID string) string {
	aor := p.User
	if !strings.Contains(aor, "@") {
		aor += "@" + p.Domain
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s sip:%s SIP/2.0\r\n", method, p.Domain)
	fmt.Fprintf(&b, "Via: SIP/2.0/TLS %s;branch=z9hG4bK%s;rport\r\n", p.LocalAddr, branch)
	b.WriteString("Max-Forwards: 70\r\n")
	if r := strings.TrimSpace(p.Route); r != "" {
		if !strings.HasPrefix(r, "<") {
			r = "<" + r + ">"
		}
		fmt.Fprintf(&b, "Route: %s\r\n", r)
	}
	fmt.Fprintf(&b, "From: <sip:%s>;tag=%s\r\n", aor, tag)
	fmt.Fprintf(&b, "To: <sip:%s>\r\n", aor)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", callID)
	fmt.Fprintf(&b, "CSeq: 1 %s\r\n", method)
	if method == "REGISTER" {
		user, _, _ := strings.Cut(aor, "@")
		fmt.Fprintf(&b, "Contact: <sip:%s@%s;transport=tls>\r\n", user, p.LocalAddr)
		fmt.Fprintf(&b, "Expires: %d\r\n", sipExpires)
	} else {
		b.WriteString("Accept: application/sdp\r\n")
	}
	b.WriteString("User-Agent: edgesim-driver\r\nContent-Length: 0\r\n\r\n")
	return b.String()
}

// readSIPResponse reads one response: status line, header and body (discarded).
func readSIPResponse(tp *textproto.Reader) (code int, reason string, h sipHeaders, err error) {
	line, err := tp.ReadLine()
	for err == nil && line == "" { // keep-alive CRLFs
		line, err = tp.ReadLine()
	}
	if err != nil {
		return 0, "", nil, err
	}
	proto, rest, _ := strings.Cut(line, " ")
	codeStr, reason, _ := strings.Cut(rest, " ")
	code, cerr := strconv.Atoi(codeStr)
	if proto != "SIP/2.0" || cerr != nil || code < 100 || code > 699 {
		return 0, "", nil, fmt.Errorf("not a SIP/2.0 status line: %.80q", line)
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return 0, "", nil, fmt.Errorf("reading the %d response's header: %w", code, err)
	}
	h = sipHeaders{}
	for k, v := range mh {
		if long, ok := sipCompact[k]; ok {
			k = long
		}
		h[k] = append(h[k], v...)
	}
	if cl, ok := h.get("Content-Length"); ok {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || n > sipResponseLimit {
			return 0, "", nil, fmt.Errorf("bad Content-Length %q in the %d response", cl, code)
		}
		if _, err := io.CopyN(io.Discard, tp.R, n); err != nil {
			return 0, "", nil, err
		}
	}
	return code, strings.TrimSpace(reason), h, nil
}

// sipParamValue finds a ;name=value parameter in a header value (after the URI's '>' when
// the URI is bracketed) and returns its value.
func sipParamValue(v, name string) (string, bool) {
	if i := strings.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for _, part := range strings.Split(v, ";")[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(val), true
		}
	}
	return "", false
}

// sipExchange sends one REGISTER (or OPTIONS) on conn, an established and verified TLS
// connection to the SIP edge, and checks the answer: a 200 that echoes Call-ID, CSeq and the
// Via branch, and, for REGISTER, a To with a tag. Provisional (1xx) responses are skipped. It
// returns ClassNone and a sentence like "REGISTER 200 OK, Expires 3600", or ClassSIP with what
// was wrong, or an I/O class (ClassTimeout, ClassConnect, ClassCanceled). ctx's deadline and
// cancellation apply to conn.
func sipExchange(ctx context.Context, conn net.Conn, p sipParams) (Class, string) {
	stop := watchConn(ctx, conn)
	defer stop()
	method := strings.ToUpper(strings.TrimSpace(p.Method))
	if method == "" {
		method = "REGISTER"
	}
	if method != "REGISTER" && method != "OPTIONS" {
		return ClassSIP, fmt.Sprintf("unsupported SIP method %q (want REGISTER or OPTIONS)", p.Method)
	}
	if p.LocalAddr == "" && conn.LocalAddr() != nil {
		p.LocalAddr = conn.LocalAddr().String()
	}
	branch, tag, callID := sipToken(), sipToken(), sipToken()+"@edgesim"
	if _, err := io.WriteString(conn, sipRequest(method, p, branch, tag, callID)); err != nil {
		return ioClass(ctx, err, ClassSIP), fmt.Sprintf("sending %s: %v", method, err)
	}
	cr := &capReader{br: bufio.NewReader(conn), n: sipResponseLimit}
	tp := textproto.NewReader(bufio.NewReader(cr))
	var (
		code   int
		reason string
		h      sipHeaders
		err    error
	)
	for {
		code, reason, h, err = readSIPResponse(tp)
		if err != nil {
			switch {
			case errors.Is(err, errTooLarge):
				return ClassSIP, fmt.Sprintf("the answer to %s is over %d bytes", method, sipResponseLimit)
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				return ioClass(ctx, err, ClassSIP), fmt.Sprintf("the edge closed the connection before answering %s", method)
			}
			if c := ioClass(ctx, err, ClassSIP); c != ClassSIP {
				return c, fmt.Sprintf("waiting for the answer to %s: %v", method, err)
			}
			return ClassSIP, fmt.Sprintf("the answer to %s: %v", method, err)
		}
		if code >= 200 {
			break
		}
	}
	status := fmt.Sprintf("%d %s", code, reason)
	if code != 200 {
		d := fmt.Sprintf("%s answered %s, want 200 OK", method, status)
		if w, ok := h.get("Warning"); ok {
			d += " (Warning: " + w + ")"
		}
		return ClassSIP, d
	}
	var wrong []string
	if v, _ := h.get("Call-ID"); v != callID {
		wrong = append(wrong, fmt.Sprintf("Call-ID %q, sent %q", v, callID))
	}
	if v, _ := h.get("CSeq"); strings.Join(strings.Fields(v), " ") != "1 "+method {
		wrong = append(wrong, fmt.Sprintf("CSeq %q, sent %q", v, "1 "+method))
	}
	if via, ok := h.get("Via"); !ok {
		wrong = append(wrong, "no Via")
	} else if b, _ := sipParamValue(via, "branch"); b != "z9hG4bK"+branch {
		wrong = append(wrong, fmt.Sprintf("Via branch %q, sent %q", b, "z9hG4bK"+branch))
	}
	to, hasTo := h.get("To")
	if method == "REGISTER" {
		if t, ok := sipParamValue(to, "tag"); !hasTo || !ok || t == "" {
			wrong = append(wrong, fmt.Sprintf("To without a tag (%q)", to))
		}
	}
	if len(wrong) > 0 {
		return ClassSIP, fmt.Sprintf("%s answered %s but echoed it wrongly: %s", method, status, strings.Join(wrong, "; "))
	}
	if method == "OPTIONS" {
		return ClassNone, "OPTIONS " + status
	}
	expires, ok := h.get("Expires")
	if !ok {
		if c, okc := h.get("Contact"); okc {
			expires, ok = sipParamValue(c, "expires")
		}
	}
	if !ok {
		return ClassNone, fmt.Sprintf("REGISTER %s, no Expires", status)
	}
	return ClassNone, fmt.Sprintf("REGISTER %s, Expires %s", status, expires)
}

package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// sipResp is a parsed SIP response.
type sipResp struct {
	status  string
	headers [][2]string // in order
}

func (r sipResp) get(name string) []string {
	var out []string
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			out = append(out, h[1])
		}
	}
	return out
}

func (r sipResp) one(tb testing.TB, name string) string {
	tb.Helper()
	v := r.get(name)
	if len(v) != 1 {
		tb.Fatalf("header %s: got %q, want exactly one in %+v", name, v, r)
	}
	return v[0]
}

// readSIPResponse reads one response (no body) from br.
func readSIPResponse(tb testing.TB, br *bufio.Reader) sipResp {
	tb.Helper()
	var r sipResp
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			tb.Fatalf("reading SIP response: %v (so far %+v)", err, r)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return r
		}
		if r.status == "" {
			r.status = line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			tb.Fatalf("bad header line %q", line)
		}
		r.headers = append(r.headers, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	}
}

// sipRoundTrip writes req on c and reads one response.
func sipRoundTrip(tb testing.TB, c net.Conn, req string) sipResp {
	tb.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		tb.Fatal(err)
	}
	return readSIPResponse(tb, bufio.NewReader(c))
}

func sipOptions(callID string) string {
	return "OPTIONS sip:mra-host.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 192.0.2.10:51000;branch=z9hG4bK-1;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:bob@example.com>;tag=abc\r\n" +
		"To: <sip:mra-host.example.com>\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
}

const sipRegister = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/TLS 192.0.2.10:51000;branch=z9hG4bK-2\r\n" +
	"Via: SIP/2.0/TLS 10.0.0.5:5061;branch=z9hG4bK-3\r\n" +
	"Route: <sip:10.1.2.3:5061;transport=tls;zone-id=3;directed;lr>\r\n" +
	"From: <sip:bob@example.com>;tag=f1\r\n" +
	"To: <sip:bob@example.com>\r\n" +
	"Call-ID: reg-1@192.0.2.10\r\n" +
	"CSeq: 7 REGISTER\r\n" +
	"Contact: <sip:bob@192.0.2.10:51000;transport=tls>;+sip.instance=\"<urn:uuid:1>\"\r\n" +
	"Expires: 600\r\n" +
	"Content-Type: application/pidf+xml\r\n" +
	"Content-Length: 5\r\n\r\nhello"

func TestSIPOverTLS(t *testing.T) {
	te := startEdge(t, nil)
	c, err := tls.Dial("tcp", te.sip, te.pki.clientTLS("mra-host.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	roundTrip := func(req string) sipResp {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		return readSIPResponse(t, br)
	}

	r := roundTrip(sipOptions("opt-1"))
	if r.status != "SIP/2.0 200 OK" {
		t.Fatalf("OPTIONS: %q", r.status)
	}
	if v := r.one(t, "Via"); v != "SIP/2.0/TLS 192.0.2.10:51000;branch=z9hG4bK-1;rport" {
		t.Errorf("Via %q", v)
	}
	if v := r.one(t, "From"); v != "<sip:bob@example.com>;tag=abc" {
		t.Errorf("From %q", v)
	}
	if v := r.one(t, "To"); !strings.HasPrefix(v, "<sip:mra-host.example.com>;tag=") || len(v) <= len("<sip:mra-host.example.com>;tag=") {
		t.Errorf("To %q has no tag", v)
	}
	if r.one(t, "Call-ID") != "opt-1" || r.one(t, "CSeq") != "1 OPTIONS" || r.one(t, "Content-Length") != "0" {
		t.Errorf("echo: %+v", r)
	}

	// REGISTER on the same connection: all Vias in order, Contact and Expires.
	r = roundTrip(sipRegister)
	if r.status != "SIP/2.0 200 OK" {
		t.Fatalf("REGISTER: %q", r.status)
	}
	if v := r.get("Via"); len(v) != 2 || !strings.Contains(v[0], "z9hG4bK-2") || !strings.Contains(v[1], "z9hG4bK-3") {
		t.Errorf("Vias %q", v)
	}
	if v := r.one(t, "Contact"); !strings.HasPrefix(v, "<sip:bob@192.0.2.10:51000;transport=tls>") {
		t.Errorf("Contact %q", v)
	}
	if r.one(t, "Expires") != "600" || r.one(t, "CSeq") != "7 REGISTER" || r.one(t, "Call-ID") != "reg-1@192.0.2.10" {
		t.Errorf("REGISTER echo: %+v", r)
	}

	// Compact forms, a folded header and a To that already has a tag.
	compact := "REGISTER sip:example.com SIP/2.0\r\n" +
		"v: SIP/2.0/TLS 192.0.2.10;branch=z9hG4bK-c\r\n" +
		"f: <sip:bob@example.com>;tag=1\r\n" +
		"t: <sip:bob@example.com>;tag=2\r\n" +
		"i: compact-1\r\n" +
		"CSeq: 8\r\n  REGISTER\r\n" +
		"m: <sip:bob@192.0.2.10>\r\n" +
		"l: 0\r\n\r\n"
	r = roundTrip(compact)
	if r.status != "SIP/2.0 200 OK" || r.one(t, "To") != "<sip:bob@example.com>;tag=2" || r.one(t, "CSeq") != "8 REGISTER" ||
		r.one(t, "Call-ID") != "compact-1" || r.one(t, "Expires") != "3600" || r.one(t, "Contact") != "<sip:bob@192.0.2.10>" {
		t.Errorf("compact REGISTER: %+v", r)
	}

	// Unregister: Expires 0, no Contact in the answer.
	r = roundTrip(strings.Replace(strings.Replace(sipRegister, "Expires: 600", "Expires: 0", 1), "Call-ID: reg-1", "Call-ID: reg-2", 1))
	if r.one(t, "Expires") != "0" || len(r.get("Contact")) != 0 {
		t.Errorf("unregister: %+v", r)
	}

	// INVITE is not implemented; ACK gets no answer at all (the next answer is for OPTIONS).
	r = roundTrip(strings.ReplaceAll(sipOptions("inv-1"), "OPTIONS", "INVITE"))
	if r.status != "SIP/2.0 501 Not Implemented" || r.one(t, "Call-ID") != "inv-1" {
		t.Errorf("INVITE: %+v", r)
	}
	io.WriteString(c, strings.ReplaceAll(sipOptions("inv-1"), "OPTIONS", "ACK"))
	if r = roundTrip(sipOptions("after-ack")); r.one(t, "Call-ID") != "after-ack" {
		t.Errorf("after ACK: %+v", r)
	}

	// Missing mandatory headers: 400, but the connection stays usable.
	r = roundTrip("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK-x\r\nContent-Length: 0\r\n\r\n")
	if r.status != "SIP/2.0 400 Bad Request" {
		t.Errorf("missing headers: %q", r.status)
	}

	// RFC 5626 keep-alive: CRLFCRLF ping, CRLF pong.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "\r\n\r\n")
	if pong, err := br.ReadString('\n'); err != nil || pong != "\r\n" {
		t.Errorf("pong %q, %v", pong, err)
	}
	if r = roundTrip(sipOptions("last")); r.one(t, "Call-ID") != "last" {
		t.Errorf("after ping: %+v", r)
	}

	for _, s := range []struct {
		method string
		code   string
		want   float64
	}{{"OPTIONS", "200", 3}, {"REGISTER", "200", 3}, {"other", "501", 1}, {"OPTIONS", "400", 1}} {
		if got := te.metric(t, "edgesim_sip_requests_total", "method", s.method, "code", s.code); got != s.want {
			t.Errorf("sip requests %s %s = %v, want %v", s.method, s.code, got, s.want)
		}
	}
}

func TestSIPOversize(t *testing.T) {
	te := startEdge(t, nil)
	tests := []struct {
		name, req, status string
	}{
		{"header block", "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TLS h;branch=z9hG4bK-big\r\nX-Pad: " + strings.Repeat("a", sipMaxHeader) + "\r\n\r\n", "SIP/2.0 513 Message Too Large"},
		{"one long line", "OPTIONS sip:" + strings.Repeat("a", sipMaxHeader+10) + " SIP/2.0\r\n\r\n", "SIP/2.0 513 Message Too Large"},
		{"body", strings.Replace(sipOptions("big"), "Content-Length: 0", "Content-Length: 70000", 1), "SIP/2.0 513 Message Too Large"},
		{"bad length", strings.Replace(sipOptions("bad"), "Content-Length: 0", "Content-Length: -1", 1), "SIP/2.0 400 Bad Request"},
		{"garbage", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "SIP/2.0 400 Bad Request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", te.sip, te.pki.clientTLS("mra-host.example.com"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go io.WriteString(c, tt.req) // the edge may stop reading before all is written
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			r := readSIPResponse(t, br)
			if r.status != tt.status {
				t.Errorf("status %q, want %q", r.status, tt.status)
			}
			if rest, _ := io.ReadAll(br); len(rest) != 0 {
				t.Errorf("after the error: %q", rest)
			}
		})
	}
}

func TestSIPReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		msgs []sipMsg
		err  error
	}{
		{"request", sipOptions("a"), []sipMsg{msgRequest}, io.EOF},
		{"two pipelined", sipOptions("a") + sipRegister, []sipMsg{msgRequest, msgRequest}, io.EOF},
		{"bare LF", strings.ReplaceAll(sipOptions("a"), "\r\n", "\n"), []sipMsg{msgRequest}, io.EOF},
		{"ping", "\r\n\r\n", []sipMsg{msgPing}, io.EOF},
		{"pong", "\r\n", []sipMsg{msgPong}, io.EOF},
		{"response ignored", "SIP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", []sipMsg{msgResponse}, io.EOF},
		{"truncated body", strings.Replace(sipOptions("a"), "Content-Length: 0", "Content-Length: 9", 1), nil, io.ErrUnexpectedEOF},
		{"truncated header", "OPTIONS sip:x SIP/2.0\r\nVia: x", nil, io.ErrUnexpectedEOF},
		{"no colon", "OPTIONS sip:x SIP/2.0\r\nVia\r\n\r\n", nil, errSIPMalformed},
		{"fold first", "OPTIONS sip:x SIP/2.0\r\n folded\r\n\r\n", nil, errSIPMalformed},
		{"bad version", "OPTIONS sip:x SIP/3.0\r\n\r\n", nil, errSIPMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &sipReader{br: bufio.NewReader(strings.NewReader(tt.in))}
			var got []sipMsg
			var err error
			for {
				var m sipMsg
				if m, err = r.read(); err != nil {
					break
				}
				got = append(got, m)
			}
			if err != tt.err || len(got) != len(tt.msgs) {
				t.Fatalf("got %v, %v; want %v, %v", got, err, tt.msgs, tt.err)
			}
			for i := range got {
				if got[i] != tt.msgs[i] {
					t.Errorf("message %d: %v, want %v", i, got[i], tt.msgs[i])
				}
			}
		})
	}
}

func TestSIPRespondAllocs(t *testing.T) {
	in := strings.Repeat(sipRegister, 1)
	r := &sipReader{br: bufio.NewReader(strings.NewReader(in))}
	src := strings.NewReader(in)
	allocs := testing.AllocsPerRun(100, func() {
		src.Reset(in)
		r.br.Reset(src)
		if _, err := r.read(); err != nil {
			t.Fatal(err)
		}
		r.respond(nil, 42)
	})
	if allocs > 0 {
		t.Errorf("read+respond allocate %v times per request, want 0", allocs)
	}
}

func FuzzSIPReader(f *testing.F) {
	f.Add(sipOptions("seed"))
	f.Add(sipRegister + sipOptions("two"))
	f.Add("\r\n\r\nINVITE sip:x SIP/2.0\r\nv: a\r\nf: b\r\nt: c\r\ni: d\r\nCSeq: 1 INVITE\r\nl: 3\r\n\r\nabc")
	f.Add("OPTIONS sip:x SIP/2.0\r\nTo: <sip:x>;tag=1\r\n folded\r\n\r\n")
	f.Add("SIP/2.0 200 OK\r\nl: 0\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		r := &sipReader{br: bufio.NewReaderSize(strings.NewReader(in), 64)}
		for range 100 {
			m, err := r.read()
			if err == errSIPHeaderTooLarge || err == errSIPBodyTooLarge || err == errSIPMalformed {
				out, code := r.respond(err, 1)
				if code != 400 && code != 513 || !bytes.HasPrefix(out, []byte("SIP/2.0 ")) || !bytes.HasSuffix(out, []byte("\r\n\r\n")) {
					t.Fatalf("error response %d %q", code, out)
				}
				return
			}
			if err != nil {
				return
			}
			if m != msgRequest {
				continue
			}
			if len(r.buf) > 3*sipMaxHeader {
				t.Fatalf("buffer grew to %d", len(r.buf))
			}
			out, code := r.respond(nil, 1)
			if code == 0 {
				continue
			}
			if !bytes.HasPrefix(out, []byte("SIP/2.0 ")) || !bytes.HasSuffix(out, []byte("Content-Length: 0\r\n\r\n")) {
				t.Fatalf("response %q", out)
			}
			// Header values never contain line breaks, so the response cannot be split.
			if n := bytes.Count(out, []byte("\r\n\r\n")); n != 1 {
				t.Fatalf("response has %d blank lines: %q", n, out)
			}
		}
	})
}

func TestSIPOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	te := startEdge(t, nil)
	cmd := exec.Command(openssl, "s_client", "-connect", te.sip, "-servername", "mra-host.example.com",
		"-CAfile", te.pki.caFile(t), "-verify_return_error", "-verify_hostname", "mra-host.example.com", "-quiet", "-no_ign_eof")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	io.WriteString(stdin, sipOptions("openssl-1"))
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, "SIP/2.0 200 OK") {
			t.Errorf("openssl s_client got %q; stderr: %s", line, stderr.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("no answer through openssl s_client; stderr: %s", stderr.String())
	}
}

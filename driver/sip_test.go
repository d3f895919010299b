package driver

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// testSIPEdge answers one request on ln with respond(request header, request line) and sends the
// request it read on the returned channel.
func testSIPEdge(t *testing.T, ln net.Listener, respond func(line string, h textproto.MIMEHeader) string) <-chan string {
	reqc := make(chan string, 1)
	go func() {
		defer close(reqc)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		tp := textproto.NewReader(bufio.NewReader(conn))
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			return
		}
		var b strings.Builder
		b.WriteString(line + "\n")
		for k, v := range h {
			fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(v, ", "))
		}
		reqc <- b.String()
		if out := respond(line, h); out != "" {
			conn.Write([]byte(out))
		}
		tp.ReadLine() // wait for the client to hang up
	}()
	return reqc
}

// echo builds a response that echoes the request's dialog headers; toTag "" leaves To as sent.
func echo(h textproto.MIMEHeader, status, toTag, extra string) string {
	to := h.Get("To")
	if toTag != "" {
		to += ";tag=" + toTag
	}
	return "SIP/2.0 " + status + "\r\n" +
		"Via: " + h.Get("Via") + ";received=127.0.0.1\r\n" +
		"From: " + h.Get("From") + "\r\n" +
		"To: " + to + "\r\n" +
		"Call-ID: " + h.Get("Call-Id") + "\r\n" +
		"CSeq: " + h.Get("Cseq") + "\r\n" + extra +
		"Content-Length: 0\r\n\r\n"
}

func TestSIPExchange(t *testing.T) {
	ca := newTestCA(t, "edgesim local CA")
	srvCfg := ca.tlsServerConfig(t, "mra.example.com")
	route := "<sip:10.0.0.21:5061;transport=tls;zone-id=3;directed;lr>"
	tests := []struct {
		name    string
		method  string
		respond func(string, textproto.MIMEHeader) string
		timeout time.Duration
		want    Class
		detail  string
	}{
		{"register 200", "", func(_ string, h textproto.MIMEHeader) string {
			return echo(h, "200 OK", "abc", "Contact: "+h.Get("Contact")+"\r\nExpires: 3600\r\n")
		}, 0, ClassNone, "REGISTER 200 OK, Expires 3600"},
		{"trying then 200, compact headers", "REGISTER", func(_ string, h textproto.MIMEHeader) string {
			final := echo(h, "200 OK", "abc", "Contact: "+h.Get("Contact")+";expires=600\r\n")
			final = strings.Replace(final, "Call-ID:", "i:", 1)
			return echo(h, "100 Trying", "", "") + final
		}, 0, ClassNone, "REGISTER 200 OK, Expires 600"},
		{"options 200", "OPTIONS", func(line string, h textproto.MIMEHeader) string {
			if !strings.HasPrefix(line, "OPTIONS sip:example.com ") {
				return "SIP/2.0 400 Bad Request\r\n\r\n"
			}
			return echo(h, "200 OK", "", "")
		}, 0, ClassNone, "OPTIONS 200 OK"},
		{"403", "", func(_ string, h textproto.MIMEHeader) string {
			return echo(h, "403 Forbidden", "abc", "Warning: 399 edge \"unknown user\"\r\n")
		}, 0, ClassSIP, `REGISTER answered 403 Forbidden, want 200 OK (Warning: 399 edge "unknown user")`},
		{"missing To tag", "", func(_ string, h textproto.MIMEHeader) string {
			return echo(h, "200 OK", "", "Expires: 3600\r\n")
		}, 0, ClassSIP, "To without a tag"},
		{"wrong Call-ID and CSeq", "", func(_ string, h textproto.MIMEHeader) string {
			h.Set("Call-Id", "other@x")
			h.Set("Cseq", "2 REGISTER")
			return echo(h, "200 OK", "abc", "")
		}, 0, ClassSIP, `Call-ID "other@x"`},
		{"not SIP", "", func(string, textproto.MIMEHeader) string { return "HTTP/1.1 200 OK\r\n\r\n" }, 0, ClassSIP, "not a SIP/2.0 status line"},
		{"no answer", "", func(string, textproto.MIMEHeader) string { return "" }, 300 * time.Millisecond, ClassTimeout, "waiting for the answer to REGISTER"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			reqc := testSIPEdge(t, ln, tc.respond)
			conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "mra.example.com", InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			class, detail := sipExchange(ctx, conn, sipParams{Method: tc.method, User: "bob", Domain: "example.com", Route: route})
			conn.Close()
			req := <-reqc
			if class != tc.want || !strings.Contains(detail, tc.detail) {
				t.Errorf("sipExchange = %q, %q; want %q with %q\nrequest:\n%s", class, detail, tc.want, tc.detail, req)
			}
			for _, s := range []string{"Route: " + route, "Max-Forwards: 70", "Via: SIP/2.0/TLS 127.0.0.1:", ";branch=z9hG4bK", "Cseq: 1 "} {
				if !strings.Contains(req, s) {
					t.Errorf("request lacks %q:\n%s", s, req)
				}
			}
			if tc.method != "OPTIONS" {
				for _, s := range []string{"REGISTER sip:example.com SIP/2.0", "Contact: <sip:bob@127.0.0.1:", ";transport=tls>", "Expires: 3600", "To: <sip:bob@example.com>"} {
					if !strings.Contains(req, s) {
						t.Errorf("request lacks %q:\n%s", s, req)
					}
				}
			}
		})
	}
}

func TestSIPExchangeBadMethod(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c, _ := sipExchange(context.Background(), a, sipParams{Method: "INVITE", Domain: "example.com"}); c != ClassSIP {
		t.Errorf("class %q", c)
	}
}

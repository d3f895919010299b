package driver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// realEdgeConfig is a get_edge_config answer shaped like the ones Expressway-E sends.
const realEdgeConfig = `<?xml version="1.0" encoding="UTF-8"?>
<getEdgeConfigResponse version="1.0">
  <serviceConfig>
    <service>
      <name>_cisco-uds</name>
      <server><priority>1</priority><weight>1</weight><port>8443</port><address>cucm-pub.example.com</address></server>
      <server><priority>2</priority><weight>1</weight><port>8443</port><address>cucm-sub.example.com</address></server>
    </service>
    <service><name>_cuplogin</name><error>NameError</error></service>
  </serviceConfig>
  <edgeConfig>
    <sipEdgeServer><server><address>mra.sp.example</address><tlsPort>5061</tlsPort></server></sipEdgeServer>
    <sipRequest><route>&lt;sip:10.0.0.21:5061;transport=tls;zone-id=3;directed;lr&gt;</route></sipRequest>
    <xmppEdgeServer><server><address>mra.sp.example</address><tlsPort>5222</tlsPort></server></xmppEdgeServer>
    <httpEdgeServer><server><address>mra.sp.example</address><tlsPort>8443</tlsPort></server></httpEdgeServer>
    <turnEdgeServer/>
    <userUdsServer><server><address>cucm-pub.example.com</address><tlsPort>8443</tlsPort></server></userUdsServer>
  </edgeConfig>
</getEdgeConfigResponse>`

func TestParseEdgeConfig(t *testing.T) {
	cfg, err := ParseEdgeConfig([]byte(realEdgeConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := EdgeServer{"mra.sp.example", 5061}
	if len(cfg.SIP) != 1 || cfg.SIP[0] != want {
		t.Errorf("SIP = %v", cfg.SIP)
	}
	if len(cfg.XMPP) != 1 || cfg.XMPP[0].Port != 5222 || len(cfg.HTTP) != 1 || cfg.HTTP[0].Port != 8443 {
		t.Errorf("XMPP = %v, HTTP = %v", cfg.XMPP, cfg.HTTP)
	}
	if len(cfg.UDS) != 1 || cfg.UDS[0].String() != "cucm-pub.example.com:8443" {
		t.Errorf("UDS = %v", cfg.UDS)
	}
	if cfg.SIPRoute != "<sip:10.0.0.21:5061;transport=tls;zone-id=3;directed;lr>" {
		t.Errorf("route = %q", cfg.SIPRoute)
	}
	if s := cfg.Services["_cisco-uds"]; len(s) != 2 || s[1].Address != "cucm-sub.example.com" {
		t.Errorf("services = %v", cfg.Services)
	}
	if cfg.ServiceErrors["_cuplogin"] != "NameError" {
		t.Errorf("service errors = %v", cfg.ServiceErrors)
	}

	bad := []struct {
		name, doc, msg string
	}{
		{"empty", "", "not XML"},
		{"garbage", "\x00\xffnot xml at all", "not XML"},
		{"wrong root", "<getEdgeConfig><edgeConfig/></getEdgeConfig>", "root element is <getEdgeConfig>"},
		{"no uds", strings.Replace(realEdgeConfig, "<address>cucm-pub.example.com</address><tlsPort>", "<address> </address><tlsPort>", 1),
			"XML didn't contain UDS server address"},
		{"no uds element", strings.Replace(realEdgeConfig, "userUdsServer", "otherServer", 2), "XML didn't contain UDS server address"},
		{"no sip", strings.Replace(realEdgeConfig, "sipEdgeServer", "sipEdgeServerX", 2), "no SIP edge servers"},
		{"no xmpp", strings.Replace(realEdgeConfig, "xmppEdgeServer", "x", 2), "no XMPP edge servers"},
		{"bad port", strings.Replace(realEdgeConfig, "<tlsPort>5222<", "<tlsPort>70000<", 1), `bad tlsPort "70000"`},
		{"port not a number", strings.Replace(realEdgeConfig, "<tlsPort>5061<", "<tlsPort>sip<", 1), `bad tlsPort "sip"`},
		{"bad service port", strings.Replace(realEdgeConfig, "<port>8443<", "<port>0<", 1), `bad port "0"`},
		{"empty sip address", strings.Replace(realEdgeConfig, "<address>mra.sp.example</address><tlsPort>5061", "<address/><tlsPort>5061", 1), "empty address"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseEdgeConfig([]byte(tc.doc))
			if !errors.Is(err, ErrBadEdgeConfig) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want ErrBadEdgeConfig with %q", err, tc.msg)
			}
		})
	}
}

func TestEdgeConfigPath(t *testing.T) {
	if got, want := edgeConfigPath("example.com"), "/ZXhhbXBsZS5jb20/get_edge_config?service_name=_cisco-uds&service_name=_cuplogin"; got != want {
		t.Errorf("edgeConfigPath = %q, want %q", got, want)
	}
}

func FuzzParseEdgeConfig(f *testing.F) {
	f.Add([]byte(realEdgeConfig))
	f.Add([]byte{})
	f.Add([]byte("\x00\x01<<garbage>"))
	f.Add([]byte("<getEdgeConfigResponse><edgeConfig><userUdsServer><server><address>a</address><tlsPort>1</tlsPort></server></userUdsServer></edgeConfig></getEdgeConfigResponse>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseEdgeConfig(data)
		if err == nil && (len(cfg.SIP) == 0 || len(cfg.XMPP) == 0 || len(cfg.UDS) == 0 || cfg.UDS[0].Address == "") {
			t.Fatalf("accepted an unusable configuration: %+v", cfg)
		}
		if err != nil && !errors.Is(err, ErrBadEdgeConfig) {
			t.Fatalf("error does not wrap ErrBadEdgeConfig: %v", err)
		}
	})
}

func TestFetchEdgeConfig(t *testing.T) {
	seen := make(chan *http.Request, 16)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Clone(context.Background())
		user, _, _ := r.BasicAuth()
		switch user {
		case "hangup":
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
		case "bob":
			http.SetCookie(w, &http.Cookie{Name: "X-Auth", Value: "tok", Domain: ".sp.example", Path: "/", Secure: true, HttpOnly: true})
			w.Header().Set("Content-Type", "text/xml")
			w.Write([]byte(realEdgeConfig))
		case "nobody":
			w.Header().Set("WWW-Authenticate", `Basic realm="Cisco-Edge"`)
			w.WriteHeader(401)
		case "forbidden":
			w.Header().Set("Server", "CE_E")
			w.WriteHeader(403)
			w.Write([]byte("\nexample.com is not configured for MRA on this edge\nmore"))
		case "broken":
			w.Write([]byte("<html>hello</html>"))
		default:
			http.Error(w, "boom", 500)
		}
	}))
	defer srv.Close()
	tests := []struct {
		user   string
		want   Class
		detail string
	}{
		{"bob", ClassNone, "200, X-Auth cookie set; sip mra.sp.example:5061, xmpp mra.sp.example:5222, uds cucm-pub.example.com:8443"},
		{"nobody", ClassUnauthorized, `realm "Cisco-Edge"`},
		{"forbidden", ClassForbidden, "the edge says the domain is not configured for MRA (domain example.com, Server: CE_E, body: example.com is not configured for MRA on this edge)"},
		{"broken", ClassBadEdgeConfig, "root element is <html>"},
		{"crash", ClassHTTP, "500 Internal Server Error: boom"},
		{"hangup", ClassConnect, "closed the connection before answering"},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "mra.example.com"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cfg, class, detail := fetchEdgeConfig(ctx, conn, "mra.example.com:8443", "example.com", tc.user, "secret")
			if class != tc.want || !strings.Contains(detail, tc.detail) {
				t.Fatalf("fetchEdgeConfig = %q, %q; want %q with %q", class, detail, tc.want, tc.detail)
			}
			if (cfg != nil) != (tc.want == ClassNone) {
				t.Errorf("cfg = %v with class %q", cfg, class)
			}
			req := <-seen
			if req.Host != "mra.example.com:8443" || req.URL.RequestURI() != edgeConfigPath("example.com") ||
				req.Header.Get("Accept") != "text/xml" || req.UserAgent() != "edgesim-driver" || !req.Close {
				t.Errorf("request: host %q uri %q accept %q ua %q close %v", req.Host, req.URL.RequestURI(),
					req.Header.Get("Accept"), req.UserAgent(), req.Close)
			}
			if _, pw, _ := req.BasicAuth(); pw != "secret" {
				t.Errorf("password %q", pw)
			}
		})
	}
}

// TestFetchEdgeConfigTimeout: an edge that never answers hits the context's deadline; also
// checks the small header helpers.
func TestFetchEdgeConfigTimeout(t *testing.T) {
	ca := newTestCA(t, "edgesim local CA")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ca.tlsServerConfig(t, "mra.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		bufio.NewReader(c).ReadString('\n') // read, never answer
		<-done
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "mra.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, class, detail := fetchEdgeConfig(ctx, conn, "mra.example.com:443", "example.com", "bob", "x")
	if class != ClassTimeout {
		t.Fatalf("class %q (%s), want timeout", class, detail)
	}
	if hostHeader("mra.example.com:443") != "mra.example.com" || hostHeader("[::1]:443") != "[::1]" || hostHeader("h:8443") != "h:8443" {
		t.Error("hostHeader")
	}
	if basicRealm(`Basic REALM="Cisco-Edge", charset="UTF-8"`) != "Cisco-Edge" || basicRealm("Basic") != "" || basicRealm("Basic realm=x") != "x" {
		t.Error("basicRealm")
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// What a client parses out of get_edge_config, declared independently of the edge's types.
type clientEdgeConfig struct {
	XMLName  xml.Name `xml:"getEdgeConfigResponse"`
	Version  string   `xml:"version,attr"`
	Services []struct {
		Name    string `xml:"name"`
		Error   string `xml:"error"`
		Servers []struct {
			Priority int    `xml:"priority"`
			Weight   int    `xml:"weight"`
			Port     int    `xml:"port"`
			Address  string `xml:"address"`
		} `xml:"server"`
	} `xml:"serviceConfig>service"`
	SIP   []clientServer `xml:"edgeConfig>sipEdgeServer>server"`
	Route string         `xml:"edgeConfig>sipRequest>route"`
	XMPP  []clientServer `xml:"edgeConfig>xmppEdgeServer>server"`
	HTTP  []clientServer `xml:"edgeConfig>httpEdgeServer>server"`
	TURN  *struct{}      `xml:"edgeConfig>turnEdgeServer"`
	UDS   []clientServer `xml:"edgeConfig>userUdsServer>server"`
}

type clientServer struct {
	Address string `xml:"address"`
	TLSPort int    `xml:"tlsPort"`
}

// httpClient talks to the edge as a client that resolved the SRV target to the edge's address
// and uses the SNI host serverName.
func (te *testEdge) httpClient(serverName string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: te.pki.clientTLS(serverName),
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, te.https)
		},
	}}
}

func (te *testEdge) get(tb testing.TB, method, path, user, password string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, "https://mra-host.example.com:"+strconv.Itoa(te.port(te.https))+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Accept", "text/xml")
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	c := te.httpClient("mra-host.example.com")
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, body
}

// httpOverConn sends one keep-alive GET on an open TLS connection.
func httpOverConn(tb testing.TB, c net.Conn, br *bufio.Reader, path, user, password string) *http.Response {
	tb.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: mra-host.example.com\r\nAuthorization: Basic %s\r\nAccept: text/xml\r\n\r\n", path, auth)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

const query = "?service_name=_cisco-uds&service_name=_cuplogin"

func TestGetEdgeConfig(t *testing.T) {
	te := startEdge(t, nil)
	resp, body := te.get(t, "GET", "/ZXhhbXBsZS5jb20/get_edge_config"+query, "bob", "whatever")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml" {
		t.Errorf("Content-Type %q", ct)
	}
	cookie := resp.Header.Get("Set-Cookie")
	if !regexp.MustCompile(`^X-Auth=[A-Z2-7]{20,}; Domain=\.example\.com; Path=/; Secure; HttpOnly$`).MatchString(cookie) {
		t.Errorf("Set-Cookie %q", cookie)
	}
	var cfg clientEdgeConfig
	if err := xml.Unmarshal(body, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if cfg.Version != "1.0" || len(cfg.Services) != 2 || cfg.Services[0].Name != "_cisco-uds" || cfg.Services[1].Name != "_cuplogin" {
		t.Fatalf("services %+v", cfg.Services)
	}
	for _, s := range cfg.Services {
		if len(s.Servers) == 0 || s.Servers[0].Address == "" || s.Servers[0].Port != 8443 || s.Servers[0].Priority == 0 {
			t.Errorf("service %s: %+v", s.Name, s.Servers)
		}
	}
	want := map[string][]clientServer{
		"sip":  {{"mra-host.sp.com", te.port(te.sip)}},
		"xmpp": {{"mra-host.sp.com", te.port(te.xmpp)}},
		"http": {{"mra-host.sp.com", te.port(te.https)}},
	}
	for name, got := range map[string][]clientServer{"sip": cfg.SIP, "xmpp": cfg.XMPP, "http": cfg.HTTP} {
		if fmt.Sprint(got) != fmt.Sprint(want[name]) {
			t.Errorf("%s edge servers %v, want %v", name, got, want[name])
		}
	}
	if !regexp.MustCompile(`^<sip:10\.\d+\.\d+\.\d+:5061;transport=tls;zone-id=3;directed;lr>$`).MatchString(cfg.Route) {
		t.Errorf("route %q", cfg.Route)
	}
	if !bytes.Contains(body, []byte("<route>&lt;sip:10.")) {
		t.Errorf("route not XML-escaped in %s", body)
	}
	if cfg.TURN == nil || len(cfg.UDS) != 1 || cfg.UDS[0].Address == "" || cfg.UDS[0].TLSPort == 0 {
		t.Errorf("turn %v, userUdsServer %+v", cfg.TURN, cfg.UDS)
	}
	if got := te.metric(t, "edgesim_http_requests_total", "code", "200"); got != 1 {
		t.Errorf("200s counted %v", got)
	}
}

func TestGetEdgeConfigStatus(t *testing.T) {
	te := startEdge(t, nil)
	b64 := func(s string, enc *base64.Encoding) string { return enc.EncodeToString([]byte(s)) }
	tests := []struct {
		name, method, path, user, pass string
		code                           int
		body                           string // a part of the body
	}{
		{"unpadded", "GET", "/ZXhhbXBsZS5jb20/get_edge_config" + query, "bob", "x", 200, "<getEdgeConfigResponse"},
		{"padded", "GET", "/ZXhhbXBsZS5jb20=/get_edge_config" + query, "bob", "x", 200, "_cuplogin"},
		{"url-safe", "GET", "/" + b64("example.com", base64.RawURLEncoding) + "/get_edge_config", "bob", "x", 200, "_cisco-uds"},
		{"trailing slash", "GET", "/ZXhhbXBsZS5jb20/get_edge_config/", "bob", "x", 200, "<userUdsServer>"},
		{"upper-case domain", "GET", "/" + b64("EXAMPLE.COM", base64.RawStdEncoding) + "/get_edge_config", "bob", "x", 200, "cucm-pub.example.com"},
		{"qualified user", "GET", "/ZXhhbXBsZS5jb20/get_edge_config", "bob@example.com", "x", 200, ""},
		{"pinned password", "GET", "/ZXhhbXBsZS5jb20/get_edge_config", "alice", "secret", 200, ""},
		{"other service", "GET", "/ZXhhbXBsZS5jb20/get_edge_config?service_name=_cisco-phone-tftp", "bob", "x", 200, "<error>NameError</error>"},
		{"single tenant", "GET", "/" + b64("single.example", base64.RawStdEncoding) + "/get_edge_config", "carol", "x", 200, "<address>expe1.single.example</address>"},
		{"no credentials", "GET", "/ZXhhbXBsZS5jb20/get_edge_config", "", "", 401, "HTTP Basic"},
		{"unknown user", "GET", "/ZXhhbXBsZS5jb20/get_edge_config", "mallory", "x", 401, ""},
		{"wrong password", "GET", "/ZXhhbXBsZS5jb20/get_edge_config", "alice", "guess", 401, ""},
		{"user of another domain", "GET", "/ZXhhbXBsZS5jb20/get_edge_config", "bob@example.net", "x", 401, ""},
		{"unknown tenant", "GET", "/" + b64("example.net", base64.RawStdEncoding) + "/get_edge_config", "bob", "x", 403, "domain example.net is not configured for MRA on this edge"},
		{"bad base64", "GET", "/!!!/get_edge_config", "bob", "x", 400, "base64"},
		{"not a domain", "GET", "/" + b64("not a domain", base64.RawStdEncoding) + "/get_edge_config", "bob", "x", 400, ""},
		{"other path", "GET", "/ZXhhbXBsZS5jb20/get_something", "bob", "x", 404, "get_edge_config"},
		{"root", "GET", "/", "", "", 404, ""},
		{"no domain", "GET", "/get_edge_config", "", "", 404, ""},
		{"post", "POST", "/ZXhhbXBsZS5jb20/get_edge_config", "bob", "x", 405, "use GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := te.get(t, tt.method, tt.path, tt.user, tt.pass)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, body)
			}
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body %q lacks %q", body, tt.body)
			}
			if resp.Header.Get("Server") != "CE_E" {
				t.Errorf("Server %q", resp.Header.Get("Server"))
			}
			switch tt.code {
			case 401:
				if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="Cisco-Edge"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
			case 405:
				if resp.Header.Get("Allow") != "GET" {
					t.Errorf("Allow %q", resp.Header.Get("Allow"))
				}
			case 200:
			default:
				if !strings.HasSuffix(string(body), "\n") || strings.Count(string(body), "\n") != 1 {
					t.Errorf("want a one-line sentence, got %q", body)
				}
			}
		})
	}
	if got := te.metric(t, "edgesim_http_requests_total", "code", "401"); got != 4 {
		t.Errorf("401s counted %v, want 4", got)
	}
}

// TestGetEdgeConfigGolden pins the whole document with advertised ports, as behind a port mapping.
func TestGetEdgeConfigGolden(t *testing.T) {
	te := startEdge(t, func(c *Config) { c.AdvertisedPorts = Ports{HTTPS: 8443, XMPP: 5222, SIP: 5061} })
	_, body := te.get(t, "GET", "/ZXhhbXBsZS5jb20/get_edge_config"+query, "bob", "x")
	golden := filepath.Join("testdata", "get_edge_config.golden.xml")
	if *update {
		if err := os.WriteFile(golden, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("get_edge_config differs from %s (rerun with -update if intended):\n%s", golden, body)
	}
}

func TestCookieDomain(t *testing.T) {
	tests := []struct{ sni, host, want string }{
		{"mra-host.example.com", "mra-host.example.com:8443", "example.com"},
		{"", "mra-host.example.com", "example.com"},
		{"", "127.0.0.1:8443", "sp.com"},
		{"example.com", "", "example.com"},
	}
	for _, tt := range tests {
		r := &http.Request{Host: tt.host, TLS: &tls.ConnectionState{ServerName: tt.sni}}
		if got := cookieDomain(r, "mra-host.sp.com"); got != tt.want {
			t.Errorf("sni %q host %q: %q, want %q", tt.sni, tt.host, got, tt.want)
		}
	}
}

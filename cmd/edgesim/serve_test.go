package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// testServer starts the whole of 'edgesim serve' in-process on loopback port 0.
func testServer(t *testing.T, extra ...string) *server {
	t.Helper()
	var o serveOptions
	fs := newFlagSet("serve", "", io.Discard)
	o.register(fs)
	args := append([]string{"--data", t.TempDir(), "--key-type", "ecdsa-p256",
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--handshake-timeout", "5s"}, extra...)
	if err := fs.parse(args); err != nil {
		t.Fatal(err)
	}
	s, err := startServer(o, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func (s *server) addrs() (https, xmpp, sip string) {
	h, x, p := s.edge.Addrs()
	return h.String(), x.String(), p.String()
}

func (s *server) caPool(t *testing.T) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(s.certs.Load().CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca.pem holds no certificate")
	}
	return pool
}

func dnsQuery(t *testing.T, s *server, proto, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
	r, _, err := c.Exchange(m, s.dns.Addr())
	if err != nil {
		t.Fatalf("dns %s %s %s: %v", proto, name, dns.TypeToString[qtype], err)
	}
	return r
}

func TestServeDNS(t *testing.T) {
	s := testServer(t)
	https, _, _ := s.addrs()
	_, httpsPort, _ := net.SplitHostPort(https)
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			r := dnsQuery(t, s, proto, "_collab-edge._tls.example.com", dns.TypeSRV)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
				t.Fatalf("SRV: %v", r)
			}
			srv := r.Answer[0].(*dns.SRV)
			if srv.Target != "mra.sp.example." || strconv.Itoa(int(srv.Port)) != httpsPort {
				t.Fatalf("SRV = %s %d, want mra.sp.example. %s (the HTTPS listener's real port)", srv.Target, srv.Port, httpsPort)
			}
			single := dnsQuery(t, s, proto, "_COLLAB-EDGE._tls.Example.NET", dns.TypeSRV)
			if len(single.Answer) != 1 || single.Answer[0].(*dns.SRV).Target != "expe1.example.net." {
				t.Fatalf("single-tenant SRV: %v", single)
			}
			a := dnsQuery(t, s, proto, "mra.sp.example", dns.TypeA)
			if len(a.Answer) != 1 || a.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
				t.Fatalf("A mra.sp.example: %v", a)
			}
			if r := dnsQuery(t, s, proto, "expe1.example.net", dns.TypeA); len(r.Answer) != 1 {
				t.Fatalf("A expe1.example.net: %v", r)
			}
			if r := dnsQuery(t, s, proto, "mra.sp.example", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
				t.Fatalf("AAAA must be NODATA: %v", r)
			}
			if r := dnsQuery(t, s, proto, "_cisco-uds._tcp.example.com", dns.TypeSRV); r.Rcode != dns.RcodeNameError {
				t.Fatalf("_cisco-uds must be NXDOMAIN from outside: %v", r)
			}
			if r := dnsQuery(t, s, proto, "_collab-edge._tls.not-a-tenant.example", dns.TypeSRV); r.Rcode != dns.RcodeRefused {
				t.Fatalf("outside the served zones must be REFUSED: %v", r)
			}
			if r := dnsQuery(t, s, proto, "example.com", dns.TypeSOA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("SOA: %v", r)
			}
		})
	}
}

// handshake connects with SNI and returns the leaf certificate presented, without verifying it.
func handshake(t *testing.T, addr, sni string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("handshake %s SNI %q: %v", addr, sni, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// TestServeScenarios makes a handshake per certificate scenario and checks the certificate
// presented and the verdict a client reaches with the CA trusted.
func TestServeScenarios(t *testing.T) {
	s := testServer(t)
	pool := s.caPool(t)
	https, _, _ := s.addrs()
	tests := []struct {
		sni, wantName string // wantName: a SAN or CN the presented certificate has
		wantErr       string
	}{
		{"mra.example.com", "mra.example.com", ""},
		{"MRA.EXAMPLE.COM", "mra.example.com", ""},
		{"mra.example.org", "mra.sp.example", "is valid for"}, // missing: the platform certificate
		{"mra.expired.example", "mra.expired.example", "expired"},
		{"mra.wrong-name.example", "elsewhere.invalid", "is valid for"},
		{"mra.cn-only.example", "mra.cn-only.example", "certificate relies on legacy Common Name"},
		{"mra.wildcard.example", "*.wildcard.example", ""},
		{"mra.self-signed.example", "mra.self-signed.example", "unknown authority"},
		{"expe1.example.net", "expe1.example.net", ""},
		{"unknown.nowhere.example", "mra.sp.example", "is valid for"},
	}
	for _, tt := range tests {
		t.Run(tt.sni, func(t *testing.T) {
			leaf := handshake(t, https, tt.sni)
			if !hasName(leaf, tt.wantName) {
				t.Fatalf("SNI %s: presented %s (SAN %v), want a certificate naming %s", tt.sni, leaf.Subject.CommonName, leaf.DNSNames, tt.wantName)
			}
			if !hasEKU(leaf, x509.ExtKeyUsageServerAuth) || !hasEKU(leaf, x509.ExtKeyUsageClientAuth) {
				t.Errorf("EKUs %v: want server and client authentication", leaf.ExtKeyUsage)
			}
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: strings.ToLower(tt.sni), Roots: pool})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("verify: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("verify error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func hasName(c *x509.Certificate, name string) bool {
	for _, n := range c.DNSNames {
		if n == name {
			return true
		}
	}
	return c.Subject.CommonName == name
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want {
			return true
		}
	}
	return false
}

func TestServeProtocols(t *testing.T) {
	s := testServer(t)
	pool := s.caPool(t)
	https, xmpp, sip := s.addrs()
	verified := &tls.Config{ServerName: "mra.example.com", RootCAs: pool}

	t.Run("get_edge_config", func(t *testing.T) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: verified,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, https)
			}}}
		defer client.CloseIdleConnections()
		b64 := base64.RawStdEncoding.EncodeToString([]byte("example.com"))
		req, _ := http.NewRequest("GET", "https://mra.example.com/"+b64+"/get_edge_config?service_name=_cisco-uds&service_name=_cuplogin", nil)
		req.SetBasicAuth("bob", "anything")
		req.Header.Set("Accept", "text/xml")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_, xmppPort, _ := net.SplitHostPort(xmpp)
		_, sipPort, _ := net.SplitHostPort(sip)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "<xmppEdgeServer>") ||
			!strings.Contains(string(body), "<tlsPort>"+xmppPort+"</tlsPort>") ||
			!strings.Contains(string(body), "<tlsPort>"+sipPort+"</tlsPort>") {
			t.Fatalf("get_edge_config: %d\n%s", resp.StatusCode, body)
		}
		req.URL.Path = "/" + base64.RawStdEncoding.EncodeToString([]byte("unknown.example")) + "/get_edge_config"
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("unknown tenant: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("xmpp starttls", func(t *testing.T) {
		raw, err := net.DialTimeout("tcp", xmpp, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(raw, "<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
		r := bufio.NewReader(raw)
		if got := readUntil(t, r, "</stream:features>"); !strings.Contains(got, "urn:ietf:params:xml:ns:xmpp-tls") {
			t.Fatalf("features without starttls: %s", got)
		}
		fmt.Fprintf(raw, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
		readUntil(t, r, "/>") // <proceed .../>
		tc := tls.Client(raw, verified)
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS after STARTTLS: %v", err)
		}
		fmt.Fprintf(tc, "<stream:stream to='example.com' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
		if got := readUntil(t, bufio.NewReader(tc), "</stream:features>"); !strings.Contains(got, "PLAIN") {
			t.Fatalf("features after TLS offer no SASL PLAIN: %s", got)
		}
	})

	t.Run("sip options", func(t *testing.T) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", sip, verified)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "OPTIONS sip:mra.example.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5555;branch=z9hG4bK1\r\n"+
			"From: <sip:bob@example.com>;tag=a1\r\nTo: <sip:mra.example.com>\r\nCall-ID: c1@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp := readUntil(t, bufio.NewReader(c), "\r\n\r\n")
		for _, want := range []string{"SIP/2.0 200 OK", "Call-ID: c1@test", "CSeq: 1 OPTIONS", "branch=z9hG4bK1", ";tag="} {
			if !strings.Contains(resp, want) {
				t.Fatalf("SIP response lacks %q:\n%s", want, resp)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		// Queries on this server, so its counters have something to count.
		dnsQuery(t, s, "udp", "_collab-edge._tls.example.com", dns.TypeSRV)
		dnsQuery(t, s, "udp", "_cisco-uds._tcp.example.com", dns.TypeSRV)
		dnsQuery(t, s, "udp", "_collab-edge._tls.elsewhere.example", dns.TypeSRV)
		handshake(t, https, "mra.example.org") // no domain certificate: platform
		resp, err := http.Get("http://" + s.metricLn.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, series := range []string{
			`edgesim_sni_selections_total{kind="exact"}`,
			`edgesim_sni_selections_total{kind="platform"}`,
			`edgesim_tls_handshakes_total{listener="https",result="ok"}`,
			`edgesim_tls_handshakes_total{listener="xmpp",result="ok"}`,
			`edgesim_tls_handshakes_total{listener="sip",result="ok"}`,
			`edgesim_tls_handshake_duration_seconds_count{listener="https",result="ok",version="1.3"}`,
			`edgesim_dns_queries_total{proto="udp",qtype="SRV",rcode="NOERROR"}`,
			`edgesim_dns_queries_total{proto="udp",qtype="SRV",rcode="NXDOMAIN"}`,
			`edgesim_dns_queries_total{proto="udp",qtype="SRV",rcode="REFUSED"}`,
			`edgesim_certificate_earliest_expiry_timestamp_seconds`,
			`edgesim_build_info{goversion="` + goVersion() + `",version="` + version() + `"}`,
			`edgesim_tenants`,
		} {
			if v := metricValue(t, string(body), series); v <= 0 {
				t.Errorf("%s = %v, want > 0", series, v)
			}
		}
		if v := metricValue(t, string(body), `edgesim_certificate_earliest_expiry_timestamp_seconds`); v < float64(time.Now().Unix()) {
			t.Errorf("earliest expiry %v is in the past", v)
		}
		if !strings.Contains(string(body), `edgesim_proxy_open_connections{listener="sip"}`) {
			t.Error("/metrics lacks the open connections gauge")
		}
	})
}

// metricValue returns the value of one series in a Prometheus text exposition, failing the test
// when the series is absent. Labels are matched as a set, in any order.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	name, labels, _ := strings.Cut(series, "{")
	want := strings.Split(strings.TrimSuffix(labels, "}"), ",")
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		key, val := line[:sp], line[sp+1:]
		_, got, _ := strings.Cut(strings.TrimSuffix(key, "}"), "{")
		if strings.TrimSuffix(key, "}") != name && labels == "" && got != "" {
			continue
		}
		ok := true
		for _, l := range want {
			ok = ok && (l == "" || strings.Contains(","+got+",", ","+l+","))
		}
		if ok {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no series %s", series)
	return 0
}

func readUntil(t *testing.T, r *bufio.Reader, marker string) string {
	t.Helper()
	var b strings.Builder
	for !strings.HasSuffix(b.String(), marker) {
		c, err := r.ReadByte()
		if err != nil {
			t.Fatalf("reading until %q: %v (got %q)", marker, err, b.String())
		}
		b.WriteByte(c)
	}
	return b.String()
}

func TestServeSynthetic(t *testing.T) {
	s := testServer(t, "--tenants", "50", "--users", "3")
	https, _, _ := s.addrs()
	pool := s.caPool(t)
	for _, k := range []int{1, 50} {
		host := fmt.Sprintf("mra.tenant-%d.example", k)
		leaf := handshake(t, https, host)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if !hasName(leaf, fmt.Sprintf("tenant-%d.example", k)) {
			t.Fatalf("%s: the service domain is not in the SAN list %v", host, leaf.DNSNames)
		}
	}
	if leaf := handshake(t, https, "mra.tenant-51.example"); !hasName(leaf, "mra.sp.example") {
		t.Fatalf("tenant-51 does not exist: want the platform certificate, got %v", leaf.DNSNames)
	}
	r := dnsQuery(t, s, "udp", "_collab-edge._tls.tenant-50.example", dns.TypeSRV)
	if len(r.Answer) != 1 {
		t.Fatalf("SRV tenant-50: %v", r)
	}
	if r := dnsQuery(t, s, "udp", "_collab-edge._tls.tenant-51.example", dns.TypeSRV); r.Rcode != dns.RcodeRefused {
		t.Fatalf("tenant-51: %v", r)
	}
}

// TestServeRealClients points dig and openssl at the running server, as the banner suggests.
func TestServeRealClients(t *testing.T) {
	s := testServer(t)
	https, xmpp, _ := s.addrs()
	t.Run("dig", func(t *testing.T) {
		if _, err := exec.LookPath("dig"); err != nil {
			t.Skip("dig not installed (apt-get install dnsutils)")
		}
		host, port, _ := net.SplitHostPort(s.dns.Addr())
		out, err := exec.Command("dig", "@"+host, "-p", port, "+norec", "+short", "+time=2", "+tries=1",
			"_collab-edge._tls.example.com", "SRV").CombinedOutput()
		_, hp, _ := net.SplitHostPort(https)
		if err != nil || strings.TrimSpace(string(out)) != "10 10 "+hp+" mra.sp.example." {
			t.Fatalf("dig: %v\n%s", err, out)
		}
	})
	for _, tc := range []struct {
		name, addr string
		extra      []string
	}{
		{"openssl https", https, nil},
		{"openssl xmpp starttls", xmpp, []string{"-starttls", "xmpp", "-xmpphost", "example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath("openssl"); err != nil {
				t.Skip("openssl not installed")
			}
			args := append([]string{"s_client", "-connect", tc.addr, "-servername", "mra.example.com",
				"-CAfile", s.certs.Load().CAFile, "-verify_hostname", "mra.example.com", "-verify_return_error", "-brief"}, tc.extra...)
			cmd := exec.Command("openssl", args...)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Verification: OK") {
				t.Fatalf("openssl %v: %v\n%s", args, err, out)
			}
		})
	}
}

// TestServeOddSNI sends server names no Go client would (over-long, non-ASCII, a wildcard, an
// empty label, an address, a trailing dot) with openssl: each gets the platform certificate or a
// TLS alert, and the edge goes on serving.
func TestServeOddSNI(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	s := testServer(t)
	https, _, _ := s.addrs()
	for _, name := range []string{strings.Repeat("a", 250) + ".com", "mr\u00e4.example.com", "*.example.com",
		"mra..example.com", "127.0.0.1", "MRA.EXAMPLE.COM."} {
		cmd := exec.Command("openssl", "s_client", "-connect", https, "-servername", name, "-brief")
		cmd.Stdin = strings.NewReader("")
		out, _ := cmd.CombinedOutput()
		if got := string(out); !strings.Contains(got, "mra.sp.example") && !strings.Contains(got, "alert") {
			t.Errorf("SNI %q: neither the platform certificate nor an alert:\n%s", name, got)
		}
	}
	if leaf := handshake(t, https, "mra.example.com"); !hasName(leaf, "mra.example.com") {
		t.Fatalf("after odd names the edge presents %v", leaf.DNSNames)
	}
}

func TestCLIErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("tenants:\n  - domain: example.com\n    certificate: sparkly\n"), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "--no-such-flag"}, exitUsage, "flag provided but not defined: -no-such-flag"},
		{[]string{"serve", "--key-type", "dsa"}, exitUsage, "--key-type"},
		{[]string{"serve", "--curves", "x448"}, exitUsage, `unknown group "x448"`},
		{[]string{"serve", "--config", bad}, exitFail, "sparkly"},
		{[]string{"serve", "--config", bad, "--tenants", "3"}, exitUsage, "use one"},
		{[]string{"bogus"}, exitUsage, `unknown command "bogus"`},
		{[]string{"dns"}, exitUsage, "dns export"},
		{[]string{"dns", "import"}, exitUsage, "one subcommand"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errOut.String(), tt.code, tt.want)
			}
		})
	}
}

func TestDNSExport(t *testing.T) {
	out := t.TempDir()
	var so, se strings.Builder
	if code := run([]string{"dns", "export", "--tenants", "3", "--out", out}, &so, &se); code != 0 {
		t.Fatalf("exit %d: %s", code, se.String())
	}
	for _, z := range []string{"sp.example", "tenant-1.example", "tenant-3.example"} {
		if _, err := os.Stat(filepath.Join(out, z+".zone")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := exec.LookPath("named-checkzone"); err != nil {
		t.Skip("named-checkzone not installed (apt-get install bind9-utils)")
	}
	for _, z := range []string{"sp.example", "tenant-2.example"} {
		if b, err := exec.Command("named-checkzone", z, filepath.Join(out, z+".zone")).CombinedOutput(); err != nil {
			t.Fatalf("named-checkzone %s: %v\n%s", z, err, b)
		}
	}
}

func TestServePortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errOut strings.Builder
	code := run([]string{"serve", "--data", t.TempDir(), "--key-type", "ecdsa-p256", "--sip-addr", ln.Addr().String(),
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--dns-addr", "127.0.0.1:0", "--metrics-addr", "",
		"--log-level", "error"}, &out, &errOut)
	if code != exitFail || !strings.Contains(errOut.String(), "choose another with") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// TestServeHotReplace replaces every tenant's certificate over and over while handshakes run:
// each handshake must succeed and see its host's old or new certificate, never anything else.
func TestServeHotReplace(t *testing.T) {
	const tenants = 20
	s := testServer(t, "--tenants", strconv.Itoa(tenants))
	https, _, _ := s.addrs()
	host := func(k int) string { return fmt.Sprintf("mra.tenant-%d.example", k) }
	orig := map[string]*tls.Certificate{}
	for k := 1; k <= tenants; k++ {
		c, ok := s.store.Get(host(k))
		if !ok {
			t.Fatalf("%s not in the store", host(k))
		}
		orig[host(k)] = c
	}
	// The replacement for tenant k is tenant k+1's certificate, easy to tell apart on the wire.
	next := func(k int) string { return host(k%tenants + 1) }
	done := make(chan struct{})
	swaps := make(chan int, 1)
	go func() {
		n := 0
		defer func() { swaps <- n }()
		for {
			for _, useOrig := range []bool{false, true} {
				select {
				case <-done:
					return
				default:
				}
				b := s.store.Batch()
				for k := 1; k <= tenants; k++ {
					c := orig[next(k)]
					if useOrig {
						c = orig[host(k)]
					}
					_ = b.Set(host(k), c)
				}
				b.Commit()
				n++
			}
		}
	}()
	for i := range 300 {
		k := i%tenants + 1
		leaf := handshake(t, https, host(k))
		want := map[string]bool{host(k): true, next(k): true}
		if !want[leaf.Subject.CommonName] {
			close(done)
			t.Fatalf("handshake %d for %s presented %s", i, host(k), leaf.Subject.CommonName)
		}
	}
	close(done)
	if n := <-swaps; n < 2 {
		t.Fatalf("only %d replacement rounds ran during the handshakes", n)
	}
}

// TestServeSRVTargetsResolve checks that every SRV target inside a served zone has an address,
// with the README's tenants file (several targets in the provider's domain).
func TestServeSRVTargetsResolve(t *testing.T) {
	// The README's example with the certificate files it names made up on the spot.
	dir := t.TempDir()
	example, err := os.ReadFile("../../testdata/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tenants.yaml"), example, 0o644); err != nil {
		t.Fatal(err)
	}
	leafDER := writeCertFiles(t, filepath.Join(dir, "certs"), "files.example", "mra-host.files.example")
	s := testServer(t, "--config", filepath.Join(dir, "tenants.yaml"))
	https, _, _ := s.addrs()
	if leaf := handshake(t, https, "mra-host.files.example"); !bytes.Equal(leaf.Raw, leafDER) {
		t.Fatalf("the files tenant presented %v, not its cert_file", leaf.DNSNames)
	}
	r := dnsQuery(t, s, "udp", "_collab-edge._tls.example.info", dns.TypeSRV)
	if len(r.Answer) != 2 {
		t.Fatalf("SRV example.info: %v", r)
	}
	for _, rr := range r.Answer {
		target := rr.(*dns.SRV).Target
		if a := dnsQuery(t, s, "udp", target, dns.TypeA); a.Rcode != dns.RcodeSuccess || len(a.Answer) != 1 {
			t.Fatalf("A %s: %v", target, a)
		}
	}
	if a := dnsQuery(t, s, "udp", "mra-host.sp.com", dns.TypeA); len(a.Answer) != 1 {
		t.Fatalf("A of the provider edge host: %v", a)
	}
}

// writeCertFiles writes a self-signed certificate for host and its key as dir/<name>.pem and
// dir/<name>.key, and returns the certificate's DER.
func writeCertFiles(t *testing.T, dir, name, host string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return der
}

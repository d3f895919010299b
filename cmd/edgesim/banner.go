package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"runtime"

	"github.com/edgesim/edgesim/tenant"
)

func goVersion() string { return runtime.Version() }

// printBanner says where every listener is and gives commands a user can paste to try them.
func (s *server) printBanner(w io.Writer) {
	https, xmpp, sip := s.edge.Addrs()
	p := s.dir.Provider()
	ca := s.certs.Load().CAFile
	t, user := s.sampleLogin()
	sniHost := t.SNIHosts(p)[0]
	dnsHost, dnsPort, _ := net.SplitHostPort(s.dns.Addr())
	httpsHost, httpsPort, _ := net.SplitHostPort(https.String())

	fmt.Fprintf(w, "edgesim serving %d tenants behind edge host %s (certificates: %s)\n", s.dir.Len(), p.EdgeHost, ca)
	fmt.Fprintf(w, "  dns      %s (udp, tcp)\n", s.dns.Addr())
	fmt.Fprintf(w, "  https    %s   get_edge_config\n", https)
	fmt.Fprintf(w, "  xmpp     %s   STARTTLS\n", xmpp)
	fmt.Fprintf(w, "  sip      %s   TLS\n", sip)
	if s.metricLn != nil {
		fmt.Fprintf(w, "  metrics  http://%s/metrics\n", s.metricLn.Addr())
	}
	s.printAdminBanner(w)
	fmt.Fprintf(w, "try:\n")
	fmt.Fprintf(w, "  dig @%s -p %s +norec _collab-edge._tls.%s SRV\n", dnsHost, dnsPort, t.Domain)
	fmt.Fprintf(w, "  openssl s_client -connect %s -servername %s -CAfile %s -verify_hostname %s -brief </dev/null\n",
		https, sniHost, ca, sniHost)
	if user != "" {
		fmt.Fprintf(w, "  curl --cacert %s --resolve %s:%s:%s -u %s:any 'https://%s:%s/%s/get_edge_config?service_name=_cisco-uds'\n",
			ca, sniHost, httpsPort, httpsHost, user, sniHost, httpsPort,
			base64.RawStdEncoding.EncodeToString([]byte(t.Domain)))
	}
	if user != "" {
		fmt.Fprintf(w, "  edgesim login --dns %s --ca %s %s@%s\n", s.dns.Addr(), ca, user, t.Domain)
	}
	fmt.Fprintf(w, "press Ctrl-C to stop\n")
}

// sampleLogin picks the tenant the banner's commands use: the first with a valid certificate and
// a user who may log in with any password, else the first with a valid certificate, else the
// first. user is empty when the tenant has no such user.
func (s *server) sampleLogin() (t *tenant.Tenant, user string) {
	s.dir.Each(func(c *tenant.Tenant) bool {
		if t == nil || t.Certificate != tenant.Valid && c.Certificate == tenant.Valid {
			t = c
		}
		if c.Certificate != tenant.Valid {
			return true
		}
		for _, u := range c.Users {
			if _, pinned := c.Passwords[u]; !pinned {
				t, user = c, u
				return false
			}
		}
		return true
	})
	return t, user
}

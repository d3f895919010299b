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
	var first *tenant.Tenant
	s.dir.Each(func(t *tenant.Tenant) bool { first = t; return false })
	user := "user1"
	if len(first.Users) > 0 {
		user = first.Users[0]
	}
	sniHost := first.SNIHosts(p)[0]
	dnsHost, dnsPort, _ := net.SplitHostPort(s.dns.Addr())
	httpsHost, httpsPort, _ := net.SplitHostPort(https.String())

	fmt.Fprintf(w, "edgesim serving %d tenants behind edge host %s (certificates: %s)\n", s.dir.Len(), p.EdgeHost, s.certs.CAFile)
	fmt.Fprintf(w, "  dns      %s (udp, tcp)\n", s.dns.Addr())
	fmt.Fprintf(w, "  https    %s   get_edge_config\n", https)
	fmt.Fprintf(w, "  xmpp     %s   STARTTLS\n", xmpp)
	fmt.Fprintf(w, "  sip      %s   TLS\n", sip)
	if s.metricLn != nil {
		fmt.Fprintf(w, "  metrics  http://%s/metrics\n", s.metricLn.Addr())
	}
	fmt.Fprintf(w, "try:\n")
	fmt.Fprintf(w, "  dig @%s -p %s +norec _collab-edge._tls.%s SRV\n", dnsHost, dnsPort, first.Domain)
	fmt.Fprintf(w, "  openssl s_client -connect %s -servername %s -CAfile %s -verify_hostname %s -brief </dev/null\n",
		https, sniHost, s.certs.CAFile, sniHost)
	fmt.Fprintf(w, "  curl --cacert %s --resolve %s:%s:%s -u %s:any 'https://%s:%s/%s/get_edge_config?service_name=_cisco-uds'\n",
		s.certs.CAFile, sniHost, httpsPort, httpsHost, user, sniHost, httpsPort,
		base64.RawStdEncoding.EncodeToString([]byte(first.Domain)))
	fmt.Fprintf(w, "press Ctrl-C to stop\n")
}

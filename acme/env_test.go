package acme

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is a small authoritative server for the test zones: SOA at each apex, A records for
// the hosts it is given, TXT from Challenges, NODATA for the rest of a zone, REFUSED outside.
type testDNS struct {
	addr  string
	zones []string          // apexes, lower case, no trailing dot
	hosts map[string]net.IP // name -> IPv4
	ch    *Challenges
}

// startDNS serves zones on UDP and TCP 127.0.0.1:<same port> until the test ends.
func startDNS(t *testing.T, ch *Challenges, zones []string, hosts map[string]net.IP) *testDNS {
	t.Helper()
	d := &testDNS{zones: zones, hosts: hosts, ch: ch}
	var pc net.PacketConn
	var ln net.Listener
	for range 10 { // the TCP port of a fresh UDP port is nearly always free
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	d.addr = pc.LocalAddr().String()
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: d}, {Listener: ln, Handler: d}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- s.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("dns server: %v", err)
		}
		t.Cleanup(func() {
			_ = s.Shutdown()
			<-done
		})
	}
	return d
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := canonName(q.Name)
	zone := ""
	for _, z := range d.zones {
		if name == z || strings.HasSuffix(name, "."+z) {
			zone = z
		}
	}
	if zone == "" {
		m.Rcode = dns.RcodeRefused
		_ = w.WriteMsg(m)
		return
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: 1}
	}
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: zone + ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 1},
		Ns: "ns." + zone + ".", Mbox: "hostmaster." + zone + ".", Serial: 1, Refresh: 60, Retry: 60, Expire: 600, Minttl: 1}
	switch q.Qtype {
	case dns.TypeSOA:
		if name == zone {
			m.Answer = append(m.Answer, soa)
		}
	case dns.TypeA:
		if ip := d.hosts[name]; ip != nil {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip})
		}
	case dns.TypeTXT:
		for _, v := range d.ch.TXT(name) {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{v}})
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, soa) // NODATA
	}
	_ = w.WriteMsg(m)
}

// testEdge stands in for the edge's HTTPS listener: GetCertificate asks Challenges for a
// TLS-ALPN-01 certificate first, then serves what the Manager delivered, by SAN.
type testEdge struct {
	addr string
	port int
	ch   *Challenges

	mu    sync.RWMutex
	certs map[string]*tls.Certificate
}

func startEdge(t *testing.T, ch *Challenges) *testEdge {
	t.Helper()
	e := &testEdge{ch: ch, certs: make(map[string]*tls.Certificate)}
	cfg := &tls.Config{
		NextProtos: []string{"http/1.1", ALPNProto},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := ch.ALPNCertificate(hello); ok {
				return c, nil
			}
			e.mu.RLock()
			c := e.certs[canonName(hello.ServerName)]
			e.mu.RUnlock()
			if c == nil {
				return nil, errors.New("no certificate for " + hello.ServerName)
			}
			return c, nil
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.port = ln.Addr().(*net.TCPAddr).Port
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Read(make([]byte, 1)) // until the client closes
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return e
}

// put serves c for every name on it.
func (e *testEdge) put(c *tls.Certificate) {
	e.mu.Lock()
	for _, n := range c.Leaf.DNSNames {
		e.certs[canonName(n)] = c
	}
	e.mu.Unlock()
}

// startHTTP serves HTTP-01 answers from ch on 127.0.0.1:0 and returns the port.
func startHTTP(t *testing.T, ch *Challenges) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !ch.ServeHTTPChallenge(w, r) {
				http.NotFound(w, r)
			}
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().(*net.TCPAddr).Port
}

package dnssrv

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUDPWildcardSourceAddress: bound to 0.0.0.0 (as deploy/k8s binds --dns-addr), an answer
// must come from the address the query was sent to, or a connected client (and any resolver
// that checks the source) drops it. 127.0.0.2 is local but the kernel's preferred source
// toward 127.0.0.1 is 127.0.0.1.
func TestUDPWildcardSourceAddress(t *testing.T) {
	zs, _ := NewMapZones(&Zone{Origin: "a.example", Hosts: map[string][]netip.Addr{"a.example": {netip.MustParseAddr("192.0.2.1")}}})
	s, err := New(Config{Addr: "0.0.0.0:0", Zones: zs, Nameserver: "ns.a.example"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(t.Context())
	_, port, _ := net.SplitHostPort(s.Addr())
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	r, _, err := c.Exchange(new(dns.Msg).SetQuestion("a.example.", dns.TypeA), net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		t.Fatalf("query to 127.0.0.2: %v", err)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("answer %v", r)
	}
}

// slowZones blocks the first Zone call until release is closed, signalling entered.
type slowZones struct {
	z       *Zone
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (s *slowZones) Zone(apex string) (*Zone, bool) {
	if apex != s.z.Origin {
		return nil, false
	}
	s.once.Do(func() { close(s.entered); <-s.release })
	return s.z, true
}
func (s *slowZones) Each(fn func(*Zone) bool) { fn(s.z) }

// TestUDPShutdownAnswersInFlight: a UDP query being answered when Shutdown starts still gets its
// answer (Shutdown "waits, until ctx is done, for queries in flight to finish").
func TestUDPShutdownAnswersInFlight(t *testing.T) {
	zs := &slowZones{z: &Zone{Origin: "a.example", Hosts: map[string][]netip.Addr{"a.example": {netip.MustParseAddr("192.0.2.1")}}},
		entered: make(chan struct{}), release: make(chan struct{})}
	s, err := New(Config{Addr: "127.0.0.1:0", Zones: zs, Nameserver: "ns.a.example"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q, _ := new(dns.Msg).SetQuestion("a.example.", dns.TypeA).Pack()
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	<-zs.entered
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	time.Sleep(200 * time.Millisecond) // Shutdown has begun
	close(zs.release)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1232)
	n, err := c.Read(buf)
	if err != nil {
		t.Errorf("in-flight query got no answer: %v", err)
	} else {
		var r dns.Msg
		if err := r.Unpack(buf[:n]); err != nil || len(r.Answer) != 1 {
			t.Errorf("answer %v: %v", &r, err)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

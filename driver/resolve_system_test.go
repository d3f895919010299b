package driver

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/edgesim/edgesim/dnssrv"
)

// systemResolverTo returns a resolver in system mode (no --dns) whose net.Resolver is Go's own,
// sending every query to addr instead of /etc/resolv.conf's servers: the system path's code,
// lookups and error classes, against a real DNS server on loopback.
func systemResolverTo(addr string, timeout time.Duration) *resolver {
	r := newResolver("", timeout)
	var d net.Dialer
	r.sys = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	return r
}

func TestSystemResolverPath(t *testing.T) {
	edge := netip.MustParseAddr("127.0.0.7")
	zones, err := dnssrv.NewMapZones(&dnssrv.Zone{Origin: "example.com",
		SRV:   []dnssrv.SRV{{Target: "mra.example.com", Port: 8443, Priority: 10, Weight: 10}},
		Hosts: map[string][]netip.Addr{"mra.example.com": {edge}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := dnssrv.New(dnssrv.Config{Addr: "127.0.0.1:0", Zones: zones, Nameserver: "ns.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	r := systemResolverTo(srv.Addr(), 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	targets, err := r.lookupSRV(ctx, "_collab-edge._tls.example.com")
	if err != nil || len(targets) != 1 || targets[0].Host != "mra.example.com" || targets[0].Port != 8443 {
		t.Fatalf("SRV through the system path: %v, %v", targets, err)
	}
	addrs, err := r.lookupAddr(ctx, "mra.example.com")
	if err != nil || len(addrs) != 1 || addrs[0] != edge {
		t.Fatalf("address through the system path: %v, %v", addrs, err)
	}
	if _, err := r.lookupSRV(ctx, "_collab-edge._tls.nothere.example.com"); classOf(err) != ClassDNSNXDomain {
		t.Fatalf("a name that does not exist: %v (class %s), want %s", err, classOf(err), ClassDNSNXDomain)
	}
	if _, inside := r.insideAnswer(ctx, "example.com"); inside {
		t.Fatal("_cisco-uds._tcp answered through the system path: the edge's DNS must not give it")
	}

	// A server that never answers: the lookup ends as a timeout, not a hang.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	silent := systemResolverTo(pc.LocalAddr().String(), 300*time.Millisecond)
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	start := time.Now()
	_, err = silent.lookupSRV(sctx, "_collab-edge._tls.example.com")
	if classOf(err) != ClassDNSTimeout || time.Since(start) > 3*time.Second {
		t.Fatalf("silent server: %v (class %s) after %v, want %s", err, classOf(err), time.Since(start), ClassDNSTimeout)
	}
}

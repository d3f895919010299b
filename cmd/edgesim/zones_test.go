package main

import (
	"context"
	"net/netip"
	"testing"

	"github.com/libdns/libdns"
	"github.com/miekg/dns"

	"github.com/edgesim/edgesim/acme"
	"github.com/edgesim/edgesim/dnssrv"
	"github.com/edgesim/edgesim/tenant"
)

// TestTenantZonesCacheFollowsTXT: a tenant zone comes from the cache once built, and an ACME
// DNS-01 record published or removed afterwards shows in the very next answer.
func TestTenantZonesCacheFollowsTXT(t *testing.T) {
	dir, err := tenant.Synthetic(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	edge := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	zones := newTenantZones(dir, 8443, edge, edge)
	var ch acme.Challenges
	zones.withTXT(ch.TXT, ch.TXTVersion)
	srv, err := dnssrv.New(dnssrv.Config{Addr: "127.0.0.1:0", Zones: zones, Nameserver: "ns." + dir.Provider().Domain})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })

	apex := tenant.SyntheticDomain(2)
	name := "_acme-challenge." + apex + "."
	ask := func(qtype uint16, qname string) *dns.Msg {
		t.Helper()
		r, _, err := (&dns.Client{Net: "udp"}).Exchange(new(dns.Msg).SetQuestion(qname, qtype), srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first, _ := zones.Zone(apex)
	if again, _ := zones.Zone(apex); first == nil || again != first {
		t.Fatalf("second Zone(%s) = %p, want the cached %p", apex, again, first)
	}
	if r := ask(dns.TypeTXT, name); r.Rcode != dns.RcodeNameError {
		t.Fatalf("TXT before publishing: %v", r)
	}
	if _, err := ch.AppendRecords(context.Background(), apex+".", []libdns.Record{
		libdns.TXT{Name: "_acme-challenge", Text: "token-1"}}); err != nil {
		t.Fatal(err)
	}
	r := ask(dns.TypeTXT, name)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "token-1" {
		t.Fatalf("TXT after publishing: %v", r)
	}
	if srvAns := ask(dns.TypeSRV, "_collab-edge._tls."+apex+"."); len(srvAns.Answer) != 1 {
		t.Fatalf("SRV: %v", srvAns)
	}
	if _, err := ch.DeleteRecords(context.Background(), apex+".", []libdns.Record{
		libdns.TXT{Name: "_acme-challenge", Text: "token-1"}}); err != nil {
		t.Fatal(err)
	}
	if r := ask(dns.TypeTXT, name); r.Rcode != dns.RcodeNameError {
		t.Fatalf("TXT after removal: %v", r)
	}
	if _, ok := zones.Zone("_tls." + apex); ok {
		t.Fatal("a name below a tenant's apex is not a zone")
	}
}

// A directory too big for the cache to help gets none, and its zones are built per query.
func TestTenantZonesNoCacheWhenLarge(t *testing.T) {
	dir, err := tenant.Synthetic(zoneCacheMaxTenants+1, 1)
	if err != nil {
		t.Fatal(err)
	}
	edge := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	zones := newTenantZones(dir, 8443, edge, edge)
	if zones.cache != nil {
		t.Fatalf("%d slots for %d tenants", len(zones.cache), dir.Len())
	}
	apex := tenant.SyntheticDomain(zoneCacheMaxTenants)
	if z, ok := zones.Zone(apex); !ok || z.Origin != apex || len(z.SRV) != 1 {
		t.Fatalf("Zone(%s) = %+v, %v", apex, z, ok)
	}
}

package main

import (
	"net/netip"
	"strings"

	"github.com/edgesim/edgesim/dnssrv"
	"github.com/edgesim/edgesim/tenant"
)

// tenantZones serves the tenants' DNS as the outside world sees it: one zone per service domain
// with its _collab-edge._tls SRV records, and the provider's zone with the edge host and the name
// server. Zones are built on demand from the directory, so a million synthetic tenants cost
// nothing until asked for.
type tenantZones struct {
	dir        tenant.Directory
	provider   tenant.Provider
	httpsPort  uint16       // SRV port when a record sets none
	edgeAddrs  []netip.Addr // where the edge hosts' listeners are
	nameserver string       // ns.<provider domain>
	dnsAddrs   []netip.Addr
}

func newTenantZones(dir tenant.Directory, httpsPort uint16, edge, dns []netip.Addr) *tenantZones {
	p := dir.Provider()
	return &tenantZones{dir: dir, provider: p, httpsPort: httpsPort, edgeAddrs: edge,
		nameserver: "ns." + p.Domain, dnsAddrs: dns}
}

// Zone implements dnssrv.Zones.
func (z *tenantZones) Zone(apex string) (*dnssrv.Zone, bool) {
	t, isTenant := z.dir.Lookup(apex)
	isTenant = isTenant && t.Domain == apex
	isProvider := apex == z.provider.Domain
	if !isTenant && !isProvider {
		return nil, false
	}
	zone := &dnssrv.Zone{Origin: apex, Hosts: map[string][]netip.Addr{}}
	if isProvider {
		zone.Hosts[z.provider.EdgeHost] = z.edgeAddrs
		zone.Hosts[z.nameserver] = z.dnsAddrs
	}
	if isTenant {
		for _, tg := range t.Targets(z.provider) {
			port := tg.Port
			if port == 0 {
				port = z.httpsPort
			}
			zone.SRV = append(zone.SRV, dnssrv.SRV{Target: tg.Target, Port: port, Priority: tg.Priority, Weight: tg.Weight})
			if tg.Target == apex || strings.HasSuffix(tg.Target, "."+apex) {
				zone.Hosts[tg.Target] = z.edgeAddrs // a single-tenant edge host in the service domain
			}
		}
	}
	return zone, true
}

// Each implements dnssrv.Zones: the provider's zone first, then every tenant's.
func (z *tenantZones) Each(fn func(*dnssrv.Zone) bool) {
	if _, isTenant := z.dir.Lookup(z.provider.Domain); !isTenant {
		pz, _ := z.Zone(z.provider.Domain)
		if !fn(pz) {
			return
		}
	}
	z.dir.Each(func(t *tenant.Tenant) bool {
		tz, _ := z.Zone(t.Domain)
		return fn(tz)
	})
}

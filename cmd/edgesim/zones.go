package main

import (
	"net/netip"
	"strings"

	"github.com/edgesim/edgesim/dnssrv"
	"github.com/edgesim/edgesim/tenant"
)

// tenantZones serves the tenants' DNS as the outside world sees it: one zone per service domain
// with its _collab-edge._tls SRV records, and the provider's zone with the edge host and the name
// server. Every SRV target that falls inside a served zone gets the edge's addresses. Tenant zones
// are built on demand from the directory, so a million synthetic tenants cost little memory.
type tenantZones struct {
	dir        tenant.Directory
	provider   tenant.Provider
	httpsPort  uint16       // SRV port when a record sets none
	edgeAddrs  []netip.Addr // where the edge hosts' listeners are
	nameserver string       // ns.<provider domain>
	dnsAddrs   []netip.Addr
	targets    map[string][]string // served zone apex -> SRV targets inside it
	provZone   *dnssrv.Zone        // built once, unless the provider domain is also a tenant's
	// txt, when set, gives the TXT strings of a name (ACME DNS-01 challenges); consulted for
	// _acme-challenge.<apex> and _acme-challenge.<SNI host> of every tenant zone.
	txt func(name string) []string
}

func newTenantZones(dir tenant.Directory, httpsPort uint16, edge, dns []netip.Addr) *tenantZones {
	p := dir.Provider()
	z := &tenantZones{dir: dir, provider: p, httpsPort: httpsPort, edgeAddrs: edge,
		nameserver: "ns." + p.Domain, dnsAddrs: dns, targets: map[string][]string{}}
	seen := map[string]bool{}
	dir.Each(func(t *tenant.Tenant) bool {
		for _, tg := range t.Targets(p) {
			if seen[tg.Target] {
				continue
			}
			seen[tg.Target] = true
			if apex := z.zoneOf(tg.Target); apex != "" {
				z.targets[apex] = append(z.targets[apex], tg.Target)
			}
		}
		return true
	})
	if _, isTenant := dir.Lookup(p.Domain); !isTenant {
		z.provZone = z.build(p.Domain, nil)
	}
	return z
}

// zoneOf returns the served zone holding host, or "" when no served zone does.
func (z *tenantZones) zoneOf(host string) string {
	for name := host; ; {
		if name == z.provider.Domain {
			return name
		}
		if t, ok := z.dir.Lookup(name); ok && t.Domain == name {
			return name
		}
		_, parent, ok := strings.Cut(name, ".")
		if !ok {
			return ""
		}
		name = parent
	}
}

// build makes the zone at apex; t is the tenant whose service domain it is, if any.
func (z *tenantZones) build(apex string, t *tenant.Tenant) *dnssrv.Zone {
	zone := &dnssrv.Zone{Origin: apex, Hosts: map[string][]netip.Addr{}}
	for _, h := range z.targets[apex] {
		zone.Hosts[h] = z.edgeAddrs
	}
	if apex == z.provider.Domain {
		zone.Hosts[z.provider.EdgeHost] = z.edgeAddrs
		zone.Hosts[z.nameserver] = z.dnsAddrs
	}
	if t != nil {
		// The apex and the SNI hosts resolve to the edge as well: an ACME validator checking
		// the domain certificate's names (TLS-ALPN-01) connects to them.
		zone.Hosts[apex] = z.edgeAddrs
		hosts := t.SNIHosts(z.provider)
		for _, h := range hosts {
			if h == apex || strings.HasSuffix(h, "."+apex) {
				zone.Hosts[h] = z.edgeAddrs
			}
		}
		if z.txt != nil {
			for _, h := range append(hosts, apex) {
				name := "_acme-challenge." + h
				if v := z.txt(name); len(v) > 0 {
					if zone.TXT == nil {
						zone.TXT = map[string][]string{}
					}
					zone.TXT[name] = v
				}
			}
		}
		for _, tg := range t.Targets(z.provider) {
			port := tg.Port
			if port == 0 {
				port = z.httpsPort
			}
			zone.SRV = append(zone.SRV, dnssrv.SRV{Target: tg.Target, Port: port, Priority: tg.Priority, Weight: tg.Weight})
		}
	}
	return zone
}

// Zone implements dnssrv.Zones.
func (z *tenantZones) Zone(apex string) (*dnssrv.Zone, bool) {
	if apex == z.provider.Domain && z.provZone != nil {
		return z.provZone, true
	}
	t, ok := z.dir.Lookup(apex)
	if !ok || t.Domain != apex {
		return nil, false
	}
	return z.build(apex, t), true
}

// Each implements dnssrv.Zones: the provider's zone first, then every tenant's.
func (z *tenantZones) Each(fn func(*dnssrv.Zone) bool) {
	if z.provZone != nil && !fn(z.provZone) {
		return
	}
	z.dir.Each(func(t *tenant.Tenant) bool { return fn(z.build(t.Domain, t)) })
}

package main

import (
	"hash/maphash"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/edgesim/edgesim/dnssrv"
	"github.com/edgesim/edgesim/tenant"
)

// tenantZones serves the tenants' DNS as the outside world sees it: one zone per service domain
// with its _collab-edge._tls SRV records, and the provider's zone with the edge host and the name
// server. Every SRV target that falls inside a served zone gets the edge's addresses. Tenant zones
// are built on demand from the directory, so a million synthetic tenants cost little memory, and
// the zones last built are kept in a small cache: building one took about 0.9 µs of the 7 µs of
// CPU a query cost (profile of `edgesim serve --tenants 1000` under dnsperf).
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
	// _acme-challenge.<apex> and _acme-challenge.<SNI host> of every tenant zone. txtVersion
	// changes whenever txt's answers do (see acme.Challenges.TXTVersion). Set both with withTXT.
	txt        func(name string) []string
	txtVersion func() uint64

	// cache holds tenant zones as built, direct-mapped by a hash of the apex: lock-free, bounded
	// (a colliding apex takes the slot over), and an entry is used only while the TXT version
	// it was built at is current. The directory itself does not change while serving.
	seed  maphash.Seed
	cache []atomic.Pointer[cachedZone]
}

// zoneCacheSlots bounds the slots of tenantZones.cache: 512 KiB of pointers, a zone of about
// 1 KiB held per slot in use. A directory gets 8 slots per tenant up to that (1,000 tenants:
// 8,192 slots, about 6% of them colliding); one of more than zoneCacheMaxTenants gets none.
const (
	zoneCacheSlots      = 1 << 16
	zoneCacheMaxTenants = zoneCacheSlots / 2
)

type cachedZone struct {
	apex       string
	txtVersion uint64
	zone       *dnssrv.Zone
}

// withTXT makes the tenant zones carry the TXT records txt gives, which change whenever
// version does.
func (z *tenantZones) withTXT(txt func(name string) []string, version func() uint64) {
	z.txt, z.txtVersion = txt, version
}

func newTenantZones(dir tenant.Directory, httpsPort uint16, edge, dns []netip.Addr) *tenantZones {
	p := dir.Provider()
	z := &tenantZones{dir: dir, provider: p, httpsPort: httpsPort, edgeAddrs: edge,
		nameserver: "ns." + p.Domain, dnsAddrs: dns, targets: map[string][]string{},
		seed: maphash.MakeSeed()}
	// Beyond zoneCacheMaxTenants, queries spread over the tenants mostly miss a cache of this
	// size, and a miss costs more than building the zone (1.12 against 0.60 µs at a million, in
	// review): no cache then.
	if dir.Len() <= zoneCacheMaxTenants {
		slots := 1024
		for slots < zoneCacheSlots && slots < 8*dir.Len() {
			slots *= 2
		}
		z.cache = make([]atomic.Pointer[cachedZone], slots)
	}
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
	var slot *atomic.Pointer[cachedZone]
	var version uint64
	if z.cache != nil {
		slot = &z.cache[maphash.String(z.seed, apex)&uint64(len(z.cache)-1)]
		c := slot.Load()
		if z.txtVersion != nil {
			version = z.txtVersion() // before building: a change while building makes the entry stale
		}
		if c != nil && c.apex == apex && c.txtVersion == version {
			return c.zone, true
		}
	}
	t, ok := z.dir.Lookup(apex)
	if !ok || t.Domain != apex {
		return nil, false
	}
	zone := z.build(apex, t)
	if slot != nil {
		slot.Store(&cachedZone{apex: apex, txtVersion: version, zone: zone})
	}
	return zone, true
}

// Each implements dnssrv.Zones: the provider's zone first, then every tenant's.
func (z *tenantZones) Each(fn func(*dnssrv.Zone) bool) {
	if z.provZone != nil && !fn(z.provZone) {
		return
	}
	z.dir.Each(func(t *tenant.Tenant) bool { return fn(z.build(t.Domain, t)) })
}

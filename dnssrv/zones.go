package dnssrv

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Label prefixes of the MRA discovery records, relative to a zone's apex.
const (
	// CollabEdgeLabel is the owner, below the apex, of the SRV records a client asks for.
	CollabEdgeLabel = "_collab-edge._tls"
	// CiscoUDSLabel is the owner of the inside-only record; it never resolves from outside.
	CiscoUDSLabel = "_cisco-uds._tcp"

	collabEdgeParent = "_tls" // the empty non-terminal above CollabEdgeLabel
)

// Zone is one served zone. Names are lower case without a trailing dot.
//
// A Zone handed to the server must not be changed afterwards; a Zones that wants to change a zone
// returns a new *Zone from then on.
type Zone struct {
	// Origin is the apex, e.g. example.com.
	Origin string
	// SRV are the records of _collab-edge._tls.<Origin>; none means that name does not exist.
	SRV []SRV
	// Hosts maps full host names inside this zone (e.g. expe1.example.com, or the apex itself) to
	// their addresses; IPv4 addresses are served as A, IPv6 as AAAA.
	Hosts map[string][]netip.Addr
	// TXT maps full names inside this zone (e.g. _acme-challenge.example.com) to TXT strings,
	// one record per string. Optional.
	TXT map[string][]string
}

// SRV is one _collab-edge._tls record. Target is a host name (never an address), lower case,
// without a trailing dot.
type SRV struct {
	Target   string
	Port     uint16
	Priority uint16
	Weight   uint16
}

// Zones tells the server what it serves. Implementations must be safe for concurrent use; they
// may build zones on demand, so a million tenants need not be held in memory as *Zone values.
type Zones interface {
	// Zone returns the zone whose apex is exactly apex (lower case, no trailing dot), or false.
	Zone(apex string) (*Zone, bool)
	// Each calls fn for every zone in a stable order until fn returns false (used by export).
	Each(fn func(*Zone) bool)
}

// Validate reports the first thing wrong with z: a bad origin, an SRV target that is not a host
// name, or a host or TXT name outside the zone. Errors wrap ErrBadZone.
func (z *Zone) Validate() error {
	if z == nil {
		return fmt.Errorf("%w: nil zone", ErrBadZone)
	}
	if !validName(z.Origin) {
		return fmt.Errorf("%w: origin %q is not a lower-case domain name without trailing dot", ErrBadZone, z.Origin)
	}
	for _, s := range z.SRV {
		if !validName(s.Target) {
			return fmt.Errorf("%w: zone %s: SRV target %q is not a lower-case host name", ErrBadZone, z.Origin, s.Target)
		}
		if _, err := netip.ParseAddr(s.Target); err == nil {
			return fmt.Errorf("%w: zone %s: SRV target %q is an address, it must be a name", ErrBadZone, z.Origin, s.Target)
		}
	}
	for h, addrs := range z.Hosts {
		if !validName(h) || !inZone(h, z.Origin) {
			return fmt.Errorf("%w: zone %s: host %q is not a lower-case name inside the zone", ErrBadZone, z.Origin, h)
		}
		for _, a := range addrs {
			if !a.IsValid() {
				return fmt.Errorf("%w: zone %s: host %s has an invalid address", ErrBadZone, z.Origin, h)
			}
		}
	}
	for n := range z.TXT {
		if !validName(n) || !inZone(n, z.Origin) {
			return fmt.Errorf("%w: zone %s: TXT name %q is not a lower-case name inside the zone", ErrBadZone, z.Origin, n)
		}
	}
	return nil
}

// relative returns name without the apex and its dot ("" for the apex itself). name must be
// inside the zone.
func (z *Zone) relative(name string) string {
	if len(name) == len(z.Origin) {
		return ""
	}
	return name[:len(name)-len(z.Origin)-1]
}

// exists reports whether name (lower case, no trailing dot, inside z) owns records or is an empty
// non-terminal above a name that does.
func (z *Zone) exists(name string) bool {
	rel := z.relative(name)
	if rel == "" {
		return true
	}
	if len(z.SRV) > 0 && (rel == CollabEdgeLabel || rel == collabEdgeParent) {
		return true
	}
	if _, ok := z.Hosts[name]; ok {
		return true
	}
	if _, ok := z.TXT[name]; ok {
		return true
	}
	for h := range z.Hosts {
		if isAtOrBelow(h, name) {
			return true
		}
	}
	for n := range z.TXT {
		if isAtOrBelow(n, name) {
			return true
		}
	}
	return false
}

// MapZones is a Zones over an in-memory set of zones, for small configurations and tests. Build
// it with NewMapZones; it is immutable and safe for concurrent use.
type MapZones struct {
	byApex map[string]*Zone
	order  []*Zone // sorted by Origin
}

// NewMapZones validates zones and indexes them by apex. A duplicate apex is an error.
func NewMapZones(zones ...*Zone) (*MapZones, error) {
	m := &MapZones{byApex: make(map[string]*Zone, len(zones)), order: make([]*Zone, 0, len(zones))}
	for _, z := range zones {
		if err := z.Validate(); err != nil {
			return nil, err
		}
		if _, dup := m.byApex[z.Origin]; dup {
			return nil, fmt.Errorf("%w: duplicate zone %s", ErrBadZone, z.Origin)
		}
		m.byApex[z.Origin] = z
		m.order = append(m.order, z)
	}
	slices.SortFunc(m.order, func(a, b *Zone) int { return strings.Compare(a.Origin, b.Origin) })
	return m, nil
}

// Zone implements Zones.
func (m *MapZones) Zone(apex string) (*Zone, bool) {
	z, ok := m.byApex[apex]
	return z, ok
}

// Each implements Zones, in order of Origin.
func (m *MapZones) Each(fn func(*Zone) bool) {
	for _, z := range m.order {
		if !fn(z) {
			return
		}
	}
}

// Len returns the number of zones.
func (m *MapZones) Len() int { return len(m.order) }

// validName reports whether s is a lower-case domain name without a trailing dot.
func validName(s string) bool {
	if s == "" || strings.HasSuffix(s, ".") || s != strings.ToLower(s) {
		return false
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return false
	}
	return !strings.Contains(s, "..")
}

// inZone reports whether name is apex or below it.
func inZone(name, apex string) bool { return isAtOrBelow(name, apex) }

// isAtOrBelow reports whether name equals ancestor or ends with "."+ancestor.
func isAtOrBelow(name, ancestor string) bool {
	if len(name) == len(ancestor) {
		return name == ancestor
	}
	return len(name) > len(ancestor) && name[len(name)-len(ancestor)-1] == '.' && strings.HasSuffix(name, ancestor)
}

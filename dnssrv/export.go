package dnssrv

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// WriteZoneFile writes z as an RFC 1035 master file ($ORIGIN, $TTL, SOA, NS, SRV, A/AAAA, TXT)
// that BIND, NSD and CoreDNS load, with the same records the Server answers. nameserver is the
// NS target and SOA MNAME (as Config.Nameserver; "" means DefaultNameserver); ttl 0 means
// DefaultTTL. Hosts and TXT names are written in sorted order, so the output is stable.
func WriteZoneFile(w io.Writer, z *Zone, nameserver string, ttl time.Duration) error {
	if err := z.Validate(); err != nil {
		return err
	}
	nameserver = strings.ToLower(strings.TrimSuffix(nameserver, "."))
	if nameserver == "" {
		nameserver = DefaultNameserver
	}
	if !validName(nameserver) {
		return fmt.Errorf("%w: nameserver %q is not a host name", ErrBadConfig, nameserver)
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl.Seconds() > float64(1<<31-1) {
		return fmt.Errorf("%w: TTL %v must be between 1s and 2^31-1 seconds", ErrBadConfig, ttl)
	}
	secs := uint32(ttl / time.Second)
	apex := z.Origin + "."
	hdr := func(owner string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: secs}
	}

	rrs := []dns.RR{
		soaRR(z.Origin, apex, nameserver+".", secs),
		&dns.NS{Hdr: hdr(apex, dns.TypeNS), Ns: nameserver + "."},
	}
	for _, v := range z.SRV {
		rrs = append(rrs, &dns.SRV{Hdr: hdr(z.srvOwner(), dns.TypeSRV),
			Priority: v.Priority, Weight: v.Weight, Port: v.Port, Target: v.Target + "."})
	}
	for _, h := range sortedKeys(z.Hosts) {
		rrs = appendHostRRs(rrs, hdr(h+".", dns.TypeA), z.Hosts[h], dns.TypeA)
		rrs = appendHostRRs(rrs, hdr(h+".", dns.TypeAAAA), z.Hosts[h], dns.TypeAAAA)
	}
	for _, n := range sortedKeys(z.TXT) {
		for _, t := range z.TXT[n] {
			rrs = append(rrs, &dns.TXT{Hdr: hdr(n+".", dns.TypeTXT), Txt: splitTXT(t)})
		}
	}

	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "; zone %s, written by edgesim dnssrv\n$ORIGIN %s\n$TTL %d\n", z.Origin, apex, secs)
	for _, rr := range rrs {
		bw.WriteString(rr.String())
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dnssrv: write zone %s: %w", z.Origin, err)
	}
	return nil
}

// srvOwner returns _collab-edge._tls.<Origin>. with its trailing dot.
func (z *Zone) srvOwner() string { return CollabEdgeLabel + "." + z.Origin + "." }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package dnssrv

import (
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// SOA timers. The serial is fixed so that every answer and every exported zone file agree.
const (
	soaSerial  = 1
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
)

// ServeDNS implements dns.Handler: it answers r on w as the authoritative server of s's zones.
// It never panics on any message miekg/dns can unpack and writes nothing for a response (QR=1).
// It is safe for concurrent use and needs no listener, so it can be fuzzed and benchmarked
// without sockets.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	start := time.Now()
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	m, qt := s.answer(r, tcp)
	if m == nil {
		return
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("write answer", networkField(tcp), zap.Error(err))
	}
	s.metrics.observe(qt, m.Rcode, tcp, time.Since(start))
}

// answer builds the response to r, or returns nil when r gets no answer. qt is the metrics
// index of the question type.
func (s *Server) answer(r *dns.Msg, tcp bool) (m *dns.Msg, qt int) {
	if r == nil || r.Response {
		return nil, qtOther
	}
	m = new(dns.Msg)
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	if len(r.Question) > 0 {
		m.Question = r.Question[:1:1] // shared with the request, which is not used after this
		qt = qtypeIndex(r.Question[0].Qtype)
	} else {
		qt = qtOther
	}

	reqOPT, badOPT := findOPT(r)
	size := dns.MinMsgSize
	if reqOPT != nil {
		size = min(max(int(reqOPT.UDPSize()), dns.MinMsgSize), s.cfg.MaxUDPSize)
	}
	if tcp {
		size = dns.MaxMsgSize
	}

	switch {
	case r.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
	case badOPT || len(r.Question) != 1:
		m.Rcode = dns.RcodeFormatError
	case reqOPT != nil && reqOPT.Version() != 0:
		m.Rcode = dns.RcodeBadVers
	default:
		m.RecursionDesired = r.RecursionDesired
		m.CheckingDisabled = r.CheckingDisabled
		s.resolve(m, r.Question[0])
	}
	if reqOPT != nil {
		m.Extra = append(m.Extra, s.opt(reqOPT.Do()))
	}
	fit(m, size)
	return m, qt
}

// resolve fills m with the answer to q; m holds the question.
func (s *Server) resolve(m *dns.Msg, q dns.Question) {
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return
	}
	name := strings.TrimSuffix(lowerASCII(q.Name), ".")
	z, apexOff := s.findZone(name)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return
	}
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		m.Rcode = dns.RcodeRefused // no zone transfers
		return
	}
	m.Authoritative = true
	apexOwner := dns.Fqdn(q.Name[apexOff:])
	if !z.exists(name) {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa(z, apexOwner)}
		return
	}
	owner := dns.Fqdn(q.Name)
	rel := z.relative(name)
	switch {
	case q.Qtype == dns.TypeANY:
		// RFC 8482 §4.2: one synthesized HINFO instead of everything at the name.
		m.Answer = []dns.RR{&dns.HINFO{Hdr: s.hdr(owner, dns.TypeHINFO), Cpu: "RFC8482", Os: ""}}
	case rel == "" && q.Qtype == dns.TypeSOA:
		m.Answer = []dns.RR{s.soa(z, owner)}
	case rel == "" && q.Qtype == dns.TypeNS:
		m.Answer = []dns.RR{&dns.NS{Hdr: s.hdr(owner, dns.TypeNS), Ns: s.nsFQDN}}
		m.Extra = s.appendAddrs(make([]dns.RR, 0, 3), z, s.cfg.Nameserver, s.nsFQDN)
	case rel == CollabEdgeLabel && q.Qtype == dns.TypeSRV:
		m.Answer = make([]dns.RR, 0, len(z.SRV))
		m.Extra = make([]dns.RR, 0, 2*len(z.SRV)+1) // A, AAAA per target, OPT
		for i, v := range z.SRV {
			target := v.Target + "."
			m.Answer = append(m.Answer, &dns.SRV{Hdr: s.hdr(owner, dns.TypeSRV),
				Priority: v.Priority, Weight: v.Weight, Port: v.Port, Target: target})
			if !seenTarget(z.SRV[:i], v.Target) {
				m.Extra = s.appendAddrs(m.Extra, z, v.Target, target)
			}
		}
	case q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA:
		m.Answer = appendHostRRs(m.Answer, s.hdr(owner, q.Qtype), z.Hosts[name], q.Qtype)
	case q.Qtype == dns.TypeTXT:
		for _, t := range z.TXT[name] {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: s.hdr(owner, dns.TypeTXT), Txt: splitTXT(t)})
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{s.soa(z, apexOwner)} // NODATA (RFC 2308 §2.2)
	}
}

// findZone returns the closest enclosing served zone of name (lower case, no trailing dot) and
// the byte offset in name where its apex starts.
func (s *Server) findZone(name string) (*Zone, int) {
	if name == "" {
		return nil, 0
	}
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		// A zone whose Origin is not the apex asked for would break the offsets below: skip it.
		if z, ok := s.zones.Zone(name[off:]); ok && z != nil && z.Origin == name[off:] {
			return z, off
		}
	}
	return nil, 0
}

// appendAddrs appends the A and AAAA records of host (owner: hostFQDN), if host is in a served
// zone. cur is the zone at hand, tried first to spare a lookup.
func (s *Server) appendAddrs(extra []dns.RR, cur *Zone, host, hostFQDN string) []dns.RR {
	z := cur
	if !inZone(host, cur.Origin) {
		z, _ = s.findZone(host)
	}
	if z == nil {
		return extra
	}
	addrs := z.Hosts[host]
	if len(addrs) == 0 {
		return extra
	}
	extra = appendHostRRs(extra, s.hdr(hostFQDN, dns.TypeA), addrs, dns.TypeA)
	return appendHostRRs(extra, s.hdr(hostFQDN, dns.TypeAAAA), addrs, dns.TypeAAAA)
}

// appendHostRRs appends to rrs one record of type qtype (A or AAAA) per address of that family.
func appendHostRRs(rrs []dns.RR, hdr dns.RR_Header, addrs []netip.Addr, qtype uint16) []dns.RR {
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case qtype == dns.TypeA && a.Is4():
			x := &aRR{ip: a.As4()}
			x.rr = dns.A{Hdr: hdr, A: x.ip[:]}
			rrs = append(rrs, &x.rr)
		case qtype == dns.TypeAAAA && a.Is6():
			x := &aaaaRR{ip: a.As16()}
			x.rr = dns.AAAA{Hdr: hdr, AAAA: x.ip[:]}
			rrs = append(rrs, &x.rr)
		}
	}
	return rrs
}

// aRR and aaaaRR hold a record and its address bytes in one allocation.
type (
	aRR struct {
		rr dns.A
		ip [4]byte
	}
	aaaaRR struct {
		rr dns.AAAA
		ip [16]byte
	}
)

// soa returns the zone's SOA record with the given owner (the apex as the client spelt it).
func (s *Server) soa(z *Zone, owner string) *dns.SOA {
	return soaRR(z.Origin, owner, s.nsFQDN, s.ttl)
}

// soaRR builds the SOA of the zone at origin: MNAME nsFQDN, RNAME hostmaster.<origin>.
func soaRR(origin, owner, nsFQDN string, ttl uint32) *dns.SOA {
	return &dns.SOA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: nsFQDN, Mbox: "hostmaster." + origin + ".",
		Serial: soaSerial, Refresh: soaRefresh, Retry: soaRetry, Expire: soaExpire, Minttl: ttl}
}

// hdr returns an IN record header with the server's TTL.
func (s *Server) hdr(owner string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: s.ttl}
}

// opt returns the OPT record of a response: the server's UDP size and the client's DO bit
// (RFC 3225 §3). A fresh one each time, since packing writes the extended rcode into it.
func (s *Server) opt(do bool) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(uint16(s.cfg.MaxUDPSize))
	if do {
		o.SetDo()
	}
	return o
}

// findOPT returns the request's OPT record, and whether the request is malformed by having more
// than one, or one outside the additional section (RFC 6891 §6.1.1).
func findOPT(r *dns.Msg) (opt *dns.OPT, bad bool) {
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			bad = bad || opt != nil
			opt = o
		}
	}
	for _, sec := range [...][]dns.RR{r.Answer, r.Ns} {
		for _, rr := range sec {
			if _, ok := rr.(*dns.OPT); ok {
				bad = true
			}
		}
	}
	return opt, bad
}

// fit makes m fit in size bytes. Additional records that do not fit are dropped without the TC
// bit (RFC 2181 §9); if the answer itself does not fit, the response is the header and question
// alone (and OPT) with TC set, so that the client asks again over TCP. A client ignores the
// records of a truncated answer anyway (RFC 2181 §9), and an empty one keeps the biggest answers
// from amplifying spoofed UDP queries (about 1x instead of 512 bytes for a 45-byte query).
// Compression is used only when needed.
func fit(m *dns.Msg, size int) {
	m.Compress = false
	if m.Len() <= size {
		return
	}
	m.Compress = true
	if m.Len() <= size {
		return
	}
	var extra []dns.RR
	var opt dns.RR
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			opt = rr
		} else {
			extra = append(extra, rr)
		}
	}
	m.Extra = nil
	if opt != nil {
		m.Extra = []dns.RR{opt}
	}
	m.Truncate(size)
	if m.Truncated {
		m.Answer, m.Ns, m.Extra = nil, nil, m.Extra[:0]
		if opt != nil {
			m.Extra = append(m.Extra, opt)
		}
		return
	}
	m.Compress = true
	for _, rr := range extra {
		n := len(m.Extra)
		m.Extra = append(m.Extra, rr)
		if opt != nil {
			m.Extra[n-1], m.Extra[n] = rr, opt // keep OPT last
		}
		if m.Len() > size {
			if opt != nil {
				m.Extra[n-1] = opt
			}
			m.Extra = m.Extra[:n]
			return
		}
	}
}

// seenTarget reports whether target is among srvs' targets.
func seenTarget(srvs []SRV, target string) bool {
	for _, v := range srvs {
		if v.Target == target {
			return true
		}
	}
	return false
}

// splitTXT cuts t into character-strings of at most 255 bytes.
func splitTXT(t string) []string {
	if len(t) <= 255 {
		return []string{t}
	}
	var out []string
	for len(t) > 255 {
		out = append(out, t[:255])
		t = t[255:]
	}
	return append(out, t)
}

// lowerASCII lower-cases ASCII letters, allocating only when s has an upper-case one. The result
// has the same length as s, so offsets carry over to the original.
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

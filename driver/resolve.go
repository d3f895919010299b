package driver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// srvTarget is one _collab-edge._tls SRV record.
type srvTarget struct {
	Host     string // without the trailing dot
	Port     uint16
	Priority uint16
	Weight   uint16
}

func (t srvTarget) hostPort() string { return net.JoinHostPort(t.Host, fmt.Sprint(t.Port)) }

// resolver asks either one DNS server (miekg/dns over UDP, then TCP when the answer is
// truncated) or the system resolver. Safe for concurrent use.
type resolver struct {
	server  string    // host:port; "" = the system resolver
	conns   sync.Pool // idle connected UDP sockets to server (*dns.Conn)
	udp     *dns.Client
	tcp     *dns.Client
	sys     *net.Resolver
	timeout time.Duration
}

func newResolver(server string, timeout time.Duration) *resolver {
	return &resolver{
		server:  server,
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
		sys:     net.DefaultResolver,
		timeout: timeout,
	}
}

// dnsError is a failed lookup with its class.
type dnsError struct {
	class Class
	msg   string
}

func (e *dnsError) Error() string { return e.msg }

func classOf(err error) Class {
	var de *dnsError
	if errors.As(err, &de) {
		return de.class
	}
	return ClassDNSError
}

// exchange sends one question to the configured server and returns the answer section.
func (r *resolver) exchange(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	in, err := r.exchangeUDP(ctx, m)
	if err == nil && in.Truncated {
		in, _, err = r.tcp.ExchangeContext(ctx, m, r.server)
	}
	qs := dns.TypeToString[qtype]
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, context.Canceled):
			return nil, &dnsError{ClassCanceled, fmt.Sprintf("%s %s: the run stopped", name, qs)}
		case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded):
			return nil, &dnsError{ClassDNSTimeout, fmt.Sprintf("%s %s: no answer from %s within %v", name, qs, r.server, r.timeout)}
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, &dnsError{ClassDNSError, fmt.Sprintf("%s %s: nothing answers DNS on %s (connection refused): is the DNS server running, and is --dns right?", name, qs, r.server)}
		}
		return nil, &dnsError{ClassDNSError, fmt.Sprintf("%s %s: asking %s: %v", name, qs, r.server, err)}
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
		return in.Answer, nil
	case dns.RcodeNameError:
		return nil, &dnsError{ClassDNSNXDomain, fmt.Sprintf("%s %s: NXDOMAIN from %s (no such name)", name, qs, r.server)}
	case dns.RcodeRefused:
		return nil, &dnsError{ClassDNSError, fmt.Sprintf("%s %s: REFUSED from %s: that server does not serve this domain", name, qs, r.server)}
	default:
		return nil, &dnsError{ClassDNSError, fmt.Sprintf("%s %s: %s from %s", name, qs, dns.RcodeToString[in.Rcode], r.server)}
	}
}

// udpRetry is how long a query waits before it is sent again, as stub resolvers do: one lost
// datagram costs this, not the whole step's timeout.
const udpRetry = 2 * time.Second

// exchangeUDP asks over a connected UDP socket kept for the next query (a socket per query cost
// the driver a fifth of its CPU in syscalls), sending again every udpRetry until ctx ends. A
// socket that saw an error is closed rather than reused; late replies are skipped by ID.
func (r *resolver) exchangeUDP(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, udpRetry)
		in, err := r.exchangeUDPOnce(actx, m)
		attemptTimedOut := actx.Err() != nil // read before cancel, which sets it
		cancel()
		if err == nil || ctx.Err() != nil || !attemptTimedOut {
			if err != nil && ctx.Err() != nil {
				err = ctx.Err()
			}
			return in, err
		}
		// This attempt timed out while ctx has time left: send again on a new socket.
	}
}

func (r *resolver) exchangeUDPOnce(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	co, _ := r.conns.Get().(*dns.Conn)
	if co == nil {
		var err error
		if co, err = r.dialUDP(ctx); err != nil {
			return nil, err
		}
	}
	// A cancelled run must not wait for the read deadline.
	stop := context.AfterFunc(ctx, func() { _ = co.SetDeadline(time.Unix(1, 0)) })
	in, _, err := r.udp.ExchangeWithConnContext(ctx, m, co)
	if err == nil && !in.Response {
		err = errNotResponse
	}
	if !stop() || err != nil { // its deadline was moved, or it saw an error: not reused
		_ = co.Close()
		return in, err
	}
	r.conns.Put(co)
	return in, nil
}

// errNotResponse is a reply without the QR bit: not an answer (a socket connected to itself
// reads back its own query).
var errNotResponse = errors.New("the reply is not a DNS response (QR bit clear)")

// dialUDP connects a UDP socket to the server. While nothing listens on the server's port the
// kernel may give the socket that very port, connecting it to itself (Go's TCP dialer guards
// against the same): each query would come back as its own empty answer. Such a socket is closed
// and another made.
func (r *resolver) dialUDP(ctx context.Context) (*dns.Conn, error) {
	for {
		co, err := r.udp.DialContext(ctx, r.server)
		if err != nil {
			return nil, err
		}
		if co.LocalAddr().String() != co.RemoteAddr().String() {
			return co, nil
		}
		_ = co.Close()
	}
}

// sysError classifies an error from the system resolver.
func sysError(name, qtype string, err error) error {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsTimeout:
			return &dnsError{ClassDNSTimeout, fmt.Sprintf("%s %s: the system resolver timed out", name, qtype)}
		case de.IsNotFound:
			return &dnsError{ClassDNSNXDomain, fmt.Sprintf("%s %s: no such name (system resolver)", name, qtype)}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &dnsError{ClassDNSTimeout, fmt.Sprintf("%s %s: the system resolver timed out", name, qtype)}
	}
	return &dnsError{ClassDNSError, fmt.Sprintf("%s %s: %v", name, qtype, err)}
}

// lookupSRV returns the SRV records of name in the order a client tries them (RFC 2782).
func (r *resolver) lookupSRV(ctx context.Context, name string) ([]srvTarget, error) {
	var out []srvTarget
	if r.server == "" {
		_, recs, err := r.sys.LookupSRV(ctx, "", "", name)
		if err != nil {
			return nil, sysError(name, "SRV", err)
		}
		for _, s := range recs {
			out = append(out, srvTarget{strings.TrimSuffix(s.Target, "."), s.Port, s.Priority, s.Weight})
		}
	} else {
		ans, err := r.exchange(ctx, name, dns.TypeSRV)
		if err != nil {
			return nil, err
		}
		for _, rr := range ans {
			if s, ok := rr.(*dns.SRV); ok {
				out = append(out, srvTarget{strings.TrimSuffix(s.Target, "."), s.Port, s.Priority, s.Weight})
			}
		}
	}
	if len(out) == 0 {
		return nil, &dnsError{ClassDNSNXDomain, fmt.Sprintf("%s SRV: the name exists but has no SRV records", name)}
	}
	if len(out) == 1 && (out[0].Host == "" || out[0].Host == ".") {
		return nil, &dnsError{ClassDNSNXDomain, fmt.Sprintf("%s SRV: target '.': the service is decidedly not offered (RFC 2782)", name)}
	}
	return orderSRV(out, rand.N[int]), nil
}

// orderSRV sorts records by priority and, within a priority, by RFC 2782's weighted random
// selection (records of weight 0 first in the running sum, so they are rarely picked first).
// randN(n) returns a number in [0, n).
func orderSRV(recs []srvTarget, randN func(int) int) []srvTarget {
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b srvTarget) int {
		if a.Priority != b.Priority {
			return int(a.Priority) - int(b.Priority)
		}
		// Weight 0 first, as RFC 2782 asks before the selection.
		return boolInt(a.Weight != 0) - boolInt(b.Weight != 0)
	})
	out := make([]srvTarget, 0, len(recs))
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].Priority == recs[i].Priority {
			j++
		}
		group := recs[i:j]
		for len(group) > 0 {
			sum := 0
			for _, g := range group {
				sum += int(g.Weight)
			}
			pick := 0
			if sum > 0 {
				x := randN(sum + 1) // 0 … sum inclusive
				run := 0
				for k, g := range group {
					run += int(g.Weight)
					if run >= x {
						pick = k
						break
					}
				}
			}
			out = append(out, group[pick])
			group = slices.Delete(slices.Clone(group), pick, pick+1)
		}
		i = j
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// lookupAddr returns the IPv4 addresses of host, else its IPv6 ones.
func (r *resolver) lookupAddr(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, nil
	}
	if r.server == "" {
		addrs, err := r.sys.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, sysError(host, "A/AAAA", err)
		}
		if len(addrs) == 0 {
			return nil, &dnsError{ClassDNSNXDomain, fmt.Sprintf("%s: no addresses", host)}
		}
		return addrs, nil
	}
	var out []netip.Addr
	var firstErr error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		ans, err := r.exchange(ctx, host, qt)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, rr := range ans {
			switch v := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					out = append(out, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					out = append(out, a)
				}
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, &dnsError{ClassDNSNXDomain, fmt.Sprintf("%s: the name has no A or AAAA records", host)}
}

// insideAnswer reports whether _cisco-uds._tcp.<domain> resolves: a client that gets an answer
// believes it is inside the enterprise and does not use MRA. Any error counts as "no answer".
func (r *resolver) insideAnswer(ctx context.Context, domain string) (string, bool) {
	recs, err := r.lookupSRV(ctx, "_cisco-uds._tcp."+domain)
	if err != nil || len(recs) == 0 {
		return "", false
	}
	return recs[0].hostPort(), true
}

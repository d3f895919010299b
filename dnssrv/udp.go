package dnssrv

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpServer answers queries on one UDP socket. It replaces miekg/dns's UDP serve loop, which
// costs this server most of its CPU per query (profile of `edgesim serve` under dnsperf, 1,000
// zones, one core): miekg starts a goroutine per packet, sets a read deadline before every read,
// and sends every answer with sendmsg and an IP_PKTINFO control message naming the source
// address, which alone costs about 0.5 µs per answer on loopback. Here a few reader goroutines
// each loop over read, answer and write with their own buffers. A socket bound to one address
// needs no control message: the kernel answers from that address. A socket bound to the
// wildcard address (0.0.0.0 or ::, as in deploy/k8s) does: the answer must come from the address
// the query was sent to, which the kernel's routing may not pick on a host with several; there
// the loop reads and writes the packet info as miekg/dns does.
type udpServer struct {
	s        *Server
	conn     *net.UDPConn
	wildcard bool
	stopping atomic.Bool
	wg       sync.WaitGroup
}

// udpReadRetry is how long a reader waits after a read error other than a closed socket (e.g.
// out of buffer memory), so that a persistent error does not spin.
const udpReadRetry = 10 * time.Millisecond

// serveUDP starts the readers on conn: one per CPU the runtime uses, since the answer is pure
// CPU work between two system calls. It returns at once; shut it down with close.
func (s *Server) serveUDP(conn *net.UDPConn) *udpServer {
	u := &udpServer{s: s, conn: conn}
	if a, ok := conn.LocalAddr().(*net.UDPAddr); ok && a.IP.IsUnspecified() {
		// Ask for each packet's destination address; at least one family must take it.
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		u.wildcard = err6 == nil || err4 == nil
		if !u.wildcard {
			s.log.Warn("cannot learn the destination address of UDP queries; answers to a wildcard socket may come from another address",
				zap.NamedError("ipv4", err4), zap.NamedError("ipv6", err6))
		}
	}
	n := runtime.GOMAXPROCS(0)
	u.wg.Add(n)
	for range n {
		go u.read()
	}
	return u
}

// close stops the readers, each of which first finishes and sends the answer it is working on,
// then closes the socket. Wait on it with a deadline: it returns when the readers are done.
func (u *udpServer) close() error {
	u.stopping.Store(true)
	if err := u.conn.SetReadDeadline(time.Unix(1, 0)); err != nil { // wakes every blocked read
		u.conn.Close()
	}
	u.wg.Wait()
	return u.conn.Close()
}

func (u *udpServer) read() {
	defer u.wg.Done()
	in := make([]byte, u.s.cfg.MaxUDPSize) // a longer query is cut and answered FORMERR, as by miekg
	out := make([]byte, u.s.cfg.MaxUDPSize)
	for {
		var n int
		var from netip.AddrPort
		var sess *dns.SessionUDP
		var err error
		if u.wildcard {
			n, sess, err = dns.ReadFromSessionUDP(u.conn, in)
		} else {
			n, from, err = u.conn.ReadFromUDPAddrPort(in)
		}
		if err != nil {
			if u.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			u.s.log.Debug("read query", networkField(false), zap.Error(err))
			time.Sleep(udpReadRetry)
			continue
		}
		out = u.serve(in[:n], out, from, sess)
	}
}

// serve answers the packet b from the client at from (or, on a wildcard socket, of sess),
// packing into out (grown when needed, and returned for reuse). Like miekg/dns: a packet shorter than a header, or a response, gets no
// answer; one that does not unpack gets FORMERR with what of its question could be read.
func (u *udpServer) serve(b, out []byte, from netip.AddrPort, sess *dns.SessionUDP) []byte {
	const headerLen, qrBit = 12, 0x80
	if len(b) < headerLen || b[2]&qrBit != 0 {
		return out
	}
	start := time.Now()
	r := new(dns.Msg)
	var m *dns.Msg
	qt := qtOther
	if err := r.Unpack(b); err != nil {
		m = formErr(r)
	} else if m, qt = u.s.answer(r, false); m == nil {
		return out
	}
	p, err := m.PackBuffer(out)
	switch {
	case err != nil:
	case sess != nil:
		_, err = dns.WriteToSessionUDP(u.conn, p, sess)
	default:
		_, err = u.conn.WriteToUDPAddrPort(p, from)
	}
	if err != nil {
		u.s.log.Debug("write answer", networkField(false), zap.Error(err))
	}
	u.s.metrics.observe(qt, m.Rcode, false, time.Since(start))
	if cap(p) > cap(out) {
		out = p[:cap(p)]
	}
	return out
}

// formErr is the answer to a query that does not unpack: r holds its header and whatever
// question was read before the error, as miekg/dns answers one.
func formErr(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	if r.Opcode == dns.OpcodeQuery {
		m.RecursionDesired, m.CheckingDisabled = r.RecursionDesired, r.CheckingDisabled
	}
	m.Rcode = dns.RcodeFormatError
	if len(r.Question) > 0 {
		m.Question = r.Question[:1:1]
	}
	return m
}

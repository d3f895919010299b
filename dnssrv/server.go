// Package dnssrv is edgesim's embedded authoritative DNS server: it answers, as the outside world
// sees them, the MRA discovery records of many tenants (_collab-edge._tls SRV, the edge hosts'
// A/AAAA, SOA and NS, optional TXT such as ACME challenges), and NXDOMAIN for _cisco-uds._tcp so
// that clients choose MRA.
//
// Zones come from a Zones implementation, so a million tenant zones need not be materialised;
// MapZones serves small configurations. WriteZoneFile exports a zone as a master file that BIND,
// NSD or CoreDNS load, for running the same records on a real server.
package dnssrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Errors a caller can test for.
var (
	ErrBadConfig  = errors.New("dnssrv: bad config")             // a Config field is out of range
	ErrBadZone    = errors.New("dnssrv: bad zone")               // a Zone fails Validate
	ErrStarted    = errors.New("dnssrv: server already started") // Start called twice
	ErrNotStarted = errors.New("dnssrv: server not started")     // Shutdown before Start
)

// Defaults for zero Config fields.
const (
	DefaultAddr           = "127.0.0.1:5353"
	DefaultNameserver     = "ns.edgesim.test"
	DefaultTTL            = 60 * time.Second
	DefaultTCPIdleTimeout = 8 * time.Second
	DefaultMaxUDPSize     = 1232 // DNS flag day 2020: no IP fragmentation
)

// firstQueryTimeout bounds how long a new TCP connection may take to send its first query
// (miekg/dns's own default read timeout): an idle timeout longer than this serves clients that
// reuse a connection, not ones that open it and say nothing.
const firstQueryTimeout = 2 * time.Second

// listenAttempts bounds the retries when port 0 gives a UDP port whose TCP twin is taken.
const listenAttempts = 8

// Config configures a Server. Zero values mean the defaults above; New resolves them.
type Config struct {
	// Addr is the host:port served over both UDP and TCP. Port 0 picks a free port, the same
	// for both transports. Default DefaultAddr.
	Addr string
	// Zones is what the server is authoritative for. Required.
	Zones Zones
	// Nameserver is the server's own host name (e.g. ns.sp.example), used as NS target and SOA
	// MNAME; its address records come from whichever served zone holds it. Default
	// DefaultNameserver.
	Nameserver string
	// TTL of every record and the negative-caching TTL (SOA MINIMUM), whole seconds. Default
	// DefaultTTL.
	TTL time.Duration
	// TCPIdleTimeout is how long a TCP connection may wait idle for its next query, and bounds
	// the read of a query once begun (a client that sends a length and stalls is closed). A new
	// connection waits for its first query at most this long, and never more than
	// firstQueryTimeout. Default DefaultTCPIdleTimeout.
	TCPIdleTimeout time.Duration
	// MaxUDPSize caps the UDP answer size a client's EDNS0 may ask for; it is also the size the
	// server advertises and its UDP read buffer. 512..65535, default DefaultMaxUDPSize.
	MaxUDPSize int
	// Logger receives the server's logs (named "dns"); nothing is logged per query at info
	// level. Default: no logging.
	Logger *zap.Logger
	// Registerer gets the edgesim_dns_* metrics; nil leaves them unregistered. Servers sharing a
	// registry share the metrics.
	Registerer prometheus.Registerer
}

// Server is an authoritative DNS server over UDP and TCP on one port.
//
// Build it with New, then call Start, which returns once both listeners are ready; Addr tells
// the port picked. Stop it with Shutdown; a Server runs once and cannot be restarted. ServeDNS,
// the dns.Handler, answers without any listener (for fuzzing and benchmarks). All methods are
// safe for concurrent use.
type Server struct {
	cfg     Config // resolved
	zones   Zones
	ttl     uint32 // cfg.TTL in seconds
	nsFQDN  string // cfg.Nameserver with a trailing dot
	log     *zap.Logger
	metrics *metrics

	mu     sync.Mutex
	state  int // stateNew, stateRunning, stateStopped
	addr   string
	udp    *udpServer
	tcp    *dns.Server
	served chan error // the TCP serve loop's end
}

const (
	stateNew = iota
	stateRunning
	stateStopped
)

// New checks cfg, applies its defaults and registers the metrics. It does not listen.
func New(cfg Config) (*Server, error) {
	if cfg.Zones == nil {
		return nil, fmt.Errorf("%w: Zones is required", ErrBadConfig)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("%w: Addr %q: %v", ErrBadConfig, cfg.Addr, err)
	}
	if cfg.Nameserver == "" {
		cfg.Nameserver = DefaultNameserver
	}
	if !validName(cfg.Nameserver) {
		return nil, fmt.Errorf("%w: Nameserver %q is not a lower-case host name without trailing dot",
			ErrBadConfig, cfg.Nameserver)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Second || cfg.TTL.Seconds() > float64(1<<31-1) {
		return nil, fmt.Errorf("%w: TTL %v must be between 1s and 2^31-1 seconds", ErrBadConfig, cfg.TTL)
	}
	if cfg.TCPIdleTimeout == 0 {
		cfg.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if cfg.TCPIdleTimeout < 0 {
		return nil, fmt.Errorf("%w: TCPIdleTimeout %v is negative", ErrBadConfig, cfg.TCPIdleTimeout)
	}
	if cfg.MaxUDPSize == 0 {
		cfg.MaxUDPSize = DefaultMaxUDPSize
	}
	if cfg.MaxUDPSize < dns.MinMsgSize || cfg.MaxUDPSize > dns.MaxMsgSize {
		return nil, fmt.Errorf("%w: MaxUDPSize %d is outside 512..65535", ErrBadConfig, cfg.MaxUDPSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:     cfg,
		zones:   cfg.Zones,
		ttl:     uint32(cfg.TTL / time.Second),
		nsFQDN:  cfg.Nameserver + ".",
		log:     cfg.Logger.Named("dns"),
		metrics: m,
	}, nil
}

// Start binds UDP and TCP and returns once both serve.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return ErrStarted
	}
	pc, ln, err := listenBoth(s.cfg.Addr)
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	tcp := s.tcpServer()
	tcp.Listener = ln
	s.tcp = tcp
	s.served = make(chan error, 1)
	started := make(chan struct{}, 1)
	tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() { s.served <- tcp.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-s.served:
		pc.Close()
		ln.Close()
		s.state = stateStopped
		return fmt.Errorf("dnssrv: start on %s: %w", s.addr, err)
	}
	s.udp = s.serveUDP(pc)
	s.state = stateRunning
	s.log.Info("dns server listening", zap.String("addr", s.addr))
	return nil
}

// tcpServer returns the miekg server for TCP with the handler and limits set. (UDP has a serve
// loop of its own: see udpServer.)
func (s *Server) tcpServer() *dns.Server {
	idle := s.cfg.TCPIdleTimeout
	return &dns.Server{
		Net:           "tcp",
		Handler:       s,
		IdleTimeout:   func() time.Duration { return idle },
		MsgAcceptFunc: acceptQueries,
		// miekg/dns answers a query that does not unpack with FORMERR itself, without the
		// handler; count it as the UDP loop does (a message shorter than a header gets nothing).
		MsgInvalidFunc: func(m []byte, _ error) {
			if len(m) >= 12 {
				s.metrics.count(qtOther, dns.RcodeFormatError, true)
			}
		},
		// miekg/dns gives the first query its ReadTimeout (default 2s), later ones the idle
		// timeout: without this a shorter TCPIdleTimeout would not hold for a new connection.
		ReadTimeout: min(idle, firstQueryTimeout),
	}
}

// acceptQueries drops responses and hands every other message to the handler, which answers
// FORMERR, NOTIMP and friends itself (so that they are counted).
func acceptQueries(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// Addr returns the host:port the server listens on ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops both listeners and waits, until ctx is done, for queries in flight to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateRunning {
		return ErrNotStarted
	}
	s.state = stateStopped
	var errs []error
	if err := s.tcp.ShutdownContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("dnssrv: shutdown tcp: %w", err))
	}
	udpDone := make(chan error, 1)
	go func() { udpDone <- s.udp.close() }()
	for _, ch := range []chan error{s.served, udpDone} {
		select {
		case err := <-ch:
			if err != nil {
				errs = append(errs, fmt.Errorf("dnssrv: serve: %w", err))
			}
		case <-ctx.Done():
			return errors.Join(append(errs, ctx.Err())...)
		}
	}
	return errors.Join(errs...)
}

// listenBoth binds UDP on addr, then TCP on the port UDP got. With port 0 it retries when that
// TCP port is taken.
func listenBoth(addr string) (*net.UDPConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnssrv: listen %s: %w", addr, err)
	}
	attempts := 1
	if port == "0" {
		attempts = listenAttempts
	}
	for i := 0; ; i++ {
		lp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnssrv: listen udp %s: %w", addr, err)
		}
		pc := lp.(*net.UDPConn)
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if i+1 >= attempts || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("dnssrv: listen tcp %s port %d: %w", host, p, err)
		}
	}
}

func networkField(tcp bool) zap.Field {
	if tcp {
		return zap.String("proto", "tcp")
	}
	return zap.String("proto", "udp")
}

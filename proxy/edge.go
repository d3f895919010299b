// Package proxy is edgesim's stand-in for the TLS edge of a multitenant Cisco Expressway-E: the
// HTTPS edge that answers get_edge_config (8443), XMPP with STARTTLS (5222) and SIP over TLS
// (5061). Certificates are chosen by SNI through Config.GetCertificate (the sni store).
//
// Build an Edge with New, which validates the Config and binds the three listeners; Start (or
// Serve) accepts connections; Shutdown stops accepting, lets in-flight work finish and closes
// idle connections. An Edge is safe for concurrent use.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgesim/edgesim/tenant"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults for a zero Config field.
const (
	DefaultHTTPSAddr        = "127.0.0.1:8443"
	DefaultXMPPAddr         = "127.0.0.1:5222"
	DefaultSIPAddr          = "127.0.0.1:5061"
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 120 * time.Second
	DefaultMaxConns         = 10000
)

// ErrConfig is wrapped by every error New returns for a bad Config.
var ErrConfig = errors.New("proxy: bad config")

// Ports are port numbers advertised in get_edge_config; 0 means the listener's real port.
type Ports struct {
	HTTPS int // httpEdgeServer tlsPort
	XMPP  int // xmppEdgeServer tlsPort
	SIP   int // sipEdgeServer tlsPort
}

// Config configures an Edge. Zero values mean the defaults, resolved in one place (New).
type Config struct {
	HTTPSAddr string // HTTPS edge listen address; default 127.0.0.1:8443 (":0" picks a port)
	XMPPAddr  string // XMPP c2s listen address; default 127.0.0.1:5222
	SIPAddr   string // SIP over TLS listen address; default 127.0.0.1:5061

	// GetCertificate picks the certificate for a ClientHello by SNI; required (the sni store).
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ACMEChallenge, when set, answers ACME TLS-ALPN-01 validation (RFC 8737) on the HTTPS
	// listener: a ClientHello offering only the "acme-tls/1" protocol gets the certificate it
	// returns, and the connection is closed after the handshake. ok false: no such challenge.
	ACMEChallenge func(*tls.ClientHelloInfo) (c *tls.Certificate, ok bool)
	// Tenants are the service domains the edge serves; required.
	Tenants tenant.Directory
	// EdgeHost is the provider edge host advertised in get_edge_config for tenants without an
	// edge host of their own; default Tenants.Provider().EdgeHost.
	EdgeHost string
	// AdvertisedPorts are the ports get_edge_config names; zero fields mean the real ports
	// (set them when the edge sits behind a port mapping).
	AdvertisedPorts Ports

	// CurvePreferences are the key exchanges offered; default X25519 then P-256, as Expressway
	// and Jabber use (not Go's default hybrid post-quantum groups).
	CurvePreferences []tls.CurveID
	MinVersion       uint16 // lowest TLS version; default TLS 1.2
	MaxVersion       uint16 // highest TLS version; default TLS 1.3
	// SessionTicketKeys encrypt session tickets (first key encrypts, all decrypt). Tickets are
	// always on; by default one random key is made at New and shared by the three listeners.
	SessionTicketKeys [][32]byte

	// HandshakeTimeout bounds the XMPP pre-TLS exchange, each TLS handshake, the reading of each
	// HTTP request and SIP message once begun, and each write to a client; default 10s.
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration // an XMPP stream, SIP or HTTP connection idle this long is closed; default 120s
	MaxConns         int           // open connections per listener; more are closed at once and counted; default 10000

	Logger     *zap.Logger           // default: no logging
	Registerer prometheus.Registerer // where metrics are registered; default: a private registry (not exported)
}

// resolve fills in defaults and checks the fields that New cannot bind-test.
func (c *Config) resolve() error {
	if c.GetCertificate == nil {
		return fmt.Errorf("%w: GetCertificate is required (wire the sni store's GetCertificate)", ErrConfig)
	}
	if c.Tenants == nil {
		return fmt.Errorf("%w: Tenants is required", ErrConfig)
	}
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&c.HTTPSAddr, DefaultHTTPSAddr)
	def(&c.XMPPAddr, DefaultXMPPAddr)
	def(&c.SIPAddr, DefaultSIPAddr)
	c.EdgeHost = tenant.Normalize(c.EdgeHost)
	def(&c.EdgeHost, c.Tenants.Provider().EdgeHost)
	if err := tenant.ValidateDomain(c.EdgeHost); err != nil {
		return fmt.Errorf("%w: EdgeHost: %w", ErrConfig, err)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"AdvertisedPorts.HTTPS", c.AdvertisedPorts.HTTPS}, {"AdvertisedPorts.XMPP", c.AdvertisedPorts.XMPP}, {"AdvertisedPorts.SIP", c.AdvertisedPorts.SIP}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("%w: %s %d is not a port (0..65535, 0 = the real port)", ErrConfig, p.name, p.v)
		}
	}
	if len(c.CurvePreferences) == 0 {
		c.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	if c.MaxVersion == 0 {
		c.MaxVersion = tls.VersionTLS13
	}
	if c.MinVersion < tls.VersionTLS10 || c.MaxVersion > tls.VersionTLS13 || c.MinVersion > c.MaxVersion {
		return fmt.Errorf("%w: MinVersion %#04x .. MaxVersion %#04x is not a TLS version range", ErrConfig, c.MinVersion, c.MaxVersion)
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{{"HandshakeTimeout", &c.HandshakeTimeout, DefaultHandshakeTimeout}, {"IdleTimeout", &c.IdleTimeout, DefaultIdleTimeout}}
	for _, d := range durations {
		if *d.d < 0 {
			return fmt.Errorf("%w: %s %v is negative", ErrConfig, d.name, *d.d)
		}
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("%w: MaxConns %d is negative", ErrConfig, c.MaxConns)
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}

// Edge is the three TLS listeners of the simulated Expressway-E. Build it with New; it is safe
// for concurrent use; stop it with Shutdown.
type Edge struct {
	cfg      Config
	provider tenant.Provider // Tenants.Provider() with EdgeHost = cfg.EdgeHost
	log      *zap.Logger
	m        *metrics
	ln       [numListeners]listener
	ports    Ports // advertised ports, resolved

	httpSrv *httpServer

	startOnce sync.Once
	stopOnce  sync.Once
	shutting  atomic.Bool
	quit      chan struct{} // closed when shutdown begins
	accepting sync.WaitGroup
	acceptEnd chan struct{} // closed when every accept loop has returned
	conns     sync.WaitGroup

	mu      sync.Mutex
	tracked map[*serverConn]struct{}

	work        chan *serverConn // idle handler goroutines wait here for their next connection
	idleWorkers atomic.Int32
	workers     sync.WaitGroup // handler goroutines
}

// listener is one bound socket and what runs on its connections.
type listener struct {
	idx   int
	ln    net.Listener
	tls   *tls.Config
	serve func(*serverConn) (handedOff bool)
	max   int64
	open  atomic.Int64
	m     *listenerMetrics
}

// Connection states, for Shutdown to find connections waiting for their peer.
const (
	connActive uint32 = iota // handshaking or working on a message
	connIdle                 // waiting for the peer's next message
	connNudged               // idle when shutdown began; its read deadline has been cut short
)

// serverConn is one accepted connection while the edge owns it.
type serverConn struct {
	raw   net.Conn
	ln    *listener
	state atomic.Uint32
}

var connPool = sync.Pool{New: func() any { return new(serverConn) }}

// New validates cfg, resolves its defaults and binds the three listeners. It does not accept
// connections yet: call Start or Serve.
func New(cfg Config) (*Edge, error) {
	if err := cfg.resolve(); err != nil {
		return nil, err
	}
	base, err := baseTLSConfig(&cfg)
	if err != nil {
		return nil, err
	}
	e := &Edge{
		cfg:       cfg,
		log:       cfg.Logger.Named("proxy"),
		quit:      make(chan struct{}),
		acceptEnd: make(chan struct{}),
		tracked:   make(map[*serverConn]struct{}),
		work:      make(chan *serverConn),
	}
	e.provider = cfg.Tenants.Provider()
	e.provider.EdgeHost = cfg.EdgeHost

	addrs := [numListeners]struct{ field, addr string }{
		lnHTTPS: {"HTTPSAddr", cfg.HTTPSAddr}, lnXMPP: {"XMPPAddr", cfg.XMPPAddr}, lnSIP: {"SIPAddr", cfg.SIPAddr},
	}
	serves := [numListeners]func(*serverConn) bool{lnHTTPS: e.serveHTTPS, lnXMPP: e.serveXMPP, lnSIP: e.serveSIP}
	closeBound := func(n int) {
		for j := range n {
			e.ln[j].ln.Close()
		}
	}
	for i := range e.ln {
		l := &e.ln[i]
		l.idx, l.serve, l.max = i, serves[i], int64(cfg.MaxConns)
		l.tls = listenerTLSConfig(base, i, cfg.ACMEChallenge)
		// No TCP keep-alive probes: the idle timeout already drops dead peers, and it spares
		// four setsockopt calls on every accepted connection.
		l.ln, err = (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", addrs[i].addr)
		if err != nil {
			closeBound(i)
			return nil, fmt.Errorf("proxy: %s %s: %w", addrs[i].field, addrs[i].addr, err)
		}
	}
	// Registered only once the listeners are bound, so a failed New leaves the registry as it was.
	if e.m, err = newMetrics(cfg.Registerer); err != nil {
		closeBound(numListeners)
		return nil, err
	}
	for i := range e.ln {
		e.ln[i].m = &e.m.ln[i]
	}
	port := func(adv int, i int) int {
		if adv != 0 {
			return adv
		}
		return e.ln[i].ln.Addr().(*net.TCPAddr).Port
	}
	e.ports = Ports{
		HTTPS: port(cfg.AdvertisedPorts.HTTPS, lnHTTPS),
		XMPP:  port(cfg.AdvertisedPorts.XMPP, lnXMPP),
		SIP:   port(cfg.AdvertisedPorts.SIP, lnSIP),
	}
	e.httpSrv = newHTTPServer(e)
	return e, nil
}

// Addrs returns the bound addresses of the HTTPS, XMPP and SIP listeners.
func (e *Edge) Addrs() (https, xmpp, sip net.Addr) {
	return e.ln[lnHTTPS].ln.Addr(), e.ln[lnXMPP].ln.Addr(), e.ln[lnSIP].ln.Addr()
}

// Start begins accepting on the three listeners and returns at once. Calling it again, or
// after Shutdown, does nothing.
func (e *Edge) Start() {
	e.startOnce.Do(func() {
		go func() {
			if err := e.httpSrv.serve(); err != nil {
				e.log.Error("https server stopped", zap.Error(err))
			}
		}()
		for i := range e.ln {
			e.accepting.Add(1)
			go e.acceptLoop(&e.ln[i])
		}
		go func() {
			e.accepting.Wait()
			close(e.acceptEnd)
		}()
		h, x, s := e.Addrs()
		e.log.Info("edge listening", zap.Stringer("https", h), zap.Stringer("xmpp", x), zap.Stringer("sip", s),
			zap.String("edge_host", e.cfg.EdgeHost), zap.Int("max_conns", e.cfg.MaxConns))
	})
}

// Serve is Start, then blocks until the listeners stop accepting (Shutdown was called). It
// returns nil then; the caller should still wait for Shutdown to return before exiting.
func (e *Edge) Serve() error {
	e.Start()
	<-e.acceptEnd
	return nil
}

// Shutdown stops accepting, closes connections that wait idle for their peer (an XMPP stream
// gets a system-shutdown stream error), lets connections in the middle of a handshake or
// request finish, and returns once all are closed. When ctx ends first, the remaining
// connections are closed at once and ctx's error is returned.
func (e *Edge) Shutdown(ctx context.Context) error {
	e.stopOnce.Do(func() {
		e.shutting.Store(true)
		close(e.quit)
		for i := range e.ln {
			e.ln[i].ln.Close()
		}
		e.startOnce.Do(func() { close(e.acceptEnd) }) // never started: nothing to wait for
	})
	httpErr := make(chan error, 1)
	go func() { httpErr <- e.httpSrv.shutdown(ctx) }()
	e.nudgeIdle()

	drained := make(chan struct{})
	go func() {
		<-e.acceptEnd
		e.conns.Wait()
		e.workers.Wait() // idle ones see quit; the others have just finished their connection
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		e.closeTracked()
		<-drained
	}
	if herr := <-httpErr; herr != nil {
		e.httpSrv.close()
		if err == nil {
			err = herr
		}
	}
	return err
}

// acceptLoop accepts until the listener is closed, enforcing the connection limit.
func (e *Edge) acceptLoop(l *listener) {
	defer e.accepting.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if e.shutting.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			e.log.Warn("accept failed; retrying", zap.String("listener", listenerNames[l.idx]),
				zap.Duration("delay", delay), zap.Error(err))
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-e.quit:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.m.rejected.Inc()
			c.Close()
			continue
		}
		l.m.open.Inc()
		sc := connPool.Get().(*serverConn)
		sc.raw, sc.ln = c, l
		sc.state.Store(connActive)
		e.mu.Lock()
		e.tracked[sc] = struct{}{}
		e.mu.Unlock()
		e.conns.Add(1)
		e.dispatch(sc)
	}
}

// maxIdleWorkers bounds the handler goroutines kept waiting for a connection; beyond it, a
// handler whose connection ends exits. Each holds a stack of up to 32 KB, which the garbage
// collector halves while it waits.
const maxIdleWorkers = 64

// dispatch gives sc to an idle handler goroutine, or starts a new one. Handlers outlive their
// connection: a TLS handshake grows a goroutine's stack from its small start to about 32 KB,
// one copy at a time, and a handler kept for the next connection mostly has that stack already.
// (bench/README.md: about 2% less CPU per full handshake.)
func (e *Edge) dispatch(sc *serverConn) {
	select {
	case e.work <- sc:
	default:
		e.workers.Add(1)
		go e.worker(sc)
	}
}

// worker handles sc, then the connections dispatch gives it, until there are maxIdleWorkers
// idle handlers already or the edge shuts down.
func (e *Edge) worker(sc *serverConn) {
	defer e.workers.Done()
	for {
		e.handle(sc)
		if e.idleWorkers.Add(1) > maxIdleWorkers {
			e.idleWorkers.Add(-1)
			return
		}
		select {
		case sc = <-e.work:
			e.idleWorkers.Add(-1)
		case <-e.quit:
			e.idleWorkers.Add(-1)
			return
		}
	}
}

// handle runs the listener's protocol on sc and releases it afterwards, unless the
// connection was handed to the HTTP server, which then owns it.
func (e *Edge) handle(sc *serverConn) {
	handedOff := sc.ln.serve(sc)
	e.mu.Lock()
	delete(e.tracked, sc)
	e.mu.Unlock()
	if !handedOff {
		sc.raw.Close()
		sc.ln.release()
	}
	sc.raw, sc.ln = nil, nil
	connPool.Put(sc)
	e.conns.Done()
}

// release gives back one connection slot.
func (l *listener) release() {
	l.open.Add(-1)
	l.m.open.Dec()
}

// idle marks sc as waiting for its peer and reports whether the edge is shutting down, in
// which case the caller ends the connection. Set the idle read deadline before calling it.
func (e *Edge) idle(sc *serverConn) (stop bool) {
	sc.state.Store(connIdle)
	return e.shutting.Load()
}

// active marks sc as working on a message that has begun to arrive. It reports false when
// shutdown cut the idle wait short first; the caller then ends the connection.
func (sc *serverConn) active() bool {
	return sc.state.CompareAndSwap(connIdle, connActive) || sc.state.Load() == connActive
}

// nudgeIdle cuts short the reads of connections that wait idle for their peer; they notice
// the shutdown and close. Connections busy with a message see it when they next go idle.
func (e *Edge) nudgeIdle() {
	past := time.Unix(1, 0)
	e.mu.Lock()
	defer e.mu.Unlock()
	for sc := range e.tracked {
		if sc.state.CompareAndSwap(connIdle, connNudged) {
			sc.raw.SetReadDeadline(past)
		}
	}
}

// closeTracked closes every connection the edge still owns (Shutdown's context ended).
func (e *Edge) closeTracked() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for sc := range e.tracked {
		sc.raw.Close()
	}
}

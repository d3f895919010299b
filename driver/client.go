package driver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults of Config.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultPassword = "edgesim" // the simulator accepts any password for a known user
	defaultXMPPPort = 5222
	defaultSIPPort  = 5061
)

// Config configures a Client. The zero value asks the system resolver, trusts the system roots
// and runs every step.
type Config struct {
	DNS       string         // DNS server host:port; "" = the system resolver
	Roots     *x509.CertPool // trusted roots; nil = the system's
	Steps     []Step         // steps to run; nil = all. Prerequisites are added (tls needs srv).
	Password  string         // for HTTP Basic and SASL PLAIN; "" = DefaultPassword
	Timeout   time.Duration  // limit per step; 0 = DefaultTimeout
	SIPMethod string         // REGISTER (default) or OPTIONS
	// Curves offered in the ClientHello; nil = X25519, P-256 (what Jabber offers; Go's default
	// would add a post-quantum share that costs the driver CPU and no Expressway uses).
	Curves []tls.CurveID
	// Now is the clock for certificate validity; nil = time.Now.
	Now func() time.Time
}

// Client runs traced MRA logins. Build it with NewClient; it is safe for concurrent use, holds no
// connections between logins and needs no stopping.
type Client struct {
	cfg   Config
	res   *resolver
	steps map[Step]bool
	roots *x509.CertPool
}

// NewClient checks cfg and returns a Client.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Password == "" {
		cfg.Password = DefaultPassword
	}
	switch strings.ToUpper(cfg.SIPMethod) {
	case "":
		cfg.SIPMethod = "REGISTER"
	case "REGISTER", "OPTIONS":
		cfg.SIPMethod = strings.ToUpper(cfg.SIPMethod)
	default:
		return nil, fmt.Errorf("driver: SIP method %q: want REGISTER or OPTIONS", cfg.SIPMethod)
	}
	if cfg.Curves == nil {
		cfg.Curves = []tls.CurveID{tls.X25519, tls.CurveP256}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DNS != "" {
		host, port, err := net.SplitHostPort(cfg.DNS)
		if _, ok := parsePort(port); err != nil || host == "" || !ok {
			return nil, fmt.Errorf("--dns %q: want the DNS server as host:port with a port from 1 to 65535, like 127.0.0.1:5353", cfg.DNS)
		}
	}
	roots := cfg.Roots
	if roots == nil {
		var err error
		if roots, err = x509.SystemCertPool(); err != nil {
			return nil, fmt.Errorf("driver: system roots: %w (give a CA file)", err)
		}
	}
	steps := cfg.Steps
	if steps == nil {
		steps = Steps
	}
	c := &Client{cfg: cfg, res: newResolver(cfg.DNS, cfg.Timeout), steps: map[Step]bool{}, roots: roots}
	for _, s := range steps {
		if !hasStep(Steps, s) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownStep, s)
		}
		c.steps[s] = true
	}
	// Prerequisites: every step needs the SRV lookup; XMPP and SIP go to the servers the edge
	// configuration names; the checks and the edge configuration need the HTTPS handshake.
	c.steps[StepSRV] = true
	if c.steps[StepXMPP] || c.steps[StepSIP] {
		c.steps[StepEdgeConfig] = true
	}
	if c.steps[StepIdentity] || c.steps[StepEdgeDomain] || c.steps[StepEdgeConfig] {
		c.steps[StepTLS] = true
	}
	return c, nil
}

// Steps returns the steps the client runs, in call order.
func (c *Client) Steps() []Step {
	var out []Step
	for _, s := range Steps {
		if c.steps[s] {
			out = append(out, s)
		}
	}
	return out
}

// login is the state of one login.
type login struct {
	c        *Client
	tr       *Trace
	user     string
	domain   string
	sessions tls.ClientSessionCache
	targets  []srvTarget // in the order to try
	addrs    []netip.Addr
	conn     *tls.Conn // the HTTPS edge connection, between tls and edge-config
	edge     srvTarget // the target the HTTPS connection reached
	sni      string
	config   *EdgeConfig
}

// Login traces one MRA login of addr (user@domain). sessions is the device's TLS session cache
// (nil: no resumption). The trace has one row per step that ran or was skipped.
func (c *Client) Login(ctx context.Context, addr string, sessions tls.ClientSessionCache) *Trace {
	tr := &Trace{User: addr, Start: time.Now()}
	user, domain, err := SplitAddress(addr)
	if err != nil {
		tr.Steps = append(tr.Steps, StepResult{Step: StepSRV, Verdict: Fail, Class: ClassDNSError, Detail: err.Error()})
		tr.finish()
		return tr
	}
	tr.Domain = domain
	l := &login{c: c, tr: tr, user: user, domain: domain, sessions: sessions}
	defer func() {
		if l.conn != nil {
			l.closeEdge(ctx)
		}
	}()
	type stepFunc func(ctx context.Context) StepResult
	for _, s := range []struct {
		step Step
		run  stepFunc
	}{
		{StepSRV, l.srv},
		{StepTLS, l.handshake},
		{StepIdentity, l.identity},
		{StepEdgeDomain, l.edgeDomain},
		{StepEdgeConfig, l.edgeConfig},
		{StepXMPP, l.xmpp},
		{StepSIP, l.sip},
	} {
		if !c.steps[s.step] {
			continue
		}
		if tr.Failed != "" {
			tr.Steps = append(tr.Steps, StepResult{Step: s.step, Verdict: Skip, Detail: "not run: " + string(tr.Failed) + " failed"})
			continue
		}
		if err := ctx.Err(); err != nil {
			r := StepResult{Step: s.step, Verdict: Fail, Class: ClassCanceled, Detail: "the run stopped before this step"}
			tr.add(r)
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		start := time.Now()
		r := s.run(sctx)
		cancel()
		r.Step = s.step
		r.Duration = time.Since(start)
		if r.Verdict == "" {
			r.Verdict = Pass
		}
		if r.Verdict == Fail && ctx.Err() != nil && r.Class == ClassTimeout {
			r.Class = ClassCanceled
		}
		tr.add(r)
	}
	tr.finish()
	return tr
}

func (t *Trace) add(r StepResult) {
	t.Steps = append(t.Steps, r)
	if r.Verdict == Fail && t.Failed == "" {
		t.Failed, t.Class = r.Step, r.Class
	}
}

func (t *Trace) finish() {
	t.Elapsed = time.Since(t.Start)
	for _, r := range t.Steps {
		if r.Verdict == Fail && t.Failed == "" {
			t.Failed, t.Class = r.Step, r.Class
		}
	}
	t.OK = t.Failed == "" && len(t.Steps) > 0
}

func fail(class Class, format string, args ...any) StepResult {
	return StepResult{Verdict: Fail, Class: class, Detail: fmt.Sprintf(format, args...)}
}

// srv looks up _collab-edge._tls.<domain> (and, at the same time, _cisco-uds._tcp.<domain>, as
// Jabber does) and resolves the first target that has an address.
func (l *login) srv(ctx context.Context) StepResult {
	name := "_collab-edge._tls." + l.domain
	inside := make(chan string, 1)
	go func() {
		hp, ok := l.c.res.insideAnswer(ctx, l.domain)
		if !ok {
			hp = ""
		}
		inside <- hp
	}()
	targets, err := l.c.res.lookupSRV(ctx, name)
	uds := <-inside
	r := StepResult{Target: name}
	if uds != "" {
		r.Verdict, r.Class = Fail, ClassInside
		r.Detail = fmt.Sprintf("_cisco-uds._tcp.%s answered (%s): a Jabber client here believes it is inside the enterprise and does not try MRA", l.domain, uds)
		return r
	}
	if err != nil {
		r.Verdict, r.Class, r.Detail = Fail, classOf(err), err.Error()
		if r.Class == ClassDNSNXDomain {
			r.Detail += ": the domain is not published for MRA"
		}
		return r
	}
	l.targets = targets
	var tried []string
	for i, t := range targets {
		addrs, err := l.c.res.lookupAddr(ctx, t.Host)
		if err != nil {
			tried = append(tried, err.Error())
			continue
		}
		l.targets, l.addrs = targets[i:], addrs
		r.Addr = net.JoinHostPort(addrs[0].String(), strconv.Itoa(int(t.Port)))
		r.Detail = describeTargets(targets) + " -> " + t.Host + " is " + addrs[0].String()
		if len(tried) > 0 {
			r.Detail += " (skipped: " + strings.Join(tried, "; ") + ")"
		}
		return r
	}
	r.Verdict, r.Class = Fail, classOf(errors.New(""))
	if len(tried) > 0 {
		r.Class = ClassDNSNXDomain
		if strings.Contains(tried[len(tried)-1], "no answer") {
			r.Class = ClassDNSTimeout
		}
	}
	r.Detail = describeTargets(targets) + ": no target resolves: " + strings.Join(tried, "; ")
	return r
}

func describeTargets(ts []srvTarget) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("%s (priority %d, weight %d)", t.hostPort(), t.Priority, t.Weight)
	}
	return strings.Join(parts, ", ")
}

// SNI returns the server name a client sends for an edge host found for the service domain:
// the host unchanged when it is in the service domain, else its first label joined to the
// service domain (DESIGN.md, call flow step 3).
func SNI(host, domain string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if host == domain || strings.HasSuffix(host, "."+domain) {
		return host
	}
	first, _, _ := strings.Cut(host, ".")
	return first + "." + domain
}

func (l *login) tlsConfig(sni string) *tls.Config {
	return &tls.Config{
		ServerName:         sni,
		InsecureSkipVerify: true, // verified by verifyPeer, which classifies what is wrong
		MinVersion:         tls.VersionTLS12,
		CurvePreferences:   l.c.cfg.Curves,
		ClientSessionCache: l.sessions,
		NextProtos:         []string{"http/1.1"},
	}
}

// dial connects to one of addrs at port, classifying failures.
func (l *login) dial(ctx context.Context, addrs []netip.Addr, port uint16) (net.Conn, StepResult) {
	var d net.Dialer
	var last error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, port).String())
		if err == nil {
			return conn, StepResult{}
		}
		last = err
	}
	return nil, netFailure("connect to "+joinAddrs(addrs, port), last)
}

func joinAddrs(addrs []netip.Addr, port uint16) string {
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		parts[i] = netip.AddrPortFrom(a, port).String()
	}
	return strings.Join(parts, ", ")
}

// netFailure classifies a network error as a timeout or a connection failure.
func netFailure(what string, err error) StepResult {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fail(ClassTimeout, "%s: no answer in time", what)
	case errors.Is(err, context.Canceled):
		return fail(ClassCanceled, "%s: the run stopped", what)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fail(ClassConnect, "%s: connection refused (nothing listens there)", what)
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, os.ErrDeadlineExceeded):
		return fail(ClassConnect, "%s: connection reset", what)
	}
	return fail(ClassConnect, "%s: %v", what, err)
}

// handshake opens TLS to the HTTPS edge with the rewritten SNI, falling back to the next SRV
// target when one cannot be reached.
func (l *login) handshake(ctx context.Context) StepResult {
	var notes []string
	for i, t := range l.targets {
		addrs := l.addrs
		if i > 0 {
			var err error
			if addrs, err = l.c.res.lookupAddr(ctx, t.Host); err != nil {
				notes = append(notes, err.Error())
				continue
			}
		}
		sni := SNI(t.Host, l.domain)
		r := StepResult{Target: t.hostPort(), SNI: sni, Addr: joinAddrs(addrs[:1], t.Port)}
		raw, fr := l.dial(ctx, addrs, t.Port)
		if raw == nil {
			notes = append(notes, t.hostPort()+": "+fr.Detail)
			if i < len(l.targets)-1 && fr.Class != ClassCanceled {
				continue
			}
			fr.Target, fr.SNI, fr.Addr = r.Target, r.SNI, r.Addr
			fr.Detail = strings.Join(notes, "; ")
			return fr
		}
		r.Addr = raw.RemoteAddr().String()
		conn := tls.Client(raw, l.tlsConfig(sni))
		if dl, ok := ctx.Deadline(); ok {
			_ = raw.SetDeadline(dl)
		}
		if err := conn.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			f := handshakeFailure(err)
			f.Target, f.SNI, f.Addr = r.Target, r.SNI, r.Addr
			if len(notes) > 0 {
				f.Detail += " (after: " + strings.Join(notes, "; ") + ")"
			}
			return f
		}
		_ = raw.SetDeadline(time.Time{})
		l.conn, l.edge, l.sni = conn, t, sni
		st := conn.ConnectionState()
		r.Detail, r.Resumed = describeState(st), st.DidResume
		if len(notes) > 0 {
			r.Detail += " (after: " + strings.Join(notes, "; ") + ")"
		}
		return r
	}
	return fail(ClassConnect, "no SRV target could be reached: %s", strings.Join(notes, "; "))
}

// handshakeFailure classifies a failed TLS handshake.
func handshakeFailure(err error) StepResult {
	var ne net.Error
	var ae tls.AlertError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return fail(ClassTimeout, "TLS handshake: no answer in time")
	case errors.Is(err, context.Canceled):
		return fail(ClassCanceled, "TLS handshake: the run stopped")
	case errors.As(err, &ae):
		return fail(ClassHandshake, "TLS handshake: the edge sent alert %q", ae.Error())
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || strings.Contains(err.Error(), "EOF"):
		return fail(ClassHandshake, "TLS handshake: the edge closed the connection (%v)", err)
	}
	return fail(ClassHandshake, "TLS handshake: %v", err)
}

func describeState(st tls.ConnectionState) string {
	s := fmt.Sprintf("%s, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	if st.CurveID != 0 {
		s += ", " + st.CurveID.String()
	}
	if st.DidResume {
		s += ", resumed"
	}
	return s
}

// identity checks the HTTPS edge's certificate by the HTTP rules.
func (l *login) identity(context.Context) StepResult {
	st := l.conn.ConnectionState()
	r := StepResult{Target: l.edge.hostPort(), SNI: l.sni}
	if st.DidResume && len(st.PeerCertificates) == 0 {
		r.Detail = "session resumed: the certificate was checked when the session began"
		return r
	}
	class, detail := verifyPeer(st.PeerCertificates, l.sni, l.edge.Host, rulesHTTP, l.c.roots, l.c.cfg.Now())
	r.Class, r.Detail = class, detail
	if class != ClassNone {
		r.Verdict = Fail
	}
	return r
}

// edgeDomain makes Jabber's extra check: the typed service domain among the SANs.
func (l *login) edgeDomain(context.Context) StepResult {
	st := l.conn.ConnectionState()
	r := StepResult{Target: l.edge.hostPort(), SNI: l.sni}
	if len(st.PeerCertificates) == 0 {
		r.Detail = "session resumed: the certificate was checked when the session began"
		return r
	}
	class, detail := checkEdgeDomain(st.PeerCertificates[0], l.domain)
	r.Class, r.Detail = class, detail
	if class != ClassNone {
		r.Verdict = Fail
	}
	return r
}

// edgeConfig fetches get_edge_config over the HTTPS connection.
func (l *login) edgeConfig(ctx context.Context) StepResult {
	r := StepResult{Target: l.edge.hostPort(), SNI: l.sni}
	hostPort := l.sni
	if l.edge.Port != 443 {
		hostPort = net.JoinHostPort(l.sni, strconv.Itoa(int(l.edge.Port)))
	}
	cfg, class, detail := fetchEdgeConfig(ctx, l.conn, hostPort, l.domain, l.user, l.c.cfg.Password)
	_ = l.conn.Close()
	l.conn = nil
	r.Class, r.Detail = class, detail
	if class != ClassNone {
		r.Verdict = Fail
		return r
	}
	l.config = cfg
	return r
}

// closeEdge ends the HTTPS connection when no step used it after the handshake. A resuming
// device first says close_notify and reads to the end: TLS 1.3 delivers session tickets after
// the handshake, and a client that never reads them has nothing to resume with.
func (l *login) closeEdge(ctx context.Context) {
	if l.sessions != nil {
		dl := time.Now().Add(l.c.cfg.Timeout)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		_ = l.conn.SetDeadline(dl)
		// A run that stops (drain, Ctrl-C) does not wait for a server that never closes.
		stop := context.AfterFunc(ctx, func() { _ = l.conn.SetDeadline(time.Unix(1, 0)) })
		defer stop()
		if l.conn.CloseWrite() == nil {
			_, _ = io.Copy(io.Discard, l.conn)
		}
	}
	_ = l.conn.Close()
	l.conn = nil
}

// server picks the first server of list, or the SRV target with port def when there is no edge
// configuration.
func (l *login) server(list []EdgeServer, def uint16) (string, uint16) {
	if l.config != nil && len(list) > 0 {
		return list[0].Address, uint16(list[0].Port)
	}
	t := l.edge
	if t.Host == "" && len(l.targets) > 0 {
		t = l.targets[0]
	}
	return t.Host, def
}

// connectServer resolves host and dials it.
func (l *login) connectServer(ctx context.Context, host string, port uint16) (net.Conn, StepResult) {
	r := StepResult{Target: net.JoinHostPort(host, strconv.Itoa(int(port))), SNI: SNI(host, l.domain)}
	addrs, err := l.c.res.lookupAddr(ctx, host)
	if err != nil {
		f := fail(classOf(err), "%v", err)
		f.Target, f.SNI = r.Target, r.SNI
		return nil, f
	}
	conn, f := l.dial(ctx, addrs, port)
	if conn == nil {
		f.Target, f.SNI = r.Target, r.SNI
		return nil, f
	}
	r.Addr = conn.RemoteAddr().String()
	return conn, r
}

func (l *login) verifier(host string, rules rules) func(tls.ConnectionState) (Class, string) {
	if !l.c.steps[StepIdentity] {
		return nil
	}
	return func(st tls.ConnectionState) (Class, string) {
		if st.DidResume && len(st.PeerCertificates) == 0 {
			return ClassNone, "resumed"
		}
		return verifyPeer(st.PeerCertificates, SNI(host, l.domain), host, rules, l.c.roots, l.c.cfg.Now())
	}
}

// xmpp logs in to the XMPP edge server the configuration names: STARTTLS, TLS with SNI, XMPP
// identity rules, SASL PLAIN, resource binding.
func (l *login) xmpp(ctx context.Context) StepResult {
	var list []EdgeServer
	if l.config != nil {
		list = l.config.XMPP
	}
	host, port := l.server(list, defaultXMPPPort)
	conn, r := l.connectServer(ctx, host, port)
	if conn == nil {
		return r
	}
	defer conn.Close()
	st, class, detail := xmppLogin(ctx, conn, xmppParams{
		Domain: l.domain, User: l.user, Password: l.c.cfg.Password,
		TLS: l.tlsConfigNoALPN(r.SNI), Verify: l.verifier(host, rulesXMPP),
	})
	r.Class, r.Detail, r.Resumed = class, detail, st.DidResume
	if class != ClassNone {
		r.Verdict = Fail
	}
	return r
}

func (l *login) tlsConfigNoALPN(sni string) *tls.Config {
	c := l.tlsConfig(sni)
	c.NextProtos = nil
	return c
}

// sip opens SIP over TLS to the SIP edge server and sends REGISTER (or OPTIONS) with the
// configuration's route.
func (l *login) sip(ctx context.Context) StepResult {
	var list []EdgeServer
	route := ""
	if l.config != nil {
		list, route = l.config.SIP, l.config.SIPRoute
	}
	host, port := l.server(list, defaultSIPPort)
	raw, r := l.connectServer(ctx, host, port)
	if raw == nil {
		return r
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	conn := tls.Client(raw, l.tlsConfigNoALPN(r.SNI))
	if err := conn.HandshakeContext(ctx); err != nil {
		f := handshakeFailure(err)
		f.Target, f.SNI, f.Addr = r.Target, r.SNI, r.Addr
		return f
	}
	st := conn.ConnectionState()
	if v := l.verifier(host, rulesHTTP); v != nil {
		if class, detail := v(st); class != ClassNone {
			r.Verdict, r.Class, r.Detail = Fail, class, "SIP edge certificate: "+detail
			return r
		}
	}
	class, detail := sipExchange(ctx, conn, sipParams{
		Method: l.c.cfg.SIPMethod, User: l.user, Domain: l.domain, Route: route,
		LocalAddr: raw.LocalAddr().String(),
	})
	r.Class, r.Detail = class, detail
	if class != ClassNone {
		r.Verdict = Fail
		return r
	}
	r.Detail, r.Resumed = describeState(st)+"; "+detail, st.DidResume
	return r
}

package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/edgesim/edgesim/tenant"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The get_edge_config response (DESIGN.md, "HTTPS edge"): element names and nesting as real
// clients parse them.
type edgeConfigResponse struct {
	XMLName       xml.Name      `xml:"getEdgeConfigResponse"`
	Version       string        `xml:"version,attr"`
	ServiceConfig serviceConfig `xml:"serviceConfig"`
	EdgeConfig    edgeConfig    `xml:"edgeConfig"`
}

type serviceConfig struct {
	Services []service `xml:"service"`
}

// service is one internal DNS SRV answer the edge looked up for the client: servers, or the
// DNS error name.
type service struct {
	Name    string      `xml:"name"`
	Error   string      `xml:"error,omitempty"`
	Servers []srvServer `xml:"server"`
}

type srvServer struct {
	Priority int    `xml:"priority"`
	Weight   int    `xml:"weight"`
	Port     int    `xml:"port"`
	Address  string `xml:"address"`
}

type edgeConfig struct {
	SIPEdgeServer  serverList `xml:"sipEdgeServer"`
	SIPRequest     sipRequest `xml:"sipRequest"`
	XMPPEdgeServer serverList `xml:"xmppEdgeServer"`
	HTTPEdgeServer serverList `xml:"httpEdgeServer"`
	TurnEdgeServer struct{}   `xml:"turnEdgeServer"`
	UserUDSServer  serverList `xml:"userUdsServer"`
}

type sipRequest struct {
	Route string `xml:"route"`
}

type serverList struct {
	Servers []edgeServer `xml:"server"`
}

type edgeServer struct {
	Address string `xml:"address"`
	TLSPort int    `xml:"tlsPort"`
}

// Services answered when the client names none, and the invented internal port of UDS and IM&P.
var defaultServices = []string{"_cisco-uds", "_cuplogin"}

const internalHTTPSPort = 8443

// httpServer serves HTTP on connections the HTTPS listener has already handshaken.
type httpServer struct {
	srv *http.Server
	ln  *chanListener
}

func newHTTPServer(e *Edge) *httpServer {
	errLog, _ := zap.NewStdLogAt(e.log.Named("http"), zapcore.DebugLevel)
	hl := &chanListener{addr: e.ln[lnHTTPS].ln.Addr(), ch: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{
		Handler:           http.HandlerFunc(e.serveHTTP),
		ReadHeaderTimeout: e.cfg.HandshakeTimeout,
		// Without these a request body that never ends or a client that never reads its
		// responses would hold the connection, and its MaxConns slot, for ever: neither the
		// header nor the idle timeout covers them. The write budget counts from the end of the
		// headers and net/http discards an unread body (up to ReadTimeout) before it writes the
		// response, so it gets a second timeout's worth for the response itself.
		ReadTimeout:    e.cfg.HandshakeTimeout,
		WriteTimeout:   2 * e.cfg.HandshakeTimeout,
		IdleTimeout:    e.cfg.IdleTimeout,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       errLog,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				e.ln[lnHTTPS].release()
			}
		},
	}
	return &httpServer{srv: srv, ln: hl}
}

func (h *httpServer) serve() error {
	if err := h.srv.Serve(h.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (h *httpServer) shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }
func (h *httpServer) close()                             { h.srv.Close() }

// chanListener is the net.Listener http.Server accepts from: connections arrive on ch after
// their TLS handshake.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// serveHTTPS handshakes an HTTPS connection and hands it to the HTTP server.
func (e *Edge) serveHTTPS(sc *serverConn) (handedOff bool) {
	tc, err := e.handshake(sc, sc.raw)
	if err != nil {
		return false
	}
	if tc.ConnectionState().NegotiatedProtocol == ACMETLS1Protocol {
		return false // a TLS-ALPN-01 validation: the handshake was all it wanted
	}
	select {
	case e.httpSrv.ln.ch <- tc:
		return true
	case <-e.httpSrv.ln.done:
	case <-e.quit:
	}
	return false
}

// serveHTTP answers get_edge_config; every response carries Server: CE_E like the real edge.
func (e *Edge) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", "CE_E")
	encoded, ok := edgeConfigPath(r.URL.Path)
	if !ok {
		e.httpError(w, http.StatusNotFound, "no such resource: this edge answers GET /<base64 of the service domain>/get_edge_config")
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		e.httpError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed here; use GET")
		return
	}
	domain, err := decodeDomain(encoded)
	if err != nil {
		e.httpError(w, http.StatusBadRequest, fmt.Sprintf("%q is not the base64 of a service domain; example.com is sent as /ZXhhbXBsZS5jb20/get_edge_config", encoded))
		return
	}
	t, ok := e.cfg.Tenants.Lookup(domain)
	if !ok {
		e.httpError(w, http.StatusForbidden, "domain "+domain+" is not configured for MRA on this edge")
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || !checkUser(t, user, pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Cisco-Edge"`)
		e.httpError(w, http.StatusUnauthorized, "send the credentials of a user of "+t.Domain+" with HTTP Basic authentication")
		return
	}
	body, err := e.edgeConfigXML(t, r.URL.Query()["service_name"])
	if err != nil {
		e.log.Error("marshal get_edge_config", zap.String("domain", t.Domain), zap.Error(err))
		e.httpError(w, http.StatusInternalServerError, "the edge failed to build its configuration")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Set-Cookie", "X-Auth="+rand.Text()+"; Domain=."+cookieDomain(r, e.cfg.EdgeHost)+"; Path=/; Secure; HttpOnly")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
	e.m.httpRequest(http.StatusOK)
}

// httpError writes a one-sentence plain-text error and counts it.
func (e *Edge) httpError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
	e.m.httpRequest(code)
}

// edgeConfigPath extracts the encoded domain from /<b64>/get_edge_config, with or without a
// trailing slash. Standard base64 may itself contain '/', so the domain is everything between
// the leading slash and the suffix.
func edgeConfigPath(p string) (encoded string, ok bool) {
	p = strings.TrimPrefix(p, "/")
	p = strings.TrimSuffix(p, "/")
	encoded, ok = strings.CutSuffix(p, "/get_edge_config")
	return encoded, ok && encoded != ""
}

// decodeDomain decodes a service domain sent as base64: unpadded or padded, standard or URL-safe
// alphabet. The result must be a plausible domain name.
func decodeDomain(s string) (string, error) {
	s = strings.TrimRight(s, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return "", err
	}
	d := tenant.Normalize(string(b))
	if err := tenant.ValidateDomain(d); err != nil {
		return "", err
	}
	return d, nil
}

// checkUser applies the tenant's user rule (tenant.HasUser) to a login name, which may be the
// bare user or user@<service domain>.
func checkUser(t *tenant.Tenant, login, password string) bool {
	user, domain, qualified := strings.Cut(login, "@")
	if qualified && !strings.EqualFold(tenant.Normalize(domain), t.Domain) {
		return false
	}
	_, ok := t.HasUser(user, password)
	return ok
}

// cookieDomain is the domain the X-Auth cookie is scoped to: the parent domain of the host the
// client reached (its SNI name, else the Host header), so the client's own cookie rules accept it;
// the edge host's when the client used an address.
func cookieDomain(r *http.Request, edgeHost string) string {
	host := ""
	if r.TLS != nil {
		host = r.TLS.ServerName
	}
	if host == "" {
		host = r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	host = tenant.Normalize(host)
	if tenant.ValidateDomain(host) != nil {
		host = edgeHost
	}
	if _, parent, _ := strings.Cut(host, "."); strings.Contains(parent, ".") {
		return parent
	}
	return host
}

// edgeConfigXML builds a tenant's get_edge_config answer for the requested services.
func (e *Edge) edgeConfigXML(t *tenant.Tenant, names []string) ([]byte, error) {
	if len(names) == 0 {
		names = defaultServices
	}
	resp := edgeConfigResponse{Version: "1.0"}
	for _, n := range names {
		resp.ServiceConfig.Services = append(resp.ServiceConfig.Services, internalService(t.Domain, n))
	}
	ec := &resp.EdgeConfig
	for _, tg := range t.Targets(e.provider) {
		ec.SIPEdgeServer.Servers = append(ec.SIPEdgeServer.Servers, edgeServer{tg.Target, e.ports.SIP})
		ec.XMPPEdgeServer.Servers = append(ec.XMPPEdgeServer.Servers, edgeServer{tg.Target, e.ports.XMPP})
		ec.HTTPEdgeServer.Servers = append(ec.HTTPEdgeServer.Servers, edgeServer{tg.Target, e.ports.HTTPS})
	}
	ec.SIPRequest.Route = internalRoute(t.Domain)
	ec.UserUDSServer.Servers = []edgeServer{{"cucm-pub." + t.Domain, internalHTTPSPort}}

	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(&resp); err != nil {
		return nil, err
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// internalService invents the inside-DNS answer for one service of a tenant: the Unified CM
// publisher and subscriber for _cisco-uds, the IM and Presence node for _cuplogin, NameError
// for anything else.
func internalService(domain, name string) service {
	s := service{Name: name}
	switch name {
	case "_cisco-uds":
		s.Servers = []srvServer{
			{Priority: 1, Weight: 10, Port: internalHTTPSPort, Address: "cucm-pub." + domain},
			{Priority: 2, Weight: 10, Port: internalHTTPSPort, Address: "cucm-sub." + domain},
		}
	case "_cuplogin":
		s.Servers = []srvServer{{Priority: 1, Weight: 10, Port: internalHTTPSPort, Address: "imp-pub." + domain}}
	default:
		s.Error = "NameError"
	}
	return s
}

// internalRoute invents the tenant's stable internal SIP route (its Unified CM, seen from the
// Expressway-C): an address in 10.0.0.0/8 derived from the domain.
func internalRoute(domain string) string {
	h := fnv.New32a()
	h.Write([]byte(domain))
	v := h.Sum32()
	return fmt.Sprintf("<sip:10.%d.%d.%d:5061;transport=tls;zone-id=3;directed;lr>", v>>16&0xff, v>>8&0xff, 1+(v&0xff)%254)
}

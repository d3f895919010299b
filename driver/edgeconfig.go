package driver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrBadEdgeConfig is wrapped by every error ParseEdgeConfig returns.
var ErrBadEdgeConfig = errors.New("driver: bad edge configuration")

// edgeConfigBodyLimit bounds the get_edge_config response body the driver reads.
const edgeConfigBodyLimit = 1 << 20

// EdgeServer is one server of the edge configuration: a host name or address and a port.
type EdgeServer struct {
	Address string
	Port    int
}

// String returns address:port.
func (s EdgeServer) String() string { return net.JoinHostPort(s.Address, strconv.Itoa(s.Port)) }

// EdgeConfig is what get_edge_config tells a client: the edge servers per protocol, the SIP
// route, the user's home UDS node and the internal services it looked up. Build it with
// ParseEdgeConfig; it is a plain value, safe to read from many goroutines.
type EdgeConfig struct {
	SIP, XMPP, HTTP, UDS []EdgeServer // edgeConfig/{sip,xmpp,http}EdgeServer and userUdsServer
	SIPRoute             string       // edgeConfig/sipRequest/route, unescaped, e.g. <sip:10.0.0.21:5061;transport=tls;lr>
	// Services maps a serviceConfig service name (_cisco-uds, _cuplogin, ...) to its servers.
	Services map[string][]EdgeServer
	// ServiceErrors maps a service name to the DNS error the edge reported for it (NameError).
	ServiceErrors map[string]string
}

// The XML tree of getEdgeConfigResponse, as clients parse it.
type xmlEdgeConfigResponse struct {
	XMLName  xml.Name
	Services []struct {
		Name    string `xml:"name"`
		Error   string `xml:"error"`
		Servers []struct {
			Address string `xml:"address"`
			Port    string `xml:"port"`
		} `xml:"server"`
	} `xml:"serviceConfig>service"`
	SIP   []xmlEdgeServer `xml:"edgeConfig>sipEdgeServer>server"`
	Route string          `xml:"edgeConfig>sipRequest>route"`
	XMPP  []xmlEdgeServer `xml:"edgeConfig>xmppEdgeServer>server"`
	HTTP  []xmlEdgeServer `xml:"edgeConfig>httpEdgeServer>server"`
	UDS   []xmlEdgeServer `xml:"edgeConfig>userUdsServer>server"`
}

type xmlEdgeServer struct {
	Address string `xml:"address"`
	TLSPort string `xml:"tlsPort"`
}

// parsePort reads a TCP port (1-65535).
func parsePort(s string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	return n, err == nil && n > 0 && n <= 65535
}

// ParseEdgeConfig parses a getEdgeConfigResponse document. Its errors wrap ErrBadEdgeConfig
// and say what a client could not use: not XML, the wrong root element, an empty userUdsServer
// address ("XML didn't contain UDS server address", as Jabber says), no SIP or no XMPP edge
// server, or a bad port.
func ParseEdgeConfig(data []byte) (*EdgeConfig, error) {
	var doc xmlEdgeConfigResponse
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: not XML: %v", ErrBadEdgeConfig, err)
	}
	if doc.XMLName.Local != "getEdgeConfigResponse" {
		return nil, fmt.Errorf("%w: root element is <%s>, want <getEdgeConfigResponse>", ErrBadEdgeConfig, doc.XMLName.Local)
	}
	cfg := &EdgeConfig{
		SIPRoute:      strings.TrimSpace(doc.Route),
		Services:      map[string][]EdgeServer{},
		ServiceErrors: map[string]string{},
	}
	lists := []struct {
		name string
		in   []xmlEdgeServer
		out  *[]EdgeServer
	}{
		{"sipEdgeServer", doc.SIP, &cfg.SIP},
		{"xmppEdgeServer", doc.XMPP, &cfg.XMPP},
		{"httpEdgeServer", doc.HTTP, &cfg.HTTP},
		{"userUdsServer", doc.UDS, &cfg.UDS},
	}
	for _, l := range lists {
		for _, s := range l.in {
			addr := strings.TrimSpace(s.Address)
			if addr == "" {
				if l.name == "userUdsServer" {
					return nil, fmt.Errorf("%w: XML didn't contain UDS server address", ErrBadEdgeConfig)
				}
				return nil, fmt.Errorf("%w: a %s server has an empty address", ErrBadEdgeConfig, l.name)
			}
			port, ok := parsePort(s.TLSPort)
			if !ok {
				return nil, fmt.Errorf("%w: %s server %s has bad tlsPort %q (want 1-65535)", ErrBadEdgeConfig, l.name, addr, s.TLSPort)
			}
			*l.out = append(*l.out, EdgeServer{Address: addr, Port: port})
		}
	}
	switch {
	case len(cfg.UDS) == 0:
		return nil, fmt.Errorf("%w: XML didn't contain UDS server address", ErrBadEdgeConfig)
	case len(cfg.SIP) == 0:
		return nil, fmt.Errorf("%w: no SIP edge servers (edgeConfig/sipEdgeServer/server)", ErrBadEdgeConfig)
	case len(cfg.XMPP) == 0:
		return nil, fmt.Errorf("%w: no XMPP edge servers (edgeConfig/xmppEdgeServer/server)", ErrBadEdgeConfig)
	}
	for _, svc := range doc.Services {
		name := strings.TrimSpace(svc.Name)
		if name == "" {
			continue // nothing could refer to it
		}
		if e := strings.TrimSpace(svc.Error); e != "" {
			cfg.ServiceErrors[name] = e
		}
		for _, s := range svc.Servers {
			port, ok := parsePort(s.Port)
			if !ok {
				return nil, fmt.Errorf("%w: service %s server %s has bad port %q (want 1-65535)", ErrBadEdgeConfig, name, strings.TrimSpace(s.Address), s.Port)
			}
			cfg.Services[name] = append(cfg.Services[name], EdgeServer{Address: strings.TrimSpace(s.Address), Port: port})
		}
	}
	return cfg, nil
}

// edgeConfigPath returns the get_edge_config request path for a service domain, with the
// domain base64-encoded without padding as Jabber sends it.
func edgeConfigPath(domain string) string {
	return "/" + base64.RawStdEncoding.EncodeToString([]byte(domain)) +
		"/get_edge_config?service_name=_cisco-uds&service_name=_cuplogin"
}

// longAgo is a deadline in the past, set to unblock I/O when a context ends.
var longAgo = time.Unix(1, 0)

// watchConn applies ctx to conn: its deadline at once, and a deadline in the past when ctx is
// done, so blocked reads and writes return. Call the returned stop when the exchange is over.
func watchConn(ctx context.Context, conn net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(longAgo) })
}

// ioClass sorts an I/O error of an exchange: the run canceled, a timeout, or the connection
// closed or reset (ClassConnect). Anything else, such as a size limit, gets proto.
func ioClass(ctx context.Context, err error, proto Class) Class {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return ClassCanceled
	case ctx.Err() != nil, errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ClassTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED):
		return ClassConnect
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return ClassConnect
	}
	return proto
}

// hostHeader is the Host header for hostPort: the host alone on port 443 or with no port.
func hostHeader(hostPort string) string {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || port == "443" || port == "" {
		if err != nil {
			return hostPort
		}
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return hostPort
}

// firstLine returns the first non-empty line of b, trimmed and cut to 200 bytes.
func firstLine(b []byte) string {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if s := strings.TrimSpace(string(l)); s != "" {
			if len(s) > 200 {
				s = s[:200] + "..."
			}
			return s
		}
	}
	return ""
}

// basicRealm pulls the realm out of a WWW-Authenticate header, or "".
func basicRealm(h string) string {
	i := -1
	for j := 0; j+6 <= len(h); j++ {
		if strings.EqualFold(h[j:j+6], "realm=") {
			i = j
			break
		}
	}
	if i < 0 {
		return ""
	}
	after := h[i+6:]
	if strings.HasPrefix(after, `"`) {
		v, _, _ := strings.Cut(after[1:], `"`)
		return v
	}
	v, _, _ := strings.Cut(after, ",")
	return strings.TrimSpace(v)
}

// fetchEdgeConfig sends GET get_edge_config for domain over conn, an established TLS
// connection to hostPort (the SNI host and port), with HTTP Basic credentials, and reads and
// parses the answer. It classifies 401 (ClassUnauthorized), 403 (ClassForbidden), another
// status (ClassHTTP), an unusable document (ClassBadEdgeConfig), and I/O failures (ClassTimeout,
// ClassConnect, ClassCanceled). ctx's deadline and cancellation apply to conn.
func fetchEdgeConfig(ctx context.Context, conn net.Conn, hostPort, domain, user, password string) (*EdgeConfig, Class, string) {
	stop := watchConn(ctx, conn)
	defer stop()
	host := hostHeader(hostPort)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+edgeConfigPath(domain), nil)
	if err != nil {
		return nil, ClassHTTP, fmt.Sprintf("cannot build the get_edge_config request for %s: %v", hostPort, err)
	}
	req.Host = host
	req.Close = true
	req.SetBasicAuth(user, password)
	req.Header.Set("Accept", "text/xml")
	req.Header.Set("User-Agent", "edgesim-driver")
	if err := req.Write(conn); err != nil {
		return nil, ioClass(ctx, err, ClassHTTP), fmt.Sprintf("sending GET get_edge_config to %s: %v", hostPort, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && ctx.Err() == nil {
		return nil, ClassConnect, fmt.Sprintf("the edge %s closed the connection before answering GET get_edge_config", hostPort)
	}
	if err != nil {
		return nil, ioClass(ctx, err, ClassHTTP), fmt.Sprintf("reading the get_edge_config response from %s: %v", hostPort, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, edgeConfigBodyLimit+1))
	if err != nil {
		return nil, ioClass(ctx, err, ClassHTTP), fmt.Sprintf("reading the %s get_edge_config body from %s: %v", resp.Status, hostPort, err)
	}
	tooBig := len(body) > edgeConfigBodyLimit
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		realm := basicRealm(resp.Header.Get("WWW-Authenticate"))
		if realm == "" {
			return nil, ClassUnauthorized, fmt.Sprintf("401: the edge refused the credentials of user %q (no Basic realm offered)", user)
		}
		return nil, ClassUnauthorized, fmt.Sprintf("401: the edge refused the credentials of user %q (realm %q)", user, realm)
	case http.StatusForbidden:
		d := "403: the edge says the domain is not configured for MRA (domain " + domain
		if s := resp.Header.Get("Server"); s != "" {
			d += ", Server: " + s
		}
		if l := firstLine(body); l != "" {
			d += ", body: " + l
		}
		return nil, ClassForbidden, d + ")"
	default:
		d := fmt.Sprintf("get_edge_config answered %s", resp.Status)
		if l := firstLine(body); l != "" {
			d += ": " + l
		}
		return nil, ClassHTTP, d
	}
	if tooBig {
		return nil, ClassBadEdgeConfig, fmt.Sprintf("200, but the body is over %d bytes", edgeConfigBodyLimit)
	}
	cfg, err := ParseEdgeConfig(body)
	if err != nil {
		return nil, ClassBadEdgeConfig, "200, but " + strings.TrimPrefix(err.Error(), "driver: ")
	}
	cookie := "no X-Auth cookie"
	for _, c := range resp.Cookies() {
		if c.Name == "X-Auth" && c.Value != "" {
			cookie = "X-Auth cookie set"
		}
	}
	return cfg, ClassNone, fmt.Sprintf("200, %s; sip %s, xmpp %s, uds %s", cookie, cfg.SIP[0], cfg.XMPP[0], cfg.UDS[0])
}

package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "edgesim"

// Listener indexes; their names are the "listener" label values.
const (
	lnHTTPS = iota
	lnXMPP
	lnSIP
	numListeners
)

var listenerNames = [numListeners]string{"https", "xmpp", "sip"}

// Handshake results, the "result" label values.
const (
	resultOK      = "ok"
	resultTimeout = "timeout"
	resultError   = "error"
)

// handshakeBuckets span a resumed handshake on a fast host (~100µs) to the default timeout (10s).
var handshakeBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// The TLS versions a handshake can end with, as "version" label values; index = version-0x0301.
var tlsVersionNames = [...]string{"1.0", "1.1", "1.2", "1.3"}

// SIP methods and status codes with pre-bound counters.
var (
	sipMethods = [...]string{"OPTIONS", "REGISTER", "other"}
	sipCodes   = [...]int{200, 400, 501, 513}
	httpCodes  = [...]int{200, 400, 401, 403, 404, 405}
)

// listenerMetrics are one listener's series, bound once at construction so that the hot path
// neither builds label strings nor looks anything up.
type listenerMetrics struct {
	okDuration      [len(tlsVersionNames)]prometheus.Observer
	timeoutDuration prometheus.Observer
	errorDuration   prometheus.Observer
	ok              prometheus.Counter
	timeout         prometheus.Counter
	failed          prometheus.Counter
	resumed         prometheus.Counter
	open            prometheus.Gauge
	rejected        prometheus.Counter
}

// metrics holds every series the edge exports.
type metrics struct {
	ln          [numListeners]listenerMetrics
	httpByCode  map[int]prometheus.Counter // pre-bound codes; read-only after construction
	httpVec     *prometheus.CounterVec
	sip         [len(sipMethods)][len(sipCodes)]prometheus.Counter
	xmppLogins  [2]prometheus.Counter // [0] failure, [1] success
	xmppStreams prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	hsDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "tls", Name: "handshake_duration_seconds",
		Help:    "Time from accepting a TLS connection (after STARTTLS for XMPP) to the end of its handshake.",
		Buckets: handshakeBuckets,
	}, []string{"listener", "version", "result"})
	hsTotal := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "tls", Name: "handshakes_total",
		Help: "TLS handshakes by listener and result (ok, timeout, error).",
	}, []string{"listener", "result"})
	resumed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "tls", Name: "resumed_handshakes_total",
		Help: "Successful TLS handshakes that resumed a session (ticket) instead of a full handshake.",
	}, []string{"listener"})
	open := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "proxy", Name: "open_connections",
		Help: "Connections currently open on each edge listener.",
	}, []string{"listener"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "proxy", Name: "connections_rejected_total",
		Help: "Connections closed at once because the listener was at its connection limit.",
	}, []string{"listener"})
	httpReqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTPS edge requests (get_edge_config and anything else) by status code.",
	}, []string{"code"})
	sipReqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "sip", Name: "requests_total",
		Help: "SIP requests answered by the edge, by method and status code (ACK is never answered, so never counted).",
	}, []string{"method", "code"})
	xmppLogins := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "xmpp", Name: "logins_total",
		Help: "XMPP SASL PLAIN authentications by result (success, failure).",
	}, []string{"result"})
	xmppStreams := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "xmpp", Name: "bound_streams_total",
		Help: "XMPP streams that completed STARTTLS, SASL and resource binding.",
	})
	collectors := []prometheus.Collector{hsDuration, hsTotal, resumed, open, rejected, httpReqs, sipReqs, xmppLogins, xmppStreams}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("proxy: register metrics: %w (give each Edge its own Registerer)", err)
			}
			return nil, fmt.Errorf("proxy: register metrics: %w", err)
		}
	}

	m := &metrics{httpVec: httpReqs, httpByCode: make(map[int]prometheus.Counter, len(httpCodes))}
	for i := range m.ln {
		name := listenerNames[i]
		l := &m.ln[i]
		for v, vn := range tlsVersionNames {
			l.okDuration[v] = hsDuration.WithLabelValues(name, vn, resultOK)
		}
		l.timeoutDuration = hsDuration.WithLabelValues(name, "none", resultTimeout)
		l.errorDuration = hsDuration.WithLabelValues(name, "none", resultError)
		l.ok = hsTotal.WithLabelValues(name, resultOK)
		l.timeout = hsTotal.WithLabelValues(name, resultTimeout)
		l.failed = hsTotal.WithLabelValues(name, resultError)
		l.resumed = resumed.WithLabelValues(name)
		l.open = open.WithLabelValues(name)
		l.rejected = rejected.WithLabelValues(name)
	}
	for _, c := range httpCodes {
		m.httpByCode[c] = httpReqs.WithLabelValues(strconv.Itoa(c))
	}
	for i, meth := range sipMethods {
		for j, c := range sipCodes {
			m.sip[i][j] = sipReqs.WithLabelValues(meth, strconv.Itoa(c))
		}
	}
	m.xmppLogins[0] = xmppLogins.WithLabelValues("failure")
	m.xmppLogins[1] = xmppLogins.WithLabelValues("success")
	m.xmppStreams = xmppStreams
	return m, nil
}

// handshakeDone records one finished handshake. version is the negotiated TLS version (only
// read when err is nil).
func (l *listenerMetrics) handshakeDone(seconds float64, version uint16, resumed bool, err error) {
	switch {
	case err == nil:
		i := int(version) - tls.VersionTLS10
		if i < 0 || i >= len(l.okDuration) {
			i = len(l.okDuration) - 1
		}
		l.okDuration[i].Observe(seconds)
		l.ok.Inc()
		if resumed {
			l.resumed.Inc()
		}
	case isTimeout(err):
		l.timeoutDuration.Observe(seconds)
		l.timeout.Inc()
	default:
		l.errorDuration.Observe(seconds)
		l.failed.Inc()
	}
}

// httpRequest counts one HTTPS response.
func (m *metrics) httpRequest(code int) {
	if c, ok := m.httpByCode[code]; ok {
		c.Inc()
		return
	}
	m.httpVec.WithLabelValues(strconv.Itoa(code)).Inc()
}

// sipRequest counts one answered SIP request.
func (m *metrics) sipRequest(method []byte, code int) {
	i := len(sipMethods) - 1
	for k, name := range sipMethods[:len(sipMethods)-1] {
		if string(method) == name {
			i = k
			break
		}
	}
	for j, c := range sipCodes {
		if c == code {
			m.sip[i][j].Inc()
			return
		}
	}
}

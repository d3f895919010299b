package dnssrv

import (
	"errors"
	"fmt"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Question types counted on their own; everything else is "other", so the label stays bounded.
const (
	qtA = iota
	qtAAAA
	qtSRV
	qtSOA
	qtNS
	qtANY
	qtTXT
	qtOther
	numQtypes
)

var qtypeLabels = [numQtypes]string{"A", "AAAA", "SRV", "SOA", "NS", "ANY", "TXT", "other"}

func qtypeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return qtA
	case dns.TypeAAAA:
		return qtAAAA
	case dns.TypeSRV:
		return qtSRV
	case dns.TypeSOA:
		return qtSOA
	case dns.TypeNS:
		return qtNS
	case dns.TypeANY:
		return qtANY
	case dns.TypeTXT:
		return qtTXT
	}
	return qtOther
}

// Response codes the server gives, plus "other" for anything unexpected.
var rcodeList = [...]int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure,
	dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers}

const numRcodes = len(rcodeList) + 1

func rcodeIndex(rc int) int {
	for i, c := range rcodeList {
		if c == rc {
			return i
		}
	}
	return len(rcodeList)
}

func rcodeLabel(i int) string {
	switch {
	case i >= len(rcodeList):
	case rcodeList[i] == dns.RcodeBadVers:
		return "BADVERS" // miekg names 16 BADSIG; without TSIG it can only mean BADVERS
	default:
		return dns.RcodeToString[rcodeList[i]]
	}
	return "other"
}

var protoLabels = [2]string{"udp", "tcp"}

// metrics holds the server's collectors with every label combination bound up front, so that
// counting a query is an array index and an atomic add.
type metrics struct {
	queries  [numQtypes][numRcodes][2]prometheus.Counter
	duration [2]prometheus.Observer
}

// newMetrics creates the collectors and registers them with reg (nil: not registered). When the
// collectors are already registered, as for a second Server on the same registry, the existing
// ones are shared.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "edgesim",
		Subsystem: "dns",
		Name:      "queries_total",
		Help:      "DNS queries answered, by question type, response code and transport.",
	}, []string{"qtype", "rcode", "proto"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "edgesim",
		Subsystem: "dns",
		Name:      "request_duration_seconds",
		Help:      "Time to build and write a DNS answer, by transport.",
		Buckets:   prometheus.ExponentialBuckets(10e-6, 4, 8), // 10µs .. 164ms
	}, []string{"proto"})
	if reg != nil {
		var err error
		if queries, err = register(reg, queries); err != nil {
			return nil, err
		}
		if duration, err = register(reg, duration); err != nil {
			return nil, err
		}
	}
	m := &metrics{}
	for q := range numQtypes {
		for rc := range numRcodes {
			for p := range protoLabels {
				m.queries[q][rc][p] = queries.WithLabelValues(qtypeLabels[q], rcodeLabel(rc), protoLabels[p])
			}
		}
	}
	for p := range protoLabels {
		m.duration[p] = duration.WithLabelValues(protoLabels[p])
	}
	return m, nil
}

// register registers c with reg, or returns the collector already registered in its place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("dnssrv: register metrics: %w", err)
}

// observe counts one answered query.
func (m *metrics) observe(qt, rcode int, tcp bool, d time.Duration) {
	p := m.count(qt, rcode, tcp)
	m.duration[p].Observe(d.Seconds())
}

// count counts a query by its answer without timing it, and returns the protocol index.
func (m *metrics) count(qt, rcode int, tcp bool) int {
	p := 0
	if tcp {
		p = 1
	}
	m.queries[qt][rcodeIndex(rcode)][p].Inc()
	return p
}

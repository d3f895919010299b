package acme

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the edgesim_acme_* collectors. Managers sharing a registry share the counters
// and the histogram; the two gauges are set by whichever Manager changed last, so run one
// Manager per registry when they matter.
type metrics struct {
	ordersOK, ordersFailed prometheus.Counter
	issueDuration          prometheus.Observer
	managed                prometheus.Gauge
	expiry                 prometheus.Gauge
}

// newMetrics creates the collectors and registers them with reg (nil: not registered).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	orders := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "edgesim",
		Subsystem: "acme",
		Name:      "orders_total",
		Help:      "Issuance and renewal attempts, one ACME order each, by result (an attempt that cannot reach the CA is a failure).",
	}, []string{"result"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "edgesim",
		Subsystem: "acme",
		Name:      "issue_duration_seconds",
		Help:      "Time an issuance or renewal attempt took, from the CSR to the certificate chain or the failure.",
		Buckets:   prometheus.ExponentialBuckets(0.05, 2, 12), // 50ms .. 102s
	})
	managed := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "edgesim",
		Subsystem: "acme",
		Name:      "managed_domains",
		Help:      "Domains whose certificates are managed through ACME (enabled, not disabled).",
	})
	expiry := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "edgesim",
		Subsystem: "acme",
		Name:      "certificate_expiry_timestamp_seconds",
		Help:      "NotAfter of the earliest-expiring managed certificate, as a Unix time; 0 when there is none.",
	})
	if reg != nil {
		var err error
		if orders, err = register(reg, orders); err != nil {
			return nil, err
		}
		if duration, err = register(reg, duration); err != nil {
			return nil, err
		}
		if managed, err = register(reg, managed); err != nil {
			return nil, err
		}
		if expiry, err = register(reg, expiry); err != nil {
			return nil, err
		}
	}
	return &metrics{
		ordersOK:      orders.WithLabelValues("success"),
		ordersFailed:  orders.WithLabelValues("failure"),
		issueDuration: duration,
		managed:       managed,
		expiry:        expiry,
	}, nil
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
	return c, fmt.Errorf("acme: register metrics: %w", err)
}

// order records one finished ACME order.
func (m *metrics) order(ok bool, d time.Duration) {
	if ok {
		m.ordersOK.Inc()
	} else {
		m.ordersFailed.Inc()
	}
	m.issueDuration.Observe(d.Seconds())
}

package certdir

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Source's Prometheus metrics, subsystem certdir.
type metrics struct {
	certificates prometheus.Gauge
	hosts        prometheus.Gauge
	loads        prometheus.Counter
	errors       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		certificates: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "edgesim", Subsystem: "certdir", Name: "certificates",
			Help: "Folders of the certificate directory whose certificate is in use."}),
		hosts: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "edgesim", Subsystem: "certdir", Name: "hosts",
			Help: "Host names (wildcards included) the certificate directory provides a certificate for."}),
		loads: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "edgesim", Subsystem: "certdir", Name: "loads_total",
			Help: "Certificates loaded or reloaded from the certificate directory."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "edgesim", Subsystem: "certdir", Name: "errors_total",
			Help: "Problems reported with the certificate directory, by reason; a pair that cannot be used leaves the last good certificate in use."},
			[]string{"reason"}),
	}
	for _, r := range reasons {
		m.errors.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.certificates, m.hosts, m.loads, m.errors} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: metrics: %v", ErrConfig, err)
	}
	return m, nil
}

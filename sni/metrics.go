package sni

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the store's selection counters and size as Prometheus metrics:
// edgesim_sni_selections_total{kind} and edgesim_sni_names. Register it with
// prometheus.MustRegister(store.Collector()). The counters are read at scrape time, so the
// handshake path pays one atomic add and nothing else.
func (s *Store) Collector() prometheus.Collector { return collector{s} }

var (
	selectionsDesc = prometheus.NewDesc("edgesim_sni_selections_total",
		"Certificates chosen by SNI during TLS handshakes, by how the name matched (exact, wildcard, platform fallback, none).",
		[]string{"kind"}, nil)
	namesDesc = prometheus.NewDesc("edgesim_sni_names",
		"Host names (wildcards included) in the SNI certificate store.", nil, nil)
)

type collector struct{ s *Store }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- selectionsDesc
	ch <- namesDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for k := range numKinds {
		ch <- prometheus.MustNewConstMetric(selectionsDesc, prometheus.CounterValue, float64(c.s.selected[k].Load()), k.String())
	}
	ch <- prometheus.MustNewConstMetric(namesDesc, prometheus.GaugeValue, float64(c.s.Len()))
}

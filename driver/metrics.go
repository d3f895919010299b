package driver

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Prometheus metrics of a load run, under namespace edgesim, subsystem driver:
//
//	edgesim_driver_logins_started_total            logins started
//	edgesim_driver_logins_total{result}            logins finished: result is success or failure
//	edgesim_driver_errors_total{class}             failed logins by the Class of their first failing step
//	edgesim_driver_step_duration_seconds{step,result}  step latency; step="login" is the whole
//	                                               login from its intended start
//	edgesim_driver_in_flight                       logins under way
//	edgesim_driver_target_rate                     logins per second asked for (0 in the closed
//	                                               model and once scheduling has stopped)
//	edgesim_driver_cpu_seconds_total               user + system CPU of the driver process
const (
	metricsNamespace = "edgesim"
	metricsSubsystem = "driver"
	resultSuccess    = "success"
	resultFailure    = "failure"
)

// stepBuckets run from 0.5 ms to 30 s, about three to a decade.
var stepBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// metrics are a Runner's Prometheus metrics. A nil *metrics records nothing.
type metrics struct {
	started    prometheus.Counter
	success    prometheus.Counter
	failure    prometheus.Counter
	errors     *prometheus.CounterVec
	steps      *prometheus.HistogramVec
	inFlight   prometheus.Gauge
	targetRate prometheus.Gauge
	// observers holds the step histograms' children for the known steps, so recording a login
	// hashes no labels: [0] success, [1] failure. Read-only after newMetrics.
	observers map[Step][2]prometheus.Observer
}

// newMetrics makes the metrics and registers them on reg. If one fails to register (for
// instance because reg already has the driver's metrics) the ones registered are taken back and
// the error is returned.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: name, Help: help}
	}
	logins := prometheus.NewCounterVec(prometheus.CounterOpts(opts("logins_total",
		"Logins finished, by result (success or failure).")), []string{"result"})
	m := &metrics{
		started: prometheus.NewCounter(prometheus.CounterOpts(opts("logins_started_total",
			"Logins started."))),
		success: logins.WithLabelValues(resultSuccess),
		failure: logins.WithLabelValues(resultFailure),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts(opts("errors_total",
			"Failed logins by the class of their first failing step.")), []string{"class"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "step_duration_seconds",
			Help:    `Latency of each step of a login, by result; step "login" is the whole login from its intended start.`,
			Buckets: stepBuckets,
		}, []string{"step", "result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts(opts("in_flight",
			"Logins under way."))),
		targetRate: prometheus.NewGauge(prometheus.GaugeOpts(opts("target_rate",
			"Logins per second asked for; 0 in the closed model and once scheduling has stopped."))),
		observers: make(map[Step][2]prometheus.Observer, len(Steps)+1),
	}
	cpu := prometheus.NewCounterFunc(prometheus.CounterOpts(opts("cpu_seconds_total",
		"User and system CPU time of the driver process.")), processCPUSeconds)
	for _, s := range append(append([]Step(nil), Steps...), StepLogin) {
		m.observers[s] = [2]prometheus.Observer{
			m.steps.WithLabelValues(string(s), resultSuccess),
			m.steps.WithLabelValues(string(s), resultFailure),
		}
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.started, logins, m.errors, m.steps, m.inFlight, m.targetRate, cpu} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("driver: register metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

func (m *metrics) setTarget(rate float64) {
	if m != nil {
		m.targetRate.Set(rate)
	}
}

func (m *metrics) begin() {
	if m != nil {
		m.started.Inc()
		m.inFlight.Inc()
	}
}

// finish records a login that took latency from its intended start.
func (m *metrics) finish(tr *Trace, ok bool, class Class, latency time.Duration) {
	if m == nil {
		return
	}
	m.inFlight.Dec()
	if ok {
		m.success.Inc()
	} else {
		m.failure.Inc()
		m.errors.WithLabelValues(string(class)).Inc()
	}
	m.observe(StepLogin, !ok, latency)
	if tr == nil {
		return
	}
	for i := range tr.Steps {
		s := &tr.Steps[i]
		if (s.Verdict == Pass || s.Verdict == Fail) && s.Step != StepLogin {
			m.observe(s.Step, s.Verdict == Fail, s.Duration)
		}
	}
}

func (m *metrics) observe(s Step, failed bool, d time.Duration) {
	i := 0
	if failed {
		i = 1
	}
	if o, ok := m.observers[s]; ok {
		o[i].Observe(d.Seconds())
		return
	}
	m.steps.WithLabelValues(string(s), [2]string{resultSuccess, resultFailure}[i]).Observe(d.Seconds())
}

// abandon records n logins given up on as canceled failures.
func (m *metrics) abandon(n int) {
	if m == nil || n == 0 {
		return
	}
	m.inFlight.Sub(float64(n))
	m.failure.Add(float64(n))
	m.errors.WithLabelValues(string(ClassCanceled)).Add(float64(n))
}

package driver

import "time"

// ResultsVersion is the version of the results file format written by --out.
const ResultsVersion = 1

// Histogram ranges: latencies are recorded in microseconds from 1 µs to 10 minutes with three
// significant digits, so every histogram in every results file merges with every other.
const (
	HistMinMicros = 1
	HistMaxMicros = int64(10 * time.Minute / time.Microsecond)
	HistSigFigs   = 3
)

// Results is what a load run produces and what --out writes as JSON. Results from several runs
// or shards merge exactly (Merge): totals and error counts add, histograms merge without loss,
// and the per-second series add second by second.
type Results struct {
	Version  int       `json:"version"`
	Settings Settings  `json:"settings"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended"`
	// Elapsed is the wall time of the run (the longest of the merged runs).
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Totals         Totals  `json:"totals"`
	// Steps has one entry per step measured, in call order, then StepLogin: the whole login's
	// latency measured from its intended start time.
	Steps []StepStats `json:"steps"`
	// Errors counts failed logins by the class of their first failing step.
	Errors map[Class]int64 `json:"errors"`
	// Series has one point per second of the run, by Unix second.
	Series []Point `json:"series"`
	// Driver is what the driver itself used; merged results list each run's.
	Driver []DriverUsage `json:"driver"`
	// Shards counts the results files merged into this one (1 for a single run).
	Shards int `json:"shards"`
	// Interrupted is set when the run was stopped (Ctrl-C) before its bound; merged results are
	// interrupted when any part was.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Settings records how a run was made.
type Settings struct {
	Command     string   `json:"command"`               // the command line, for people
	Model       string   `json:"model"`                 // "open" (rate) or "closed" (concurrency)
	Rate        float64  `json:"rate,omitempty"`        // logins per second asked for (open model)
	Concurrency int      `json:"concurrency,omitempty"` // logins in flight (closed model)
	Duration    float64  `json:"duration_seconds,omitempty"`
	Count       int64    `json:"count,omitempty"`
	Steps       []Step   `json:"steps"`
	Resume      bool     `json:"resume"`
	Users       int64    `json:"users"`  // distinct users the run draws from
	Source      string   `json:"source"` // where the users came from
	DNS         string   `json:"dns,omitempty"`
	Shard       string   `json:"shard,omitempty"` // "I/N" when the run was one shard
	Extra       []string `json:"extra,omitempty"`
}

// Totals counts logins.
type Totals struct {
	Requested int64 `json:"requested"` // logins scheduled
	Completed int64 `json:"completed"` // logins that finished, passed or failed
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
}

// StepStats is the latency of one step over a run.
type StepStats struct {
	Step   Step  `json:"step"`
	Count  int64 `json:"count"`  // times the step ran
	Errors int64 `json:"errors"` // times it failed
	// Resumed counts the runs of the step whose TLS handshake resumed a session (--resume).
	Resumed int64 `json:"resumed,omitempty"`
	// Quantiles in milliseconds, read from the histogram: p50, p90, p99, p99.9, max, mean.
	Quantiles Quantiles `json:"quantiles_ms"`
	// Histogram is the HDR histogram of successful and failed runs of the step, in
	// microseconds, in the HdrHistogram V2 compressed base64 encoding (any HdrHistogram library
	// decodes it).
	Histogram string `json:"histogram"`
}

// Quantiles are latencies in milliseconds.
type Quantiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Point is one second of a run.
type Point struct {
	Unix      int64 `json:"t"`         // the second, Unix time
	Scheduled int64 `json:"scheduled"` // logins whose intended start fell in this second
	Completed int64 `json:"completed"` // logins that finished in this second
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
	InFlight  int64 `json:"in_flight"` // logins under way at the end of the second (summed over shards)
	// Errors by class among the logins that finished in this second.
	Errors map[Class]int64 `json:"errors,omitempty"`
	// Login latencies (from intended start) of the logins that finished in this second, as a
	// V2 compressed HDR histogram, and the quantiles read from it in milliseconds.
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Histogram string  `json:"histogram,omitempty"`
}

// DriverUsage is the driver's own cost during a run, so a reader can tell whether the driver was
// the bottleneck.
type DriverUsage struct {
	Host       string  `json:"host,omitempty"`
	Cores      int     `json:"cores"`       // GOMAXPROCS
	CPUSeconds float64 `json:"cpu_seconds"` // user + system CPU of the driver process during the run
	// CPUPercent is CPUSeconds over the elapsed time, as a share of Cores (100 = all cores busy).
	CPUPercent float64 `json:"cpu_percent"`
	// PeakCPUPercent is the busiest second, on the same scale: an average over a run with a long
	// drain hides a driver that was saturated while it scheduled.
	PeakCPUPercent float64 `json:"peak_cpu_percent,omitempty"`
	// MaxLagMS is the longest a login waited in the driver past its intended start before it
	// began (open model): waiting for --max-in-flight or for CPU. The wait counts in its latency.
	MaxLagMS float64 `json:"max_schedule_lag_ms,omitempty"`
	MaxRSSMB float64 `json:"max_rss_mb"`
}

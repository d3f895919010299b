package driver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ReadResults reads one results file as --out writes it. It is strict: the file must be one JSON
// object of this version's format with no unknown fields, and every histogram in it must decode.
// Errors wrap ErrBadResults and say what is wrong.
func ReadResults(r io.Reader) (*Results, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrBadResults)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrBadResults, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: more than one JSON value in the file", ErrBadResults)
	}
	if raw[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object: not an edgesim load results file", ErrBadResults)
	}
	// Look at the version first, leniently, so a file from another version is refused for its
	// version rather than for a field this version does not know.
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadResults, err)
	}
	if head.Version == nil {
		return nil, fmt.Errorf("%w: no \"version\" field: not an edgesim load results file", ErrBadResults)
	}
	if *head.Version != ResultsVersion {
		return nil, fmt.Errorf("%w: results version %d, this edgesim reads version %d", ErrBadResults, *head.Version, ResultsVersion)
	}
	strict := json.NewDecoder(bytes.NewReader(raw))
	strict.DisallowUnknownFields()
	var res Results
	if err := strict.Decode(&res); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadResults, err)
	}
	if err := res.check(); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadResults, err)
	}
	return &res, nil
}

// WriteJSON writes r as indented JSON, the format ReadResults reads.
func (r *Results) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// check reports what makes r unusable: another version, or a histogram that does not decode.
// The error is a phrase, without ErrBadResults.
func (r *Results) check() error {
	if r.Version != ResultsVersion {
		return fmt.Errorf("results version %d, this edgesim reads version %d", r.Version, ResultsVersion)
	}
	for _, s := range r.Steps {
		if _, err := decodeHist(s.Histogram); err != nil {
			return fmt.Errorf("step %q: %v", s.Step, err)
		}
	}
	for _, p := range r.Series {
		if _, err := decodeHist(p.Histogram); err != nil {
			return fmt.Errorf("second %d: %v", p.Unix, err)
		}
	}
	return nil
}

// decodeHist decodes a histogram and says what is wrong with it, as a phrase.
func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return NewHistogram(), nil
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("histogram does not decode: %v", err)
	}
	return h, nil
}

// Merge combines the results of several runs or shards into one, exactly: totals, error counts
// and step counts add; histograms merge without loss and the quantiles are read again from the
// merged histograms; the per-second series add second by second. The merged run starts at the
// earliest start and ends at the latest end; its settings are the first's with the rates and
// counts summed, and a note in Settings.Extra when the runs measured different steps or models.
//
// Merge of one Results returns a copy equal to it. Merge refuses, with an error wrapping
// ErrBadResults that says which input (1-based) and what is wrong, results of another version
// or with a histogram that does not decode. The inputs are not modified.
func Merge(rs ...*Results) (*Results, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: nothing to merge", ErrBadResults)
	}
	for i, r := range rs {
		if r == nil {
			return nil, fmt.Errorf("%w: results %d of %d: missing", ErrBadResults, i+1, len(rs))
		}
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("%w: results %d of %d: %s", ErrBadResults, i+1, len(rs), err)
		}
	}
	first := rs[0]
	out := &Results{
		Version:        ResultsVersion,
		Settings:       copySettings(first.Settings),
		Started:        first.Started,
		Ended:          first.Ended,
		ElapsedSeconds: first.ElapsedSeconds,
	}
	for _, r := range rs {
		out.Totals.Requested += r.Totals.Requested
		out.Totals.Completed += r.Totals.Completed
		out.Totals.Succeeded += r.Totals.Succeeded
		out.Totals.Failed += r.Totals.Failed
		out.Errors = addCounts(out.Errors, r.Errors)
		if r.Driver != nil && out.Driver == nil {
			out.Driver = []DriverUsage{}
		}
		out.Driver = append(out.Driver, r.Driver...)
		out.Shards += r.Shards
		out.Interrupted = out.Interrupted || r.Interrupted
	}
	var err error
	if out.Steps, err = mergeSteps(rs); err != nil {
		return nil, err
	}
	if out.Series, err = mergeSeries(rs); err != nil {
		return nil, err
	}
	if len(rs) == 1 {
		return out, nil
	}

	// Shards split the rate, count, concurrency and users of one run: the merged run has the
	// sums. (Runs that are not shards of one run add up the same way; mergeNotes says so.)
	// A shard, or a merge of shards, carries a part of the run's users.
	part := func(r *Results) bool { return r.Settings.Shard != "" || r.Shards > 1 }
	allShards := part(rs[0])
	for _, r := range rs[1:] {
		if r.Started.Before(out.Started) {
			out.Started = r.Started
		}
		if r.Ended.After(out.Ended) {
			out.Ended = r.Ended
		}
		out.Settings.Rate += r.Settings.Rate
		out.Settings.Count += r.Settings.Count
		out.Settings.Concurrency += r.Settings.Concurrency
		allShards = allShards && part(r)
	}
	if allShards { // disjoint users; separate runs may share theirs
		for _, r := range rs[1:] {
			out.Settings.Users += r.Settings.Users
		}
	}
	out.ElapsedSeconds = out.Ended.Sub(out.Started).Seconds()
	out.Settings.Shard = ""
	out.Settings.Extra = append(out.Settings.Extra, mergeNotes(rs)...)
	return out, nil
}

// mergeNotes says how the merged runs' settings differ in what they measured.
func mergeNotes(rs []*Results) []string {
	var notes []string
	models := map[string]bool{}
	var modelList []string
	steps := map[string]bool{}
	var stepList []string
	for _, r := range rs {
		if m := r.Settings.Model; !models[m] {
			models[m] = true
			modelList = append(modelList, fmt.Sprintf("%q", m))
		}
		if s := joinSteps(r.Settings.Steps); !steps[s] {
			steps[s] = true
			stepList = append(stepList, fmt.Sprintf("%q", s))
		}
	}
	if len(modelList) > 1 {
		notes = append(notes, "merged runs of different models: "+strings.Join(modelList, ", "))
	}
	if len(stepList) > 1 {
		notes = append(notes, "merged runs that measured different steps: "+strings.Join(stepList, ", "))
	}
	return notes
}

func copySettings(s Settings) Settings {
	s.Steps = slices.Clone(s.Steps)
	s.Extra = slices.Clone(s.Extra)
	return s
}

// addCounts adds src into dst, making dst when src is not nil (so the merge of one map is an
// equal map, empty or not).
func addCounts(dst, src map[Class]int64) map[Class]int64 {
	if src != nil && dst == nil {
		dst = make(map[Class]int64, len(src))
	}
	for c, n := range src {
		dst[c] += n
	}
	return dst
}

// stepRank orders steps as a login takes them, then the whole login, then steps this version
// does not know.
func stepRank(s Step) int {
	if i := slices.Index(Steps, s); i >= 0 {
		return i
	}
	if s == StepLogin {
		return len(Steps)
	}
	return len(Steps) + 1
}

func mergeSteps(rs []*Results) ([]StepStats, error) {
	type group struct {
		stats []StepStats
		src   []int // index of the input of each entry of stats
	}
	groups := map[Step]*group{}
	var order []Step
	var out []StepStats
	for i, r := range rs {
		if r.Steps != nil && out == nil {
			out = []StepStats{}
		}
		for _, s := range r.Steps {
			g := groups[s.Step]
			if g == nil {
				g = &group{}
				groups[s.Step] = g
				order = append(order, s.Step)
			}
			g.stats = append(g.stats, s)
			g.src = append(g.src, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return stepRank(order[a]) < stepRank(order[b]) })
	if len(rs) == 1 {
		// One input: keep its order and its values as they are.
		return append(out, rs[0].Steps...), nil
	}
	for _, name := range order {
		g := groups[name]
		if len(g.stats) == 1 {
			out = append(out, g.stats[0])
			continue
		}
		m := StepStats{Step: name}
		h := NewHistogram()
		for j, s := range g.stats {
			m.Count += s.Count
			m.Errors += s.Errors
			m.Resumed += s.Resumed
			if err := mergeHist(h, s.Histogram); err != nil {
				return nil, fmt.Errorf("%w: results %d of %d: step %q: %s", ErrBadResults, g.src[j]+1, len(rs), name, err)
			}
		}
		enc, err := EncodeHistogram(h)
		if err != nil {
			return nil, err
		}
		m.Histogram = enc
		m.Quantiles = QuantilesOf(h)
		out = append(out, m)
	}
	return out, nil
}

// mergeHist merges the encoded histogram s into h.
func mergeHist(h *hdrhistogram.Histogram, s string) error {
	if s == "" {
		return nil
	}
	from, err := decodeHist(s)
	if err != nil {
		return err
	}
	if dropped := h.Merge(from); dropped > 0 {
		return fmt.Errorf("histogram: %d values outside %d µs … %d µs", dropped, HistMinMicros, HistMaxMicros)
	}
	return nil
}

func mergeSeries(rs []*Results) ([]Point, error) {
	type group struct {
		points []Point
		src    []int
	}
	groups := map[int64]*group{}
	var out []Point
	for i, r := range rs {
		if r.Series != nil && out == nil {
			out = []Point{}
		}
		for _, p := range r.Series {
			g := groups[p.Unix]
			if g == nil {
				g = &group{}
				groups[p.Unix] = g
			}
			g.points = append(g.points, p)
			g.src = append(g.src, i)
		}
	}
	if len(rs) == 1 {
		out = append(out, rs[0].Series...)
		for i := range out {
			out[i].Errors = addCounts(nil, out[i].Errors)
		}
		return out, nil
	}
	for _, g := range groups {
		if len(g.points) == 1 {
			p := g.points[0]
			p.Errors = addCounts(nil, p.Errors)
			out = append(out, p)
			continue
		}
		m := Point{Unix: g.points[0].Unix}
		h := NewHistogram()
		for j, p := range g.points {
			m.Scheduled += p.Scheduled
			m.Completed += p.Completed
			m.Succeeded += p.Succeeded
			m.Failed += p.Failed
			m.InFlight += p.InFlight
			m.Errors = addCounts(m.Errors, p.Errors)
			if err := mergeHist(h, p.Histogram); err != nil {
				return nil, fmt.Errorf("%w: results %d of %d: second %d: %s", ErrBadResults, g.src[j]+1, len(rs), m.Unix, err)
			}
		}
		if h.TotalCount() > 0 {
			enc, err := EncodeHistogram(h)
			if err != nil {
				return nil, err
			}
			q := QuantilesOf(h)
			m.Histogram, m.P50, m.P99 = enc, q.P50, q.P99
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Point) int {
		switch {
		case a.Unix < b.Unix:
			return -1
		case a.Unix > b.Unix:
			return 1
		}
		return 0
	})
	return out, nil
}

// achievedRate is completed logins per second of the run: over the time it took, but never
// less than the time asked for (the last login of a 2 s run at 10/s is due at 1.9 s, and a
// --count run at rate R is meant to take count/R).
func (r *Results) achievedRate() float64 {
	window := r.ElapsedSeconds
	if !r.Interrupted {
		s := r.Settings
		window = max(window, s.Duration)
		if s.Rate > 0 && s.Count > 0 {
			asked := float64(s.Count) / s.Rate
			if s.Duration > 0 {
				asked = min(asked, s.Duration)
			}
			window = max(window, asked)
		}
	}
	if window <= 0 {
		return 0
	}
	return float64(r.Totals.Completed) / window
}

// busy reports whether the driver may have limited the run: a second with most of its cores
// busy, or logins that waited long in the driver before they began.
func (d DriverUsage) busy() bool {
	return max(d.CPUPercent, d.PeakCPUPercent) > driverBusyPercent || d.MaxLagMS > 100
}

package driver

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var reportTemplateText string

var reportTemplate = template.Must(template.New("report").Parse(reportTemplateText))

// Series colours, chosen to stay apart for readers with the common colour deficiencies.
const (
	colorP50       = "#1f6fb2"
	colorP99       = "#d9641e"
	colorCompleted = "#2e8b57"
	colorScheduled = "#8a8a8a"
	colorFailed    = "#c0392b"
	colorBox       = "#9cc3e6"
	colorBoxEdge   = "#1f6fb2"
)

// WriteHTML writes r as one self-contained HTML page: settings, totals, login latency and rate
// over time, the latency of each step, failures by class and the step table. The page loads
// nothing: its style sheet and charts (SVG) are inline, and it has no scripts. Every string from
// the results is escaped.
func (r *Results) WriteHTML(w io.Writer) error {
	return reportTemplate.Execute(w, r.htmlPage())
}

// htmlPage is what the template shows, everything formatted.
type htmlPage struct {
	Title      string
	Subtitle   string
	Settings   []keyValue
	Totals     []totalCard
	Drivers    []driverRow
	OverTime   *svgChart
	ByStep     *svgChart
	ErrorChart *svgChart
	Errors     []errorRow
	Failed     int64
	Steps      []stepRow
}

type keyValue struct{ Key, Value string }

type totalCard struct {
	Label, Value, Note string
	Class              string // "good", "bad" or ""
}

type driverRow struct {
	Text string
	Busy bool
}

type errorRow struct {
	Class, Count, Share, Meaning string
}

type stepRow struct {
	Step, Count, Errors, ErrorShare, P50, P90, P99, P999, Max, Mean string
}

func (r *Results) htmlPage() htmlPage {
	s := r.Settings
	p := htmlPage{Title: "edgesim load report"}
	var sub []string
	if s.Model != "" {
		sub = append(sub, s.Model+" model")
	}
	if !r.Started.IsZero() {
		sub = append(sub, r.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if r.Shards > 1 {
		sub = append(sub, fmt.Sprintf("%d shards merged", r.Shards))
	}
	p.Subtitle = strings.Join(sub, " · ")

	add := func(k, v string) {
		if v != "" {
			p.Settings = append(p.Settings, keyValue{k, v})
		}
	}
	add("command", s.Command)
	add("model", s.Model)
	if s.Rate > 0 {
		add("rate asked", fmtRate(s.Rate)+" logins/s")
	}
	if s.Concurrency > 0 {
		add("concurrency", strconv.Itoa(s.Concurrency)+" logins in flight")
	}
	if s.Duration > 0 {
		add("duration asked", fmtSeconds(s.Duration))
	}
	if s.Count > 0 {
		add("logins asked", strconv.FormatInt(s.Count, 10))
	}
	add("steps", joinSteps(s.Steps))
	users := strconv.FormatInt(s.Users, 10)
	if s.Source != "" {
		users += " from " + s.Source
	}
	add("users", users)
	if s.Resume {
		add("sessions", "resumed")
	}
	add("dns", s.DNS)
	add("shard", s.Shard)
	if !r.Started.IsZero() {
		add("run", fmt.Sprintf("%s to %s", r.Started.UTC().Format(time.DateTime), r.Ended.UTC().Format("15:04:05 UTC")))
	}
	for _, e := range s.Extra {
		add("note", e)
	}

	t := r.Totals
	rateNote := ""
	if s.Rate > 0 {
		rateNote = "asked " + fmtRate(s.Rate) + "/s"
	}
	failClass := ""
	if t.Failed > 0 {
		failClass = "bad"
	}
	p.Totals = []totalCard{
		{Label: "requested", Value: strconv.FormatInt(t.Requested, 10), Note: "logins scheduled"},
		{Label: "completed", Value: strconv.FormatInt(t.Completed, 10), Note: percent(t.Completed, t.Requested) + " of requested"},
		{Label: "succeeded", Value: strconv.FormatInt(t.Succeeded, 10), Note: percent(t.Succeeded, t.Completed) + " of completed", Class: "good"},
		{Label: "failed", Value: strconv.FormatInt(t.Failed, 10), Note: percent(t.Failed, t.Completed) + " of completed", Class: failClass},
		{Label: "achieved rate", Value: fmtRate(r.achievedRate()) + "/s", Note: rateNote},
		{Label: "elapsed", Value: fmtSeconds(r.ElapsedSeconds), Note: ""},
	}
	for _, d := range r.Driver {
		p.Drivers = append(p.Drivers, driverRow{Text: driverLine(d), Busy: d.busy()})
	}

	p.OverTime = r.overTimeChart()
	p.ByStep = r.byStepChart()
	p.ErrorChart = r.errorChart()
	p.Failed = t.Failed
	for _, cc := range r.errorsByClass() {
		p.Errors = append(p.Errors, errorRow{
			Class: string(cc.Class), Count: strconv.FormatInt(cc.Count, 10),
			Share: percent(cc.Count, t.Failed), Meaning: ClassMeaning(cc.Class),
		})
	}
	for _, st := range r.Steps {
		q := st.Quantiles
		p.Steps = append(p.Steps, stepRow{
			Step: string(st.Step), Count: strconv.FormatInt(st.Count, 10), Errors: strconv.FormatInt(st.Errors, 10),
			ErrorShare: percent(st.Errors, st.Count),
			P50:        fmtMS(q.P50), P90: fmtMS(q.P90), P99: fmtMS(q.P99), P999: fmtMS(q.P999), Max: fmtMS(q.Max), Mean: fmtMS(q.Mean),
		})
	}
	return p
}

// svgChart is an SVG drawing made of simple marks, drawn in the order grid lines, rectangles,
// paths, circles, texts. Coordinates are formatted numbers.
type svgChart struct {
	W, H    int
	Label   string
	Lines   []svgLine
	Rects   []svgRect
	Paths   []svgPath
	Circles []svgCircle
	Texts   []svgText
}

type svgLine struct {
	X1, Y1, X2, Y2 string
	Class          string // "grid", "axis" or "tick"
}

type svgRect struct {
	X, Y, W, H string
	Fill       string
	Stroke     string
	Series     string // data-series, for marks that show data
	Title      string // tooltip
}

type svgPath struct {
	D      string
	Stroke string
	Width  string
	Dash   string
	Series string
	Title  string
}

type svgCircle struct {
	CX, CY, R string
	Fill      string
	Series    string
	Title     string
}

type svgText struct {
	X, Y   string
	Anchor string // start, middle, end
	Class  string // "label", "title", "small", "value"
	Text   string
}

func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

func (c *svgChart) text(x, y float64, anchor, class, s string) {
	c.Texts = append(c.Texts, svgText{f1(x), f1(y), anchor, class, s})
}

func (c *svgChart) line(x1, y1, x2, y2 float64, class string) {
	c.Lines = append(c.Lines, svgLine{f1(x1), f1(y1), f1(x2), f1(y2), class})
}

// legend draws a row of swatches and labels starting at x, y; it returns where it ended.
func (c *svgChart) legend(x, y float64, items []legendItem) float64 {
	for _, it := range items {
		d := fmt.Sprintf("M%s,%s H%s", f1(x), f1(y-4), f1(x+22))
		c.Paths = append(c.Paths, svgPath{D: d, Stroke: it.color, Width: "2.5", Dash: it.dash})
		c.text(x+28, y, "start", "label", it.label)
		x += 28 + 7.2*float64(len(it.label)) + 22
	}
	return x
}

type legendItem struct{ color, dash, label string }

// linearTicks returns a tick step and the top of an axis from 0 that holds max with about n
// ticks, on 1-2-2.5-5 steps.
func linearTicks(max float64, n int) (step, top float64) {
	if max <= 0 || math.IsNaN(max) || math.IsInf(max, 0) {
		return 1, float64(n)
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	return step, math.Ceil(max/step-1e-9) * step
}

// logAxis is a base-10 log scale between two values of the 1-2-5 sequence.
type logAxis struct {
	lo, hi   float64 // in data units
	from, to float64 // in pixels
}

// oneTwoFive returns the value of the 1-2-5 sequence at or below v (down) or at or above it.
func oneTwoFive(v float64, down bool) float64 {
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	steps := []float64{1, 2, 5, 10}
	if down {
		for i := len(steps) - 1; i >= 0; i-- {
			if steps[i]*mag <= v*1.0001 {
				return steps[i] * mag
			}
		}
		return mag
	}
	for _, m := range steps {
		if m*mag >= v*0.9999 {
			return m * mag
		}
	}
	return 10 * mag
}

// newLogAxis makes an axis that holds min … max with a little room on each side.
func newLogAxis(min, max, from, to float64) logAxis {
	if min <= 0 || math.IsNaN(min) || math.IsInf(min, 0) {
		min = 0.01
	}
	if max < min || math.IsNaN(max) || math.IsInf(max, 0) {
		max = min
	}
	lo := oneTwoFive(min/1.25, true)
	hi := oneTwoFive(max*1.1, false)
	if hi/lo < 10 {
		hi = oneTwoFive(lo*10, false)
	}
	return logAxis{lo: lo, hi: hi, from: from, to: to}
}

func (a logAxis) pos(v float64) float64 {
	v = math.Min(math.Max(v, a.lo), a.hi)
	return a.from + (a.to-a.from)*math.Log10(v/a.lo)/math.Log10(a.hi/a.lo)
}

// ticks returns the values to label: 1, 2 and 5 of each decade when there are few decades,
// powers of ten only (the rest as unlabelled minor lines) when there are many.
func (a logAxis) ticks() (major, minor []float64) {
	few := a.hi/a.lo <= 1001
	for d := math.Pow(10, math.Floor(math.Log10(a.lo))); d <= a.hi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := d * m
			if v < a.lo*0.9999 || v > a.hi*1.0001 {
				continue
			}
			if m == 1 || few {
				major = append(major, v)
			} else {
				minor = append(minor, v)
			}
		}
	}
	return major, minor
}

// fmtTickMS labels a latency tick: "0.5 ms", "20 ms", "1 s".
func fmtTickMS(ms float64) string {
	switch {
	case ms >= 1000:
		return strconv.FormatFloat(ms/1000, 'g', 3, 64) + " s"
	default:
		return strconv.FormatFloat(ms, 'g', 3, 64) + " ms"
	}
}

func fmtTickNumber(v float64) string {
	if v >= 10000 {
		return strconv.FormatFloat(v/1000, 'g', 4, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// overTimeChart draws login latency (p50, p99; log scale) over the run, and below it the logins
// scheduled, completed and failed each second.
func (r *Results) overTimeChart() *svgChart {
	if len(r.Series) == 0 {
		return nil
	}
	const (
		W, H                = 1040, 560
		left, right         = 78, 1010
		latTop, latBottom   = 56.0, 300.0
		rateTop, rateBottom = 378.0, 500.0
	)
	c := &svgChart{W: W, H: H, Label: "login latency p50 and p99 and logins per second over the run"}
	t0 := r.Series[0].Unix
	if !r.Started.IsZero() && r.Started.Unix() < t0 {
		t0 = r.Started.Unix()
	}
	span := float64(r.Series[len(r.Series)-1].Unix - t0 + 1)
	span = math.Max(span, r.ElapsedSeconds)
	xStep, _ := linearTicks(span, 10)
	xTop := span
	xpos := func(sec float64) float64 { return left + (right-left)*sec/xTop }

	// latency panel
	minLat, maxLat := math.Inf(1), 0.0
	maxRate := 0.0
	for _, p := range r.Series {
		if p.Completed > 0 && p.P50 > 0 {
			minLat = math.Min(minLat, p.P50)
			maxLat = math.Max(maxLat, math.Max(p.P50, p.P99))
		}
		maxRate = math.Max(maxRate, float64(max(p.Scheduled, p.Completed, p.Failed)))
	}
	if math.IsInf(minLat, 1) {
		minLat, maxLat = 1, 10
	}
	ya := newLogAxis(minLat, maxLat, latBottom, latTop)
	major, minor := ya.ticks()
	for _, v := range minor {
		c.line(left, ya.pos(v), right, ya.pos(v), "grid minor")
	}
	for _, v := range major {
		y := ya.pos(v)
		c.line(left, y, right, y, "grid")
		c.text(left-8, y+4, "end", "small", fmtTickMS(v))
	}
	c.text(left, 24, "start", "title", "login latency, from intended start (log scale)")
	c.legend(left, 44, []legendItem{{colorP50, "", "p50"}, {colorP99, "", "p99"}})

	// rate panel
	rStep, rTop := linearTicks(maxRate, 4)
	rpos := func(v float64) float64 { return rateBottom - (rateBottom-rateTop)*v/rTop }
	for v := 0.0; v <= rTop+1e-9; v += rStep {
		c.line(left, rpos(v), right, rpos(v), "grid")
		c.text(left-8, rpos(v)+4, "end", "small", fmtTickNumber(v)+"/s")
	}
	c.text(left, 340, "start", "title", "logins per second")
	items := []legendItem{{colorScheduled, "5 4", "scheduled"}, {colorCompleted, "", "completed"}}
	if r.Totals.Failed > 0 {
		items = append(items, legendItem{colorFailed, "", "failed"})
	}
	c.legend(left, 362, items)

	// shared x axis: ticks on both panels, labels under the rate panel
	for v := 0.0; v <= xTop+1e-9; v += xStep {
		x := xpos(v)
		c.line(x, latTop, x, latBottom, "grid")
		c.line(x, rateTop, x, rateBottom, "grid")
		c.text(x, rateBottom+18, "middle", "small", fmtTickNumber(v)+" s")
		c.text(x, latBottom+18, "middle", "small", fmtTickNumber(v)+" s")
	}
	c.line(left, latBottom, right, latBottom, "axis")
	c.line(left, rateBottom, right, rateBottom, "axis")
	c.text((left+right)/2, rateBottom+44, "middle", "label", "seconds since the start of the run")

	// the data: one point per second, at the middle of the second; a second with no data
	// breaks the latency lines
	var p50, p99 pathBuilder
	var sched, done, failed pathBuilder
	prev := int64(math.MinInt64)
	for _, p := range r.Series {
		x := xpos(float64(p.Unix-t0) + 0.5)
		if p.Unix != prev+1 {
			// a gap in the series: the counts were zero in between
			if prev != math.MinInt64 {
				for _, b := range []*pathBuilder{&sched, &done, &failed} {
					b.to(xpos(float64(prev-t0)+1.5), rpos(0))
					b.to(xpos(float64(p.Unix-t0)-0.5), rpos(0))
				}
			}
			p50.breakLine()
			p99.breakLine()
		}
		prev = p.Unix
		if p.Completed > 0 && p.P50 > 0 {
			p50.to(x, ya.pos(p.P50))
			p99.to(x, ya.pos(p.P99))
		} else {
			p50.breakLine()
			p99.breakLine()
		}
		sched.to(x, rpos(float64(p.Scheduled)))
		done.to(x, rpos(float64(p.Completed)))
		failed.to(x, rpos(float64(p.Failed)))
	}
	c.Paths = append(c.Paths,
		svgPath{D: sched.String(), Stroke: colorScheduled, Width: "1.5", Dash: "5 4", Series: "scheduled", Title: "logins scheduled each second"},
		svgPath{D: done.String(), Stroke: colorCompleted, Width: "2", Series: "completed", Title: "logins completed each second"},
	)
	if r.Totals.Failed > 0 {
		c.Paths = append(c.Paths, svgPath{D: failed.String(), Stroke: colorFailed, Width: "1.5", Series: "failed", Title: "logins failed each second"})
	}
	c.Paths = append(c.Paths,
		svgPath{D: p50.String(), Stroke: colorP50, Width: "2", Series: "p50", Title: "median login latency each second"},
		svgPath{D: p99.String(), Stroke: colorP99, Width: "2", Series: "p99", Title: "99th percentile login latency each second"},
	)
	return c
}

// pathBuilder writes an SVG path of straight segments that a break interrupts.
type pathBuilder struct {
	b    strings.Builder
	open bool
}

func (p *pathBuilder) to(x, y float64) {
	if p.open {
		p.b.WriteString(" L")
	} else {
		if p.b.Len() > 0 {
			p.b.WriteByte(' ')
		}
		p.b.WriteString("M")
		p.open = true
	}
	p.b.WriteString(f1(x) + "," + f1(y))
}

func (p *pathBuilder) breakLine() { p.open = false }

func (p *pathBuilder) String() string { return p.b.String() }

// byStepChart draws, for each step, its latency distribution on a log scale: a box from p50 to
// p99, a tick at p90, a whisker to p99.9 and a dot at the maximum.
func (r *Results) byStepChart() *svgChart {
	var steps []StepStats
	for _, s := range r.Steps {
		if s.Count > 0 {
			steps = append(steps, s)
		}
	}
	if len(steps) == 0 {
		return nil
	}
	const (
		W           = 1040
		left, right = 130.0, 800.0
		top, rowH   = 64.0, 36.0
	)
	bottom := top + rowH*float64(len(steps))
	c := &svgChart{W: W, H: int(bottom + 52), Label: "latency distribution of each step"}
	minV, maxV := math.Inf(1), 0.0
	for _, s := range steps {
		q := s.Quantiles
		if q.P50 > 0 {
			minV = math.Min(minV, q.P50)
		}
		maxV = math.Max(maxV, q.Max)
	}
	if math.IsInf(minV, 1) {
		minV, maxV = 1, 10
	}
	xa := newLogAxis(minV, maxV, left, right)
	major, minor := xa.ticks()
	for _, v := range minor {
		c.line(xa.pos(v), top-6, xa.pos(v), bottom, "grid minor")
	}
	for _, v := range major {
		x := xa.pos(v)
		c.line(x, top-6, x, bottom, "grid")
		c.text(x, bottom+18, "middle", "small", fmtTickMS(v))
	}
	c.text((left+right)/2, bottom+42, "middle", "label", "latency (log scale)")
	c.text(right+20, top-12, "start", "small", "p50 · p99 · max, ms")

	// legend: a small sample box with its parts named
	c.text(left, 22, "start", "label", "box: p50 to p99 · tick: p90 · whisker: to p99.9 · dot: max")
	for i, s := range steps {
		q := s.Quantiles
		y := top + rowH*float64(i) + rowH/2
		name := string(s.Step)
		if s.Step == StepLogin {
			name = "login (whole)"
			c.line(left-120, y-rowH/2, right, y-rowH/2, "axis")
		}
		c.text(left-10, y+4, "end", "label", name)
		tip := fmt.Sprintf("%s: p50 %s ms, p90 %s ms, p99 %s ms, p99.9 %s ms, max %s ms (%d runs)",
			s.Step, fmtMS(q.P50), fmtMS(q.P90), fmtMS(q.P99), fmtMS(q.P999), fmtMS(q.Max), s.Count)
		x50, x90, x99, x999, xmax := xa.pos(q.P50), xa.pos(q.P90), xa.pos(q.P99), xa.pos(q.P999), xa.pos(q.Max)
		c.Paths = append(c.Paths,
			svgPath{D: fmt.Sprintf("M%s,%s H%s M%s,%s V%s", f1(x99), f1(y), f1(x999), f1(x999), f1(y-6), f1(y+6)),
				Stroke: colorBoxEdge, Width: "1.5", Series: string(s.Step), Title: tip},
			svgPath{D: fmt.Sprintf("M%s,%s V%s", f1(x90), f1(y-10), f1(y+10)), Stroke: colorBoxEdge, Width: "2", Title: tip},
		)
		c.Rects = append(c.Rects, svgRect{X: f1(x50), Y: f1(y - 10), W: f1(math.Max(x99-x50, 2)), H: "20",
			Fill: colorBox, Stroke: colorBoxEdge, Series: string(s.Step), Title: tip})
		c.Circles = append(c.Circles, svgCircle{CX: f1(xmax), CY: f1(y), R: "3.5", Fill: colorP99, Series: string(s.Step), Title: tip})
		c.text(right+20, y+4, "start", "value", fmt.Sprintf("%s · %s · %s", fmtMS(q.P50), fmtMS(q.P99), fmtMS(q.Max)))
	}
	c.line(left, bottom, right, bottom, "axis")
	return c
}

// errorChart draws a bar per failure class, most frequent first.
func (r *Results) errorChart() *svgChart {
	classes := r.errorsByClass()
	if len(classes) == 0 {
		return nil
	}
	const (
		W           = 1040
		left, right = 150.0, 860.0
		top, rowH   = 12.0, 30.0
	)
	c := &svgChart{W: W, H: int(top + rowH*float64(len(classes)) + 12), Label: "failed logins by class"}
	maxN := float64(classes[0].Count)
	for i, cc := range classes {
		y := top + rowH*float64(i)
		w := (right - left) * float64(cc.Count) / maxN
		c.text(left-10, y+rowH/2+4, "end", "label", string(cc.Class))
		c.Rects = append(c.Rects, svgRect{X: f1(left), Y: f1(y + 5), W: f1(math.Max(w, 1.5)), H: f1(rowH - 10),
			Fill: colorFailed, Series: string(cc.Class), Title: fmt.Sprintf("%s: %d logins, %s", cc.Class, cc.Count, ClassMeaning(cc.Class))})
		c.text(left+w+8, y+rowH/2+4, "start", "value", fmt.Sprintf("%d  (%s)", cc.Count, percent(cc.Count, r.Totals.Failed)))
	}
	c.line(left, top, left, top+rowH*float64(len(classes)), "axis")
	return c
}

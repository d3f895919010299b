package driver

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/net/html"
)

// The realistic results the report tests use: a synthetic open-model run with the latencies,
// failures and per-second shape of a real one, built the way a runner builds Results.

// fakeLogin is one synthetic login.
type fakeLogin struct {
	start time.Time     // intended start
	steps []StepResult  // the steps it ran, the failing one last
	total time.Duration // from intended start to the end of its last step
	class Class         // "" when it succeeded
}

func (l fakeLogin) done() time.Time { return l.start.Add(l.total) }

// fakeRunStart is when every fake run starts.
var fakeRunStart = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// fakeLogins makes rate logins a second for seconds seconds from fakeRunStart: typical MRA step
// latencies, a slowdown of the TLS and XMPP steps between 25 s and 35 s with timeouts at its
// height, and a trickle of refused passwords, wrong certificates and refused connections.
func fakeLogins(seed uint64, rate, seconds int) []fakeLogin {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	// median latency of each step in milliseconds, and the spread of its log-normal
	typical := map[Step]float64{
		StepSRV: 1.2, StepTLS: 14, StepIdentity: 0.35, StepEdgeDomain: 0.04,
		StepEdgeConfig: 22, StepXMPP: 38, StepSIP: 27,
	}
	lognormal := func(median, sigma float64) time.Duration {
		ms := median * math.Exp(sigma*rng.NormFloat64())
		return time.Duration(ms * float64(time.Millisecond))
	}
	var out []fakeLogin
	for sec := 0; sec < seconds; sec++ {
		// the slowdown: a bump that peaks at 30 s
		bump := 1.0
		if sec >= 25 && sec < 35 {
			bump = 1 + 7*math.Sin(math.Pi*float64(sec-25)/10)
		}
		for i := 0; i < rate; i++ {
			l := fakeLogin{start: fakeRunStart.Add(time.Duration(sec)*time.Second + time.Duration(i)*time.Second/time.Duration(rate))}
			l.total = lognormal(0.2, 0.5) // scheduling delay before the first step
			for _, st := range Steps {
				d := lognormal(typical[st], 0.35)
				if st == StepTLS || st == StepXMPP {
					d = time.Duration(float64(d) * bump)
				}
				var class Class
				u := rng.Float64()
				switch {
				case st == StepTLS && bump > 6 && u < 0.04:
					class, d = ClassTimeout, 5*time.Second
				case st == StepTLS && u < 0.0004:
					class = ClassConnect
				case st == StepIdentity && u < 0.002:
					class = ClassNameMismatch
				case st == StepEdgeConfig && u < 0.005:
					class = ClassUnauthorized
				case st == StepXMPP && bump > 4 && u < 0.01:
					class, d = ClassXMPP, d+time.Second
				}
				r := StepResult{Step: st, Duration: d, Verdict: Pass}
				if class != ClassNone {
					r.Verdict, r.Class = Fail, class
				}
				l.steps = append(l.steps, r)
				l.total += d
				if class != ClassNone {
					l.class = class
					break
				}
			}
			out = append(out, l)
		}
	}
	return out
}

// fakeSettings are the settings of a fake run at rate logins a second.
func fakeSettings(rate, seconds int) Settings {
	return Settings{
		Command:  fmt.Sprintf("edgesim load --rate %d --duration %ds --users users.csv --dns 127.0.0.1:5353 --out run.json", rate, seconds),
		Model:    "open",
		Rate:     float64(rate),
		Duration: float64(seconds),
		Steps:    append([]Step(nil), Steps...),
		Users:    10000,
		Source:   "users.csv",
		DNS:      "127.0.0.1:5353",
	}
}

// buildResults aggregates logins into Results as a runner would, for a run from fakeRunStart
// that stops at end: logins not done by then count as requested but not completed.
func buildResults(t testing.TB, set Settings, logins []fakeLogin, end time.Time) *Results {
	t.Helper()
	r := &Results{
		Version:        ResultsVersion,
		Settings:       set,
		Started:        fakeRunStart,
		Ended:          end,
		ElapsedSeconds: end.Sub(fakeRunStart).Seconds(),
		Errors:         map[Class]int64{},
		Shards:         1,
		Driver:         []DriverUsage{{Host: "load-1", Cores: 2, CPUSeconds: 0.38 * 2 * end.Sub(fakeRunStart).Seconds(), CPUPercent: 38, MaxRSSMB: 121.5}},
	}
	hists := map[Step]*StepStats{}
	stepHist := map[Step]*hdrhistogram.Histogram{}
	order := append(append([]Step(nil), set.Steps...), StepLogin)
	for _, st := range order {
		hists[st] = &StepStats{Step: st}
		stepHist[st] = NewHistogram()
	}
	secs := int(math.Ceil(end.Sub(fakeRunStart).Seconds()))
	points := make([]Point, secs)
	pointHist := make([]*hdrhistogram.Histogram, secs)
	for i := range points {
		points[i].Unix = fakeRunStart.Unix() + int64(i)
	}
	record := func(h *hdrhistogram.Histogram, d time.Duration) {
		if err := h.RecordValue(max(d.Microseconds(), 1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range logins {
		r.Totals.Requested++
		s := int(l.start.Sub(fakeRunStart) / time.Second)
		points[s].Scheduled++
		if l.done().After(end) {
			for i := s; i < secs; i++ {
				points[i].InFlight++
			}
			continue
		}
		ds := int(l.done().Sub(fakeRunStart) / time.Second)
		for i := s; i < ds; i++ {
			points[i].InFlight++
		}
		r.Totals.Completed++
		p := &points[ds]
		p.Completed++
		if l.class == ClassNone {
			r.Totals.Succeeded++
			p.Succeeded++
		} else {
			r.Totals.Failed++
			p.Failed++
			r.Errors[l.class]++
			if p.Errors == nil {
				p.Errors = map[Class]int64{}
			}
			p.Errors[l.class]++
		}
		for _, sr := range l.steps {
			hists[sr.Step].Count++
			if sr.Verdict == Fail {
				hists[sr.Step].Errors++
			}
			record(stepHist[sr.Step], sr.Duration)
		}
		hists[StepLogin].Count++
		if l.class != ClassNone {
			hists[StepLogin].Errors++
		}
		record(stepHist[StepLogin], l.total)
		if pointHist[ds] == nil {
			pointHist[ds] = NewHistogram()
		}
		record(pointHist[ds], l.total)
	}
	for _, st := range order {
		h := stepHist[st]
		s := hists[st]
		s.Quantiles = QuantilesOf(h)
		enc, err := EncodeHistogram(h)
		if err != nil {
			t.Fatal(err)
		}
		s.Histogram = enc
		r.Steps = append(r.Steps, *s)
	}
	for i := range points {
		if pointHist[i] == nil {
			continue
		}
		h := pointHist[i]
		q := QuantilesOf(h)
		points[i].P50, points[i].P99 = q.P50, q.P99
		enc, err := EncodeHistogram(h)
		if err != nil {
			t.Fatal(err)
		}
		points[i].Histogram = enc
	}
	r.Series = points
	return r
}

// sampleResults is the realistic run the report tests and the screenshot use: 60 s at 200
// logins a second, stopped 0.5 s after the last was scheduled.
// Each call returns a fresh copy.
func sampleResults(t testing.TB) *Results {
	t.Helper()
	sample.once.Do(func() {
		const rate, seconds = 200, 60
		end := fakeRunStart.Add(seconds*time.Second + 500*time.Millisecond)
		var buf bytes.Buffer
		if err := buildResults(t, fakeSettings(rate, seconds), fakeLogins(1, rate, seconds), end).WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		sample.json = buf.Bytes()
	})
	r, err := ReadResults(bytes.NewReader(sample.json))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sample caches the sample run, as JSON.
var sample struct {
	once sync.Once
	json []byte
}

func TestWriteHTMLStructure(t *testing.T) {
	r := sampleResults(t)
	r.Settings.Command = `edgesim load --users "<script>alert(1)</script>"`
	r.Settings.Extra = []string{`note <b>bold</b> & "quoted"`}
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()

	if strings.Contains(out, "<script>alert(1)</script>") || strings.Contains(out, "<b>bold</b>") {
		t.Error("settings strings are not escaped")
	}
	if !strings.Contains(out, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the escaped command is missing")
	}
	if strings.Contains(strings.ToLower(out), "<script") {
		t.Error("the page has a script element")
	}
	// Self-contained: no reference out of the page but the SVG namespace name.
	rest := strings.ReplaceAll(out, `xmlns="http://www.w3.org/2000/svg"`, "")
	for _, bad := range []string{"http://", "https://", "//fonts", "@import", "url("} {
		if strings.Contains(rest, bad) {
			i := strings.Index(rest, bad)
			t.Errorf("page references %q: …%s…", bad, rest[max(0, i-60):min(len(rest), i+60)])
		}
	}

	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*html.Node{}
	walk(doc, func(n *html.Node) {
		if id := attr(n, "id"); id != "" {
			if byID[id] != nil {
				t.Errorf("id %q used twice", id)
			}
			byID[id] = n
		}
	})
	for _, id := range []string{"settings", "totals", "latency-over-time", "latency-by-step", "errors", "steps"} {
		if byID[id] == nil {
			t.Errorf("no element with id %q", id)
		}
	}
	if n := byID["settings"]; n != nil && !strings.Contains(text(n), "<script>alert(1)</script>") {
		t.Error("#settings does not show the command")
	}
	if n := byID["totals"]; n != nil && !strings.Contains(text(n), fmt.Sprint(r.Totals.Completed)) {
		t.Errorf("#totals does not show %d completed", r.Totals.Completed)
	}

	// Each chart is an SVG with a mark (path, polyline or rect) for each of its data series,
	// each marked with data-series.
	var classes []string
	for c := range r.Errors {
		classes = append(classes, string(c))
	}
	charts := []struct {
		id     string
		series []string
	}{
		{"latency-over-time", []string{"p50", "p99", "completed", "scheduled"}},
		{"latency-by-step", stepNames(r.Steps)},
		{"errors", classes},
	}
	for _, c := range charts {
		n := byID[c.id]
		if n == nil {
			continue
		}
		var svg *html.Node
		walk(n, func(x *html.Node) {
			if svg == nil && x.Type == html.ElementNode && x.Data == "svg" {
				svg = x
			}
		})
		if svg == nil {
			t.Errorf("#%s has no <svg>", c.id)
			continue
		}
		marks := map[string]int{}
		walk(svg, func(x *html.Node) {
			if x.Type == html.ElementNode && (x.Data == "path" || x.Data == "polyline" || x.Data == "rect") {
				if s := attr(x, "data-series"); s != "" {
					marks[s]++
				}
			}
		})
		for _, s := range c.series {
			if marks[s] == 0 {
				t.Errorf("#%s: no path, polyline or rect for series %q (have %v)", c.id, s, marks)
			}
		}
	}
}

func TestWriteHTMLEmpty(t *testing.T) {
	// A run that completed nothing still gives a page, with its sections.
	r := &Results{Version: ResultsVersion, Settings: Settings{Model: "open", Rate: 10}, Shards: 1}
	var buf bytes.Buffer
	if err := r.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{`id="settings"`, `id="totals"`, `id="latency-over-time"`, `id="latency-by-step"`, `id="errors"`} {
		if !strings.Contains(buf.String(), id) {
			t.Errorf("no %s", id)
		}
	}
}

// TestWriteHTMLFile writes the sample report and its results file into the directory
// EDGESIM_REPORT_DIR names, for a person or a screenshot tool to look at:
//
//	EDGESIM_REPORT_DIR=/tmp go test ./driver -run HTMLFile
//	chromium --headless --screenshot=/tmp/report.png --window-size=1200,2700 file:///tmp/report.html
func TestWriteHTMLFile(t *testing.T) {
	dir := os.Getenv("EDGESIM_REPORT_DIR")
	if dir == "" {
		t.Skip("EDGESIM_REPORT_DIR not set")
	}
	var buf bytes.Buffer
	if err := sampleResults(t).WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.html"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := sampleResults(t).WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), js.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func stepNames(ss []StepStats) []string {
	var out []string
	for _, s := range ss {
		out = append(out, string(s.Step))
	}
	return out
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(x *html.Node) {
		if x.Type == html.TextNode {
			b.WriteString(x.Data)
		}
	})
	return b.String()
}

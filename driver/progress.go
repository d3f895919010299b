package driver

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// tally records the progress of a run: totals, errors by class, a histogram per step and the
// per-second series. Safe for concurrent use; recording a login takes one short critical
// section and allocates nothing once the run's histograms exist.
type tally struct {
	start     time.Time // with its monotonic reading; every time is placed by its offset from it
	startUnix int64     // start, Unix nanoseconds

	mu       sync.Mutex
	first    int64   // Unix second of start
	cur      int64   // the second logins are finishing in
	points   []Point // first … cur
	curHist  *hdrhistogram.Histogram
	pending  []closedSecond // seconds closed but not yet encoded
	spare    []closedSecond
	free     []*hdrhistogram.Histogram
	totals   Totals
	inFlight int64
	errors   map[Class]int64
	steps    map[Step]*stepTally
	order    []Step // steps in results order
	login    stepTally
	flights  flight // sentinel of the ring of logins under way
	encErr   error  // histograms that failed to encode, for results
}

// stepTally is one step's count, errors and latency.
type stepTally struct {
	count, errors, resumed int64
	h                      *hdrhistogram.Histogram
}

// closedSecond is a second's login histogram waiting to be encoded into its point.
type closedSecond struct {
	unix int64
	h    *hdrhistogram.Histogram
}

// flight is a login under way, in the tally's ring until it finishes or is abandoned.
type flight struct {
	prev, next *flight
	intended   time.Time
	done       bool
}

func newTally(start time.Time, steps []Step) *tally {
	t := &tally{
		start:     start,
		startUnix: start.UnixNano(),
		errors:    make(map[Class]int64),
		steps:     make(map[Step]*stepTally, len(steps)),
		login:     stepTally{h: NewHistogram()},
	}
	t.first = t.unixSecond(start)
	t.cur = t.first
	t.points = append(make([]Point, 0, 64), Point{Unix: t.first})
	for _, s := range steps {
		t.step(s)
	}
	t.flights.prev, t.flights.next = &t.flights, &t.flights
	return t
}

// unixSecond places at on the run's clock: its Unix second by the monotonic offset from start,
// so a wall-clock step during the run moves nothing.
func (t *tally) unixSecond(at time.Time) int64 {
	ns := t.startUnix + int64(at.Sub(t.start))
	s := ns / 1e9
	if ns < 0 && ns%1e9 != 0 {
		s--
	}
	return s
}

// micros is d in microseconds, clamped to the histograms' range.
func micros(d time.Duration) int64 {
	return min(max(d.Microseconds(), HistMinMicros), HistMaxMicros)
}

// step returns s's tally, adding s to the results order the first time. Called with mu held
// (or before the run starts).
func (t *tally) step(s Step) *stepTally {
	st, ok := t.steps[s]
	if !ok {
		st = &stepTally{h: NewHistogram()}
		t.steps[s] = st
		t.order = append(t.order, s)
	}
	return st
}

// advance moves the current second to sec, closing the seconds in between: their in_flight is
// what is under way now, and their login histograms go to pending. Called with mu held.
func (t *tally) advance(sec int64) {
	for t.cur < sec {
		t.points[len(t.points)-1].InFlight = t.inFlight
		if t.curHist != nil {
			t.pending = append(t.pending, closedSecond{t.cur, t.curHist})
			t.curHist = nil
		}
		t.cur++
		t.points = append(t.points, Point{Unix: t.cur})
	}
}

// begin records that login f started at now.
func (t *tally) begin(f *flight, now time.Time) {
	t.mu.Lock()
	t.advance(t.unixSecond(now))
	f.prev, f.next = t.flights.prev, &t.flights
	f.prev.next, t.flights.prev = f, f
	t.totals.Requested++
	t.inFlight++
	i := min(max(t.unixSecond(f.intended)-t.first, 0), int64(len(t.points)-1))
	t.points[i].Scheduled++
	t.mu.Unlock()
}

// finish records login f, which ended at end with trace tr (nil allowed), and reports whether it
// counted: a login abandoned by the run does not.
func (t *tally) finish(f *flight, tr *Trace, ok bool, class Class, end time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f.done {
		return false
	}
	t.record(f, tr, ok, class, end)
	return true
}

// abandon records every login still under way as failed with ClassCanceled, and returns how
// many there were; when they return, they are ignored.
func (t *tally) abandon(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for t.flights.next != &t.flights {
		t.record(t.flights.next, nil, false, ClassCanceled, now)
		n++
	}
	return n
}

// record counts f as finished. Called with mu held.
func (t *tally) record(f *flight, tr *Trace, ok bool, class Class, end time.Time) {
	f.done = true
	f.prev.next, f.next.prev = f.next, f.prev
	f.prev, f.next = nil, nil
	t.advance(t.unixSecond(end)) // a login that took its time before the lock stays in cur
	t.inFlight--
	p := &t.points[len(t.points)-1]
	t.totals.Completed++
	p.Completed++
	lat := micros(end.Sub(f.intended))
	t.login.count++
	_ = t.login.h.RecordValue(lat)
	if t.curHist == nil {
		t.curHist = t.newHist()
	}
	_ = t.curHist.RecordValue(lat)
	if ok {
		t.totals.Succeeded++
		p.Succeeded++
	} else {
		t.totals.Failed++
		p.Failed++
		t.login.errors++
		t.errors[class]++
		if p.Errors == nil {
			p.Errors = make(map[Class]int64)
		}
		p.Errors[class]++
	}
	if tr == nil {
		return
	}
	for i := range tr.Steps {
		s := &tr.Steps[i]
		if (s.Verdict != Pass && s.Verdict != Fail) || s.Step == StepLogin {
			continue
		}
		st := t.step(s.Step)
		st.count++
		_ = st.h.RecordValue(micros(s.Duration))
		if s.Verdict == Fail {
			st.errors++
		}
		if s.Resumed {
			st.resumed++
		}
	}
}

// newHist returns an empty histogram, reusing one already encoded. Called with mu held.
func (t *tally) newHist() *hdrhistogram.Histogram {
	if n := len(t.free); n > 0 {
		h := t.free[n-1]
		t.free = t.free[:n-1]
		return h
	}
	return NewHistogram()
}

// snapshot is what the live line shows.
type snapshot struct {
	requested, completed, inFlight int64
	errors                         map[Class]int64
	last                           Point // the second just closed, with its quantiles
}

// closeSeconds closes the seconds before now's, encodes their histograms into their points
// (outside the lock, so logins keep being recorded) and returns a snapshot. Encoding errors
// are kept for results.
func (t *tally) closeSeconds(now time.Time) snapshot {
	sec := t.unixSecond(now)
	t.mu.Lock()
	t.advance(sec)
	pend := t.pending
	t.pending = t.spare[:0]
	snap := snapshot{requested: t.totals.Requested, completed: t.totals.Completed, inFlight: t.inFlight}
	snap.errors = make(map[Class]int64, len(t.errors))
	for c, n := range t.errors {
		snap.errors[c] = n
	}
	t.mu.Unlock()

	type enc struct {
		p50, p99 float64
		hist     string
	}
	out := make([]enc, len(pend))
	var errs []error
	for i, c := range pend {
		q := QuantilesOf(c.h)
		s, err := EncodeHistogram(c.h)
		if err != nil {
			errs = append(errs, fmt.Errorf("second %d: %w", c.unix, err))
		}
		out[i] = enc{q.P50, q.P99, s}
		c.h.Reset()
	}

	t.mu.Lock()
	for i, c := range pend {
		p := &t.points[c.unix-t.first]
		p.P50, p.P99, p.Histogram = out[i].p50, out[i].p99, out[i].hist
		t.free = append(t.free, c.h)
	}
	t.spare = pend[:0]
	if i := sec - 1 - t.first; i >= 0 {
		snap.last = t.points[i]
	}
	t.encErr = errors.Join(append([]error{t.encErr}, errs...)...)
	t.mu.Unlock()
	return snap
}

// tick closes each second just after it ends, so the series gets its in_flight and quantiles
// while the run goes on, and writes the live line to Progress. It returns when stop is closed.
func (r *Runner) tick(start time.Time, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	line := liveLine{w: r.cfg.Progress, tty: r.cfg.ProgressTTY, target: r.cfg.Rate, every: r.cfg.ProgressEvery, draining: &r.draining}
	if line.every <= 0 {
		line.every = 10 * time.Second
	}
	defer line.end()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	prevAt, prevRequested := start, int64(0)
	r.cpu.sample(start)
	for {
		// Just after the next Unix second on the run's clock.
		ns := r.tally.startUnix + int64(time.Since(start))
		timer.Reset(time.Duration(1e9 - ns%1e9 + 5e6))
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		now := time.Now()
		r.cpu.sample(now)
		snap := r.tally.closeSeconds(now)
		rate := float64(snap.requested-prevRequested) / now.Sub(prevAt).Seconds()
		prevAt, prevRequested = now, snap.requested
		line.write(now.Sub(start), rate, snap)
	}
}

// liveLine writes the live line: in place each second on a terminal, else every 10 s.
type liveLine struct {
	w        io.Writer
	tty      bool
	target   float64 // logins per second asked for; 0 for the closed model
	written  bool
	every    time.Duration // plain lines: how often
	period   time.Duration // plain lines: the last period one was written in
	draining *atomic.Bool  // scheduling has stopped: only logins in flight are left
}

func (l *liveLine) write(elapsed time.Duration, rate float64, s snapshot) {
	if l.w == nil {
		return
	}
	target := l.target
	if l.draining != nil && l.draining.Load() {
		target = -1
	}
	text := formatLine(elapsed, target, rate, s)
	if l.every <= 0 {
		l.every = 10 * time.Second
	}
	switch {
	case l.tty:
		if w := terminalWidth(l.w); w > 10 && len(text) >= w {
			text = text[:w-2] + "…"
		}
		fmt.Fprintf(l.w, "\r%s\x1b[K", text)
		l.written = true
	case elapsed/l.every > l.period:
		fmt.Fprintln(l.w, text)
		l.written, l.period = true, elapsed/l.every
	}
}

// end ends an in-place line, so what is printed next starts on a line of its own.
func (l *liveLine) end() {
	if l.w != nil && l.tty && l.written {
		fmt.Fprintln(l.w)
	}
}

// formatLine is the live line, like
//
//	12s  started 200/s of 200/s  in flight 14  done 2,390  p50 3.1ms  p99 12.4ms  errors: platform-cert 3, timeout 1
//
// "started" is the rate logins started at over the last second, then the target ("draining"
// once no more start; no target in the closed model), p50 and p99 are those of the logins that
// finished in the last whole second, errors are by class since the start, most frequent first.
func formatLine(elapsed time.Duration, target, rate float64, s snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6s  ", liveElapsed(elapsed))
	switch {
	case target < 0:
		b.WriteString("draining")
	case target > 0:
		fmt.Fprintf(&b, "started %s/s of %s/s", liveRate(rate), liveRate(target))
	default:
		fmt.Fprintf(&b, "started %s/s", liveRate(rate))
	}
	fmt.Fprintf(&b, "  in flight %s  done %s", commas(s.inFlight), commas(s.completed))
	if s.last.Completed > 0 {
		fmt.Fprintf(&b, "  p50 %s  p99 %s", liveMillis(s.last.P50), liveMillis(s.last.P99))
	} else {
		b.WriteString("  p50 -  p99 -")
	}
	if len(s.errors) == 0 {
		return b.String()
	}
	classes := make([]Class, 0, len(s.errors))
	for c := range s.errors {
		classes = append(classes, c)
	}
	sort.Slice(classes, func(i, j int) bool {
		if a, b := s.errors[classes[i]], s.errors[classes[j]]; a != b {
			return a > b
		}
		return classes[i] < classes[j]
	})
	b.WriteString("  errors: ")
	const shown = 4
	for i, c := range classes {
		if i == shown {
			fmt.Fprintf(&b, ", %d more", len(classes)-shown)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		name := string(c)
		if c == ClassNone {
			name = "unclassified"
		}
		fmt.Fprintf(&b, "%s %s", name, commas(s.errors[c]))
	}
	return b.String()
}

func liveElapsed(d time.Duration) string {
	s := max(int64(d.Round(time.Second)/time.Second), 1) // the first tick may come before 0.5 s
	if s < 60 {
		return fmt.Sprintf("%ds", s)
	}
	if s < 3600 {
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm%02ds", s/3600, s/60%60, s%60)
}

func liveRate(r float64) string {
	if r < 10 && r != float64(int64(r)) {
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return commas(int64(math.Round(r)))
}

// liveMillis shows a latency in milliseconds: 0.42ms, 3.1ms, 12.4ms, 1.25s.
func liveMillis(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

// commas writes n with commas: 2,390.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// terminalWidth is the column count of the terminal w writes to, or 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

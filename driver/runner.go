package driver

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero values of RunConfig.
const (
	DefaultMaxInFlight = 10000            // RunConfig.MaxInFlight
	DefaultDrain       = 30 * time.Second // RunConfig.Drain
)

const (
	// defaultAbandonAfter is how long cancelled logins get to return before they are counted as
	// canceled and left behind.
	defaultAbandonAfter = 5 * time.Second
	// sessionCacheSize is the size of each device's TLS session cache with Resume.
	sessionCacheSize = 4
)

// RunConfig configures a Runner. Zero values mean defaults, resolved in one place (NewRunner).
type RunConfig struct {
	Login LoginFunc // required: runs one login
	Users Users     // required: login i goes to Users.At(i % Users.Len())
	// Rate is the open model: logins per second; login i is meant to start at start + i/Rate and
	// its latency counts from then, however late it really starts.
	Rate float64
	// Concurrency is the closed model, used when Rate is 0: this many logins in flight, each
	// starting when the previous one finishes.
	Concurrency int
	// Duration stops scheduling after this long, Count after this many logins. At least one
	// must be set; with both, whichever comes first.
	Duration time.Duration
	Count    int64
	// MaxInFlight caps logins under way in the open model (default DefaultMaxInFlight). When it
	// is reached new logins wait for a slot; their latency still counts from their intended
	// start. Every login due within Duration is requested: those still waiting for a slot Drain
	// after Duration is up (or when ctx is cancelled) fail as ClassCanceled, with the time they
	// waited as their latency, so a saturated edge cannot shorten the run's tail.
	MaxInFlight int
	// Drain is how long logins in flight get to finish once scheduling stops (default
	// DefaultDrain). Then their context is cancelled; a login that then fails, or does not
	// return within 5 s, is counted as a failure of class ClassCanceled.
	Drain time.Duration
	// Resume gives each distinct user (device) its own tls.ClientSessionCache, passed to Login,
	// so its later logins resume TLS sessions. Without it Login gets nil.
	Resume bool
	// Steps are the steps the login runs, in the order Results lists them (default: Steps).
	Steps []Step
	// Progress receives a live line each second (nil: none). With ProgressTTY the line is
	// rewritten in place with \r each second; without it a full line is written every 10 s.
	Progress    io.Writer
	ProgressTTY bool
	// Offset delays every intended start of the open model: shard I of N of a run at rate R
	// starts at I/R, so the shards' logins interleave evenly.
	Offset time.Duration
	// ProgressEvery is how often a plain (not TTY) line is written; default 10 s.
	ProgressEvery time.Duration
	// Registerer receives the driver's metrics (nil: none); see metrics.go.
	Registerer prometheus.Registerer
	// Settings is copied into Results; the fields the Runner knows (model, rate, concurrency,
	// duration, count, steps, resume, users) are filled in from this RunConfig.
	Settings Settings
}

// Runner replays logins at a set arrival rate (open model) or concurrency (closed model) and
// gathers Results. Build one with NewRunner; Run it once. Cancelling Run's context is safe at
// any time: it stops scheduling, gives the logins in flight RunConfig.Drain to finish, and
// Results still come back complete and consistent. Run is the only method; it may be called
// once, and a second call returns an error.
type Runner struct {
	cfg          RunConfig
	steps        []Step
	users        int64
	abandonAfter time.Duration
	metrics      *metrics // nil when there is no Registerer
	ran          atomic.Bool
	tally        *tally
	maxLag       atomic.Int64 // ns a login waited past its intended start before it began
	cpu          cpuPeak      // owned by the ticker goroutine until it is done
	draining     atomic.Bool  // scheduling has stopped

	sessMu   sync.Mutex
	sessions map[string]tls.ClientSessionCache
}

// NewRunner checks cfg, fills in its defaults and registers the driver's metrics on
// cfg.Registerer. The errors are sentences naming the command-line flag at fault.
func NewRunner(cfg RunConfig) (*Runner, error) {
	switch {
	case cfg.Login == nil:
		return nil, errors.New("driver: the run has no login function")
	case cfg.Users == nil || cfg.Users.Len() <= 0:
		return nil, errors.New("driver: there are no users to log in")
	case cfg.Rate < 0:
		return nil, errors.New("driver: --rate must be > 0")
	case cfg.Concurrency < 0:
		return nil, errors.New("driver: --concurrency must be > 0")
	case cfg.Rate > 0 && cfg.Concurrency > 0:
		return nil, errors.New("driver: set --rate (open model) or --concurrency (closed model), not both")
	case cfg.Rate == 0 && cfg.Concurrency == 0:
		return nil, errors.New("driver: set --rate (logins per second) or --concurrency (logins in flight)")
	case cfg.Duration < 0:
		return nil, errors.New("driver: --duration must be > 0")
	case cfg.Count < 0:
		return nil, errors.New("driver: --count must be > 0")
	case cfg.Duration == 0 && cfg.Count == 0:
		return nil, errors.New("driver: set --duration or --count, or both, to bound the run")
	case cfg.MaxInFlight < 0:
		return nil, errors.New("driver: --max-in-flight must be > 0")
	case cfg.Drain < 0:
		return nil, errors.New("driver: --drain must be 0 (the default, 30s) or more")
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Drain == 0 {
		cfg.Drain = DefaultDrain
	}
	r := &Runner{
		cfg:          cfg,
		steps:        append([]Step(nil), cfg.Steps...),
		users:        cfg.Users.Len(),
		abandonAfter: defaultAbandonAfter,
	}
	if len(r.steps) == 0 {
		r.steps = append([]Step(nil), Steps...)
	}
	if cfg.Resume {
		r.sessions = make(map[string]tls.ClientSessionCache)
	}
	if cfg.Registerer != nil {
		m, err := newMetrics(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		r.metrics = m
	}
	return r, nil
}

// Run runs the load until Duration or Count is reached or ctx is cancelled, drains the logins in
// flight and returns the Results. Requested counts the logins due (in the open model, every
// login whose intended start fell within the run), Completed those that finished (Succeeded +
// Failed); a due login that never got a slot counts as failed (ClassCanceled). The error is non-nil
// only if Run was called before or a histogram failed to encode; the Results are returned even
// then, except for a second call.
func (r *Runner) Run(ctx context.Context) (*Results, error) {
	if !r.ran.CompareAndSwap(false, true) {
		return nil, errors.New("driver: a Runner runs once; build another with NewRunner")
	}
	usage := startUsage()
	start := time.Now()
	r.tally = newTally(start, r.steps)

	// Logins outlive ctx by the drain time; they are cancelled only by drain.
	loginCtx, cancelLogins := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelLogins()
	var deadline <-chan time.Time
	if r.cfg.Duration > 0 {
		t := time.NewTimer(r.cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	stopTick, tickDone := make(chan struct{}), make(chan struct{})
	go r.tick(start, stopTick, tickDone)

	var wg sync.WaitGroup
	if r.cfg.Rate > 0 {
		r.metrics.setTarget(r.cfg.Rate)
		r.scheduleOpen(ctx, loginCtx, start, deadline, &wg)
	} else {
		r.scheduleClosed(ctx, loginCtx, deadline, &wg)
	}
	r.metrics.setTarget(0)
	interrupted := ctx.Err() != nil
	r.draining.Store(true)
	r.drain(&wg, cancelLogins)
	close(stopTick)
	<-tickDone

	end := time.Now()
	res, err := r.tally.results(end)
	res.Version = ResultsVersion
	res.Settings = r.settings()
	res.Started = start.Round(0)
	res.Ended = start.Add(end.Sub(start)).Round(0)
	res.ElapsedSeconds = end.Sub(start).Seconds()
	du := usage.stop(end.Sub(start))
	du.PeakCPUPercent = max(r.cpu.peak, du.CPUPercent)
	du.MaxLagMS = float64(r.maxLag.Load()) / 1e6
	res.Driver = []DriverUsage{du}
	res.Shards = 1
	res.Interrupted = interrupted
	return res, err
}

// scheduleOpen starts login i at start + i/Rate, on a timer, and every login already due at
// once. It returns when the run's bound is reached, ctx is cancelled, or Duration is up while it
// waits for a slot under MaxInFlight.
func (r *Runner) scheduleOpen(ctx, loginCtx context.Context, start time.Time, deadline <-chan time.Time, wg *sync.WaitGroup) {
	slots := make(chan struct{}, r.cfg.MaxInFlight)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var giveUp *time.Timer // runs from the end of Duration while logins wait for slots
	defer func() {
		if giveUp != nil {
			giveUp.Stop()
		}
	}()
	for i := int64(0); r.cfg.Count == 0 || i < r.cfg.Count; i++ {
		offset := r.due(i)
		if r.cfg.Duration > 0 && offset >= r.cfg.Duration {
			return
		}
		intended := start.Add(offset)
		if wait := time.Until(intended); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		if !r.acquire(ctx, slots, deadline, &giveUp) {
			r.neverStarted(start, i, ctx.Err() != nil)
			return
		}
		if lag := int64(time.Since(intended)); lag > r.maxLag.Load() {
			r.maxLag.Store(lag) // only this goroutine writes
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runOne(loginCtx, i, intended)
			<-slots
		}()
	}
}

// acquire takes a slot under MaxInFlight. When Duration ends while it waits, logins already due
// may still start for Drain more; it returns false when that runs out or ctx is cancelled.
func (r *Runner) acquire(ctx context.Context, slots chan struct{}, deadline <-chan time.Time, giveUp **time.Timer) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	for {
		var up <-chan time.Time
		if *giveUp != nil {
			up = (*giveUp).C
		}
		select {
		case slots <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		case <-up:
			return false
		case <-deadline:
			deadline = nil
			if *giveUp == nil {
				*giveUp = time.NewTimer(r.cfg.Drain)
			}
		}
	}
}

// due is when login i is meant to start, from the start of the run (open model).
func (r *Runner) due(i int64) time.Duration {
	return r.cfg.Offset + time.Duration(float64(i)*float64(time.Second)/r.cfg.Rate)
}

// neverStarted counts the logins from i on that were due (all of those within Duration, or
// only those due by now when the run was cancelled) but never got a slot: requested, failed as
// ClassCanceled, their latency the time they waited.
func (r *Runner) neverStarted(start time.Time, i int64, canceled bool) {
	now := time.Now()
	for ; r.cfg.Count == 0 || i < r.cfg.Count; i++ {
		offset := r.due(i)
		intended := start.Add(offset)
		if r.cfg.Duration > 0 && offset >= r.cfg.Duration || intended.After(now) {
			return
		}
		f := &flight{intended: intended}
		r.tally.begin(f, now)
		r.metrics.begin()
		tr := &Trace{User: r.cfg.Users.At(i % r.users), Start: intended, Failed: StepLogin, Class: ClassCanceled}
		if r.tally.finish(f, tr, false, ClassCanceled, now) {
			r.metrics.finish(tr, false, ClassCanceled, now.Sub(intended))
		}
	}
}

// scheduleClosed runs Concurrency workers, each starting a login when its last one finishes,
// and returns when the bound is reached or ctx is cancelled. Workers finish the login under way.
func (r *Runner) scheduleClosed(ctx, loginCtx context.Context, deadline <-chan time.Time, wg *sync.WaitGroup) {
	stop := make(chan struct{})
	var next atomic.Int64
	var workers sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Add(1)
		workers.Add(1)
		go func() {
			defer wg.Done()
			defer workers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := next.Add(1) - 1
				if r.cfg.Count > 0 && i >= r.cfg.Count {
					return
				}
				r.runOne(loginCtx, i, time.Now())
			}
		}()
	}
	idle := make(chan struct{})
	go func() { workers.Wait(); close(idle) }()
	select {
	case <-ctx.Done():
	case <-deadline:
	case <-idle:
	}
	close(stop)
}

// drain waits Drain for the logins in flight, then cancels them, waits abandonAfter more, and
// counts any still running as canceled.
func (r *Runner) drain(wg *sync.WaitGroup, cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(r.cfg.Drain)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	cancel()
	t.Reset(r.abandonAfter)
	select {
	case <-done:
		return
	case <-t.C:
	}
	r.metrics.abandon(r.tally.abandon(time.Now()))
}

// runOne runs login i, meant to start at intended, and records it.
func (r *Runner) runOne(ctx context.Context, i int64, intended time.Time) {
	user := r.cfg.Users.At(i % r.users)
	var sessions tls.ClientSessionCache
	if r.cfg.Resume {
		sessions = r.sessionCache(user)
	}
	f := &flight{intended: intended}
	r.tally.begin(f, time.Now())
	r.metrics.begin()
	tr := r.cfg.Login(ctx, user, sessions)
	end := time.Now()
	ok, class := outcome(tr, ctx.Err() != nil)
	if r.tally.finish(f, tr, ok, class, end) {
		r.metrics.finish(tr, ok, class, end.Sub(intended))
	}
}

// outcome says whether a login succeeded and, if not, its class. A login that fails after the
// run cancelled it is ClassCanceled whatever it says; a nil trace is a failure.
func outcome(tr *Trace, canceled bool) (bool, Class) {
	switch {
	case tr != nil && tr.OK:
		return true, ClassNone
	case canceled:
		return false, ClassCanceled
	case tr == nil:
		return false, ClassNone
	}
	return false, tr.Class
}

// sessionCache returns user's TLS session cache, made on first use.
func (r *Runner) sessionCache(user string) tls.ClientSessionCache {
	r.sessMu.Lock()
	defer r.sessMu.Unlock()
	c, ok := r.sessions[user]
	if !ok {
		c = tls.NewLRUClientSessionCache(sessionCacheSize)
		r.sessions[user] = c
	}
	return c
}

// settings is cfg.Settings with what the Runner knows filled in.
func (r *Runner) settings() Settings {
	s := r.cfg.Settings
	s.Model, s.Rate, s.Concurrency = "open", r.cfg.Rate, 0
	if r.cfg.Rate == 0 {
		s.Model, s.Concurrency = "closed", r.cfg.Concurrency
	}
	s.Duration = r.cfg.Duration.Seconds()
	s.Count = r.cfg.Count
	s.Steps = append([]Step(nil), r.steps...)
	s.Resume = r.cfg.Resume
	s.Users = r.users
	s.Extra = append([]string(nil), s.Extra...)
	return s
}

// results (the tally's, here beside the Run that calls it) closes the run at end and returns its Results without the run's settings, times and
// usage, which the Runner fills in. Call it once, after every login has finished or been
// abandoned and closeSeconds has returned for the last time.
func (t *tally) results(end time.Time) (*Results, error) {
	t.mu.Lock()
	t.advance(t.unixSecond(end))
	t.points[len(t.points)-1].InFlight = t.inFlight
	if t.curHist != nil {
		t.pending = append(t.pending, closedSecond{t.cur, t.curHist})
		t.curHist = nil
	}
	t.mu.Unlock()
	t.closeSeconds(end)

	t.mu.Lock()
	defer t.mu.Unlock()
	err := t.encErr
	res := &Results{
		Totals: t.totals,
		Errors: make(map[Class]int64, len(t.errors)),
		Series: append([]Point(nil), t.points...),
	}
	for c, n := range t.errors {
		res.Errors[c] = n
	}
	stats := func(s Step, st *stepTally) StepStats {
		h, e := EncodeHistogram(st.h)
		err = errors.Join(err, e)
		return StepStats{Step: s, Count: st.count, Errors: st.errors, Resumed: st.resumed, Quantiles: QuantilesOf(st.h), Histogram: h}
	}
	for _, s := range t.order {
		res.Steps = append(res.Steps, stats(s, t.steps[s]))
	}
	res.Steps = append(res.Steps, stats(StepLogin, &t.login))
	return res, err
}

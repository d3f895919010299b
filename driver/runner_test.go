package driver

import (
	"bytes"
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sleepLogin is a login that takes d (two steps of d/2) and succeeds, or fails with
// ClassTimeout if its context is cancelled first.
func sleepLogin(d time.Duration) LoginFunc {
	return func(ctx context.Context, user string, _ tls.ClientSessionCache) *Trace {
		t := &Trace{User: user, Start: time.Now()}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			t.Steps = []StepResult{{Step: StepSRV, Verdict: Fail, Class: ClassTimeout, Duration: time.Since(t.Start)}}
			t.Failed, t.Class = StepSRV, ClassTimeout
			return t
		}
		t.Steps = []StepResult{
			{Step: StepSRV, Verdict: Pass, Duration: d / 2},
			{Step: StepTLS, Verdict: Pass, Duration: d / 2},
			{Step: StepIdentity, Verdict: Skip},
		}
		t.OK, t.Elapsed = true, time.Since(t.Start)
		return t
	}
}

// classLogin fails users whose name starts with a class ("platform-cert7@example.com") at the
// tls step with that class, and passes the others at once.
func classLogin(ctx context.Context, user string, _ tls.ClientSessionCache) *Trace {
	t := &Trace{User: user, Steps: []StepResult{{Step: StepSRV, Verdict: Pass, Duration: time.Millisecond}}}
	for _, c := range []Class{ClassPlatformCert, ClassTimeout} {
		if strings.HasPrefix(user, string(c)) {
			t.Steps = append(t.Steps,
				StepResult{Step: StepTLS, Verdict: Fail, Class: c, Duration: 2 * time.Millisecond},
				StepResult{Step: StepIdentity, Verdict: Skip})
			t.Failed, t.Class = StepTLS, c
			return t
		}
	}
	t.Steps = append(t.Steps,
		StepResult{Step: StepTLS, Verdict: Pass, Duration: 2 * time.Millisecond},
		StepResult{Step: StepIdentity, Verdict: Pass, Duration: time.Microsecond})
	t.OK = true
	return t
}

var testUsers = UserList{"alice@example.com", "bob@example.com", "carol@example.com"}

func runFor(t *testing.T, ctx context.Context, cfg RunConfig) *Results {
	t.Helper()
	if cfg.Users == nil {
		cfg.Users = testUsers
	}
	r, err := NewRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, res)
	return res
}

// checkConsistent checks that the totals, errors, steps and series of res agree.
func checkConsistent(t *testing.T, res *Results) {
	t.Helper()
	tot := res.Totals
	if tot.Completed != tot.Succeeded+tot.Failed || tot.Completed > tot.Requested {
		t.Errorf("totals inconsistent: %+v", tot)
	}
	var errSum int64
	for _, n := range res.Errors {
		errSum += n
	}
	if errSum != tot.Failed {
		t.Errorf("errors by class add to %d, failed = %d", errSum, tot.Failed)
	}
	login := res.Steps[len(res.Steps)-1]
	if login.Step != StepLogin || login.Count != tot.Completed || login.Errors != tot.Failed {
		t.Errorf("login step %+v, totals %+v", login, tot)
	}
	if h, err := DecodeHistogram(login.Histogram); err != nil || h.TotalCount() != tot.Completed {
		t.Errorf("login histogram: %v, count %d, want %d", err, h.TotalCount(), tot.Completed)
	}
	var sum Totals
	var histSum int64
	perSecErrors := map[Class]int64{}
	for i, p := range res.Series {
		if i > 0 && p.Unix != res.Series[i-1].Unix+1 {
			t.Errorf("series jumps from %d to %d", res.Series[i-1].Unix, p.Unix)
		}
		sum.Requested += p.Scheduled
		sum.Completed += p.Completed
		sum.Succeeded += p.Succeeded
		sum.Failed += p.Failed
		for c, n := range p.Errors {
			perSecErrors[c] += n
		}
		h, err := DecodeHistogram(p.Histogram)
		if err != nil {
			t.Fatal(err)
		}
		if h.TotalCount() != p.Completed {
			t.Errorf("second %d: histogram holds %d, completed %d", p.Unix, h.TotalCount(), p.Completed)
		}
		histSum += h.TotalCount()
	}
	if sum != tot {
		t.Errorf("series add to %+v, totals %+v", sum, tot)
	}
	for c, n := range res.Errors {
		if perSecErrors[c] != n {
			t.Errorf("class %s: series add to %d, errors %d", c, perSecErrors[c], n)
		}
	}
	if n := len(res.Series); n == 0 || res.Series[n-1].InFlight != tot.Requested-tot.Completed {
		t.Errorf("last second's in_flight is not what was left: %+v", res.Series)
	}
	if res.Series[0].Unix != res.Started.Unix() {
		t.Errorf("series starts at %d, run at %d", res.Series[0].Unix, res.Started.Unix())
	}
	if res.Version != ResultsVersion || res.Shards != 1 || len(res.Driver) != 1 || res.Driver[0].Cores < 1 {
		t.Errorf("version %d, shards %d, driver %+v", res.Version, res.Shards, res.Driver)
	}
	if !res.Ended.After(res.Started) || res.ElapsedSeconds <= 0 {
		t.Errorf("started %v, ended %v, elapsed %v", res.Started, res.Ended, res.ElapsedSeconds)
	}
}

func TestRunnerOpenRate(t *testing.T) {
	var progress bytes.Buffer
	res := runFor(t, t.Context(), RunConfig{
		Login: sleepLogin(5 * time.Millisecond), Rate: 200, Duration: 2 * time.Second,
		Steps: []Step{StepSRV, StepTLS, StepIdentity}, Progress: &progress, ProgressTTY: true,
		Settings: Settings{Command: "edgesim load --rate 200", Source: "test"},
	})
	if res.Totals.Requested != 400 || res.Totals.Completed != 400 || res.Totals.Succeeded != 400 {
		t.Errorf("totals %+v, want 400 requested and succeeded", res.Totals)
	}
	var names []Step
	for _, s := range res.Steps {
		names = append(names, s.Step)
	}
	if got := joinSteps(names); got != "srv,tls,identity,login" {
		t.Errorf("steps %s", got)
	}
	if s := res.Steps[0]; s.Count != 400 || s.Quantiles.P50 < 2 || s.Quantiles.P50 > 3 {
		t.Errorf("srv step %+v, want 400 runs of 2.5ms", s)
	}
	if s := res.Steps[2]; s.Count != 0 || s.Histogram != "" {
		t.Errorf("identity was skipped every time, got %+v", s)
	}
	if q := res.Steps[3].Quantiles; q.P50 < 5 || q.P50 > 100 {
		t.Errorf("login p50 %vms, want about 5ms", q.P50)
	}
	st := res.Settings
	if st.Model != "open" || st.Rate != 200 || st.Duration != 2 || st.Users != 3 || st.Command == "" || st.Source != "test" || len(st.Steps) != 3 {
		t.Errorf("settings %+v", st)
	}
	out := progress.String()
	if !strings.HasPrefix(out, "\r") || !strings.Contains(out, "of 200/s") || !strings.Contains(out, "done ") || !strings.HasSuffix(out, "\n") {
		t.Errorf("progress %q", out)
	}
}

// TestRunnerCoordinatedOmission: one login at a time, each taking 200 ms, asked for at 50/s.
// The logins queue behind each other and their latency, counted from when each was meant to
// start, grows by 180 ms a login; a driver that timed from the real start would see 200 ms.
func TestRunnerCoordinatedOmission(t *testing.T) {
	// 50 logins due over 1 s, each taking 40 ms, one at a time: the queue grows by 20 ms per
	// login. Login k is due at 20k ms and ends at 40(k+1) ms.
	const took = 40 * time.Millisecond
	res := runFor(t, t.Context(), RunConfig{
		Login: sleepLogin(took), Rate: 50, Duration: time.Second, MaxInFlight: 1, Drain: 5 * time.Second,
	})
	if res.Totals.Requested != 50 || res.Totals.Completed != 50 || res.Totals.Succeeded != 50 {
		t.Fatalf("totals %+v, want all 50 logins due within the second requested and run", res.Totals)
	}
	login := res.Steps[len(res.Steps)-1].Quantiles
	if login.Max < 0.97*1020 || login.Max > 1020+150 {
		t.Errorf("login max %.0fms, want about 1020ms", login.Max)
	}
	if login.P50 < 400 || login.P99 < 900 {
		t.Errorf("login p50 %.0fms p99 %.0fms: latency is not counted from the intended start", login.P50, login.P99)
	}
	if srv := res.Steps[0].Quantiles; srv.Max > 2*float64(took/time.Millisecond) {
		t.Errorf("srv max %.0fms: a step's own latency should not include the queue", srv.Max)
	}
}

// Logins still waiting for a slot when the drain after Duration runs out are not dropped: they
// are requested and fail as canceled, with the time they waited as their latency.
func TestRunnerNeverStarted(t *testing.T) {
	res := runFor(t, t.Context(), RunConfig{
		Login: sleepLogin(40 * time.Millisecond), Rate: 50, Duration: time.Second, MaxInFlight: 1, Drain: 200 * time.Millisecond,
	})
	tot := res.Totals
	if tot.Requested != 50 || tot.Completed != 50 || tot.Succeeded+tot.Failed != 50 {
		t.Fatalf("totals %+v, want 50 requested and completed", tot)
	}
	// About 30 logins run in 1.2 s; the other 20 never start.
	if tot.Failed < 10 || tot.Failed > 30 || res.Errors[ClassCanceled] != tot.Failed {
		t.Errorf("totals %+v, errors %v: want about 20 canceled logins", tot, res.Errors)
	}
	if max := res.Steps[len(res.Steps)-1].Quantiles.Max; max < 150 {
		t.Errorf("login max %.0fms: the waiting of the logins never started is not counted", max)
	}
}

func TestRunnerClosed(t *testing.T) {
	var now, most atomic.Int64
	login := func(ctx context.Context, user string, s tls.ClientSessionCache) *Trace {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		defer now.Add(-1)
		return sleepLogin(time.Millisecond)(ctx, user, s)
	}
	res := runFor(t, t.Context(), RunConfig{Login: login, Concurrency: 4, Count: 100})
	if res.Totals.Requested != 100 || res.Totals.Succeeded != 100 {
		t.Errorf("totals %+v, want 100", res.Totals)
	}
	if m := most.Load(); m > 4 || m < 2 {
		t.Errorf("%d logins at once, want 4", m)
	}
	if s := res.Settings; s.Model != "closed" || s.Concurrency != 4 || s.Rate != 0 || s.Count != 100 {
		t.Errorf("settings %+v", s)
	}
}

func TestRunnerBounds(t *testing.T) {
	tests := []struct {
		name string
		cfg  RunConfig
		want int64
	}{
		{"count", RunConfig{Rate: 2000, Count: 50}, 50},
		{"count before duration", RunConfig{Rate: 2000, Count: 30, Duration: time.Hour}, 30},
		{"duration before count", RunConfig{Rate: 100, Count: 1000, Duration: 300 * time.Millisecond}, 30},
		{"closed count", RunConfig{Concurrency: 3, Count: 7}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Login = classLogin
			res := runFor(t, t.Context(), tt.cfg)
			if res.Totals.Requested != tt.want || res.Totals.Completed != tt.want {
				t.Errorf("totals %+v, want %d", res.Totals, tt.want)
			}
		})
	}
}

func TestRunnerCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var calls atomic.Int64
	slow := sleepLogin(10 * time.Millisecond)
	login := func(lctx context.Context, user string, s tls.ClientSessionCache) *Trace {
		if calls.Add(1) == 100 {
			cancel() // Ctrl-C: stop scheduling, let these finish
		}
		return slow(lctx, user, s)
	}
	start := time.Now()
	res := runFor(t, ctx, RunConfig{Login: login, Rate: 1000, Duration: time.Minute})
	if time.Since(start) > 10*time.Second {
		t.Errorf("run took %v after cancel", time.Since(start))
	}
	tot := res.Totals
	if tot.Requested < 100 || tot.Requested > 200 || tot.Completed != tot.Requested || tot.Failed != 0 {
		t.Errorf("totals %+v: want about 100 started, all finished within the drain", tot)
	}
}

func TestRunnerDrainCancels(t *testing.T) {
	res := runFor(t, t.Context(), RunConfig{
		Login: sleepLogin(time.Hour), Rate: 1000, Count: 10, Drain: 50 * time.Millisecond,
	})
	if tot := res.Totals; tot.Completed != 10 || tot.Failed != 10 || res.Errors[ClassCanceled] != 10 || len(res.Errors) != 1 {
		t.Errorf("totals %+v, errors %v: want 10 canceled", tot, res.Errors)
	}
}

func TestRunnerAbandons(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	deaf := func(context.Context, string, tls.ClientSessionCache) *Trace {
		<-release // ignores its context
		return &Trace{OK: true}
	}
	r, err := NewRunner(RunConfig{Login: deaf, Users: testUsers, Rate: 1000, Count: 10, Drain: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.abandonAfter = 20 * time.Millisecond
	res, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, res)
	if tot := res.Totals; tot.Completed != 10 || tot.Failed != 10 || res.Errors[ClassCanceled] != 10 {
		t.Errorf("totals %+v, errors %v: want 10 canceled", tot, res.Errors)
	}
	if _, err := r.Run(t.Context()); err == nil {
		t.Error("a second Run worked")
	}
}

func TestRunnerResume(t *testing.T) {
	for _, resume := range []bool{true, false} {
		var mu sync.Mutex
		seen := map[string][]tls.ClientSessionCache{}
		login := func(_ context.Context, user string, s tls.ClientSessionCache) *Trace {
			mu.Lock()
			seen[user] = append(seen[user], s)
			mu.Unlock()
			return &Trace{OK: true}
		}
		runFor(t, t.Context(), RunConfig{Login: login, Concurrency: 2, Count: 12, Resume: resume})
		owner := map[tls.ClientSessionCache]string{}
		for user, caches := range seen {
			if len(caches) != 4 {
				t.Errorf("%s logged in %d times, want 4", user, len(caches))
			}
			for _, c := range caches {
				switch {
				case !resume && c != nil:
					t.Errorf("resume off: %s got a session cache", user)
				case resume && c == nil:
					t.Errorf("resume on: %s got no session cache", user)
				case resume && c != caches[0]:
					t.Errorf("%s got two different caches", user)
				case resume && owner[c] != "" && owner[c] != user:
					t.Errorf("%s and %s share a cache", user, owner[c])
				}
				owner[c] = user
			}
		}
	}
}

func TestRunnerErrorsByClass(t *testing.T) {
	users := UserList{"ok@example.com", "platform-cert@example.com", "timeout@example.com", "ok2@example.com"}
	res := runFor(t, t.Context(), RunConfig{Login: classLogin, Users: users, Concurrency: 2, Count: 100})
	want := map[Class]int64{ClassPlatformCert: 25, ClassTimeout: 25}
	if len(res.Errors) != len(want) || res.Errors[ClassPlatformCert] != 25 || res.Errors[ClassTimeout] != 25 {
		t.Errorf("errors %v, want %v", res.Errors, want)
	}
	counts := map[Step][2]int64{}
	for _, s := range res.Steps {
		counts[s.Step] = [2]int64{s.Count, s.Errors}
	}
	wantCounts := map[Step][2]int64{StepSRV: {100, 0}, StepTLS: {100, 50}, StepIdentity: {50, 0}, StepLogin: {100, 50}}
	for s, c := range wantCounts {
		if counts[s] != c {
			t.Errorf("step %s ran/failed %v, want %v", s, counts[s], c)
		}
	}
}

func TestNewRunnerErrors(t *testing.T) {
	ok := RunConfig{Login: classLogin, Users: testUsers, Rate: 10, Duration: time.Second}
	tests := []struct {
		name string
		edit func(*RunConfig)
		want string
	}{
		{"no login", func(c *RunConfig) { c.Login = nil }, "no login function"},
		{"no users", func(c *RunConfig) { c.Users = UserList{} }, "no users"},
		{"negative rate", func(c *RunConfig) { c.Rate = -1 }, "--rate must be > 0"},
		{"neither model", func(c *RunConfig) { c.Rate = 0 }, "set --rate"},
		{"both models", func(c *RunConfig) { c.Concurrency = 3 }, "not both"},
		{"unbounded", func(c *RunConfig) { c.Duration = 0 }, "--duration or --count"},
		{"negative count", func(c *RunConfig) { c.Count = -1 }, "--count must be > 0"},
		{"negative in flight", func(c *RunConfig) { c.MaxInFlight = -1 }, "--max-in-flight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := NewRunner(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := NewRunner(ok); err != nil {
		t.Errorf("good config: %v", err)
	}
}

// BenchmarkRunnerRecord measures what the Runner adds to each login: starting and finishing it
// in the tally, for a login of seven passing steps.
func BenchmarkRunnerRecord(b *testing.B) {
	start := time.Now()
	tl := newTally(start, Steps)
	tr := &Trace{OK: true}
	for i, s := range Steps {
		tr.Steps = append(tr.Steps, StepResult{Step: s, Verdict: Pass, Duration: time.Duration(i+1) * time.Millisecond})
	}
	end := start.Add(20 * time.Millisecond)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f := flight{intended: start}
			tl.begin(&f, start)
			tl.finish(&f, tr, true, ClassNone, end)
		}
	})
}

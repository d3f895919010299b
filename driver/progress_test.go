package driver

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	snap := func(inFlight, done int64, last Point, errs map[Class]int64) snapshot {
		return snapshot{inFlight: inFlight, completed: done, last: last, errors: errs}
	}
	tests := []struct {
		name         string
		elapsed      time.Duration
		target, rate float64
		snap         snapshot
		want         string
	}{
		{
			"open", 12 * time.Second, 200, 200,
			snap(14, 2390, Point{Completed: 190, P50: 3.1, P99: 12.4}, map[Class]int64{ClassTimeout: 1, ClassPlatformCert: 3}),
			"   12s  started 200/s of 200/s  in flight 14  done 2,390  p50 3.1ms  p99 12.4ms  errors: platform-cert 3, timeout 1",
		},
		{
			"closed, nothing finished last second", 75 * time.Second, 0, 183.4,
			snap(4, 1234567, Point{}, nil),
			" 1m15s  started 183/s  in flight 4  done 1,234,567  p50 -  p99 -",
		},
		{
			"slow and fractional", 2 * time.Second, 0.5, 0,
			snap(1, 0, Point{Completed: 1, P50: 0.42, P99: 1250}, nil),
			"    2s  started 0/s of 0.5/s  in flight 1  done 0  p50 0.42ms  p99 1.25s",
		},
		{
			"many classes", time.Second, 10, 10,
			snap(0, 9, Point{Completed: 9, P50: 1, P99: 1}, map[Class]int64{
				ClassConnect: 1, ClassExpired: 1, ClassHTTP: 2, ClassSIP: 1, ClassXMPP: 1, ClassNone: 3}),
			"    1s  started 10/s of 10/s  in flight 0  done 9  p50 1.0ms  p99 1.0ms  errors: unclassified 3, http 2, connect 1, expired 1, 2 more",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatLine(tt.elapsed, tt.target, tt.rate, tt.snap); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestProgressWrites(t *testing.T) {
	var plain, tty bytes.Buffer
	lines := []*liveLine{{w: &plain}, {w: &tty, tty: true}, {}}
	for s := 1; s <= 25; s++ {
		for _, l := range lines {
			l.write(time.Duration(s)*time.Second+300*time.Millisecond, 5, snapshot{})
		}
	}
	for _, l := range lines {
		l.end()
	}
	if got := strings.Count(plain.String(), "\n"); got != 2 || strings.Contains(plain.String(), "\r") {
		t.Errorf("not a terminal: want a line at 10s and 20s, got %q", plain.String())
	}
	if !strings.HasPrefix(plain.String(), "   10s") {
		t.Errorf("first plain line %q", plain.String())
	}
	if got := strings.Count(tty.String(), "\r"); got != 25 || !strings.HasSuffix(tty.String(), "\n") {
		t.Errorf("terminal: want 25 rewrites and a final newline, got %q", tty.String())
	}
}

func TestProgressSeconds(t *testing.T) {
	// The run starts half way through second 1000.
	start := time.Unix(1000, 500e6)
	tl := newTally(start, []Step{StepSRV})
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	f1, f2, f3 := &flight{intended: at(0)}, &flight{intended: at(100)}, &flight{intended: at(200)}
	tl.begin(f1, at(0))
	tl.begin(f2, at(100))
	tl.finish(f1, &Trace{OK: true}, true, ClassNone, at(300))
	snap := tl.closeSeconds(at(600)) // just after second 1000
	if snap.last.Unix != 1000 || snap.last.Completed != 1 || snap.last.P50 < 299.5 || snap.last.P50 > 300.5 || snap.inFlight != 1 {
		t.Errorf("snapshot %+v", snap)
	}
	tl.begin(f3, at(1700)) // started late, in 1002: scheduled in 1000 by its intended start
	tl.finish(f2, &Trace{Class: ClassTimeout}, false, ClassTimeout, at(2600))
	tl.finish(f3, &Trace{OK: true}, true, ClassNone, at(2700))
	if tl.finish(f3, &Trace{OK: true}, true, ClassNone, at(2800)) {
		t.Error("a login was recorded twice")
	}
	snap = tl.closeSeconds(at(3600))
	if tl.encErr != nil {
		t.Fatal(tl.encErr)
	}
	want := []Point{
		{Unix: 1000, Scheduled: 3, Completed: 1, Succeeded: 1, InFlight: 1},
		{Unix: 1001, InFlight: 1},
		{Unix: 1002, InFlight: 2},
		{Unix: 1003, Completed: 2, Succeeded: 1, Failed: 1},
	}
	for i, w := range want {
		p := tl.points[i]
		if p.Unix != w.Unix || p.Scheduled != w.Scheduled || p.Completed != w.Completed || p.Succeeded != w.Succeeded || p.Failed != w.Failed || p.InFlight != w.InFlight {
			t.Errorf("second %d: got %+v, want %+v", i, p, w)
		}
	}
	if p := tl.points[3]; p.Errors[ClassTimeout] != 1 || p.Histogram == "" || p.P50 < 2490 || p.P99 > 2510 {
		t.Errorf("fourth second %+v: want two logins of 2.5s", p)
	}
	if snap.errors[ClassTimeout] != 1 || snap.completed != 3 || snap.requested != 3 || snap.last.Unix != 1003 {
		t.Errorf("snapshot %+v", snap)
	}
}

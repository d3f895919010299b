package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesim/edgesim/driver"
)

// shardFile writes a small results file for shard i (1-based) of 2 and returns its path:
// n logins, the first failed ones refused by the edge, each step's latency base+j µs.
func shardFile(t *testing.T, dir string, i int, n, failed int64, base int64) string {
	t.Helper()
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	r := &driver.Results{
		Version: driver.ResultsVersion,
		Settings: driver.Settings{
			Command: "edgesim load --rate 50 --duration 2s --shard " + string(rune('0'+i)) + "/2",
			Model:   "open", Rate: 50, Duration: 2, Steps: []driver.Step{driver.StepSRV, driver.StepTLS},
			Users: 100, Source: "generated", Shard: string(rune('0'+i)) + "/2",
		},
		Started:        start,
		Ended:          start.Add(2 * time.Second),
		ElapsedSeconds: 2,
		Totals:         driver.Totals{Requested: n, Completed: n, Succeeded: n - failed, Failed: failed},
		Errors:         map[driver.Class]int64{driver.ClassForbidden: failed},
		Driver:         []driver.DriverUsage{{Host: "h" + string(rune('0'+i)), Cores: 2, CPUSeconds: 0.1, CPUPercent: 2.5}},
		Shards:         1,
	}
	for k, st := range []driver.Step{driver.StepSRV, driver.StepTLS, driver.StepLogin} {
		h := driver.NewHistogram()
		for j := int64(0); j < n; j++ {
			if err := h.RecordValue(base*int64(k+1) + j); err != nil {
				t.Fatal(err)
			}
		}
		enc, err := driver.EncodeHistogram(h)
		if err != nil {
			t.Fatal(err)
		}
		s := driver.StepStats{Step: st, Count: n, Quantiles: driver.QuantilesOf(h), Histogram: enc}
		if st == driver.StepTLS || st == driver.StepLogin {
			s.Errors = failed
		}
		r.Steps = append(r.Steps, s)
	}
	for sec := int64(0); sec < 2; sec++ {
		h := driver.NewHistogram()
		for j := int64(0); j < n/2; j++ {
			if err := h.RecordValue(base*3 + j); err != nil {
				t.Fatal(err)
			}
		}
		enc, _ := driver.EncodeHistogram(h)
		q := driver.QuantilesOf(h)
		r.Series = append(r.Series, driver.Point{Unix: start.Unix() + sec, Scheduled: n / 2, Completed: n / 2,
			Succeeded: n/2 - failed/2, Failed: failed / 2, P50: q.P50, P99: q.P99, Histogram: enc})
	}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "shard"+string(rune('0'+i))+".json")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReportMergesShards(t *testing.T) {
	dir := t.TempDir()
	a := shardFile(t, dir, 1, 100, 4, 1000)
	b := shardFile(t, dir, 2, 60, 2, 5000)
	merged := filepath.Join(dir, "merged.json")
	page := filepath.Join(dir, "report.html")
	var stdout, stderr bytes.Buffer
	// flags after the files, and between them
	err := runReport([]string{a, "--out", merged, b, "--html=" + page}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("runReport: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"160 requested, 160 completed: 154 succeeded", "2 shards merged", "forbidden", "100.0/s asked"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, want := range []string{"merged results written to " + merged, "report written to " + page} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, stderr.String())
		}
	}

	f, err := os.Open(merged)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := driver.ReadResults(f)
	if err != nil {
		t.Fatal(err)
	}
	if want := (driver.Totals{Requested: 160, Completed: 160, Succeeded: 154, Failed: 6}); m.Totals != want {
		t.Errorf("totals %+v, want %+v", m.Totals, want)
	}
	if m.Errors[driver.ClassForbidden] != 6 || m.Shards != 2 || len(m.Driver) != 2 {
		t.Errorf("errors %v, shards %d, driver %v", m.Errors, m.Shards, m.Driver)
	}
	if len(m.Steps) != 3 {
		t.Fatalf("%d steps, want 3", len(m.Steps))
	}
	for _, s := range m.Steps {
		h, err := driver.DecodeHistogram(s.Histogram)
		if err != nil {
			t.Fatal(err)
		}
		if s.Count != 160 || h.TotalCount() != 160 {
			t.Errorf("step %s: count %d, histogram holds %d, want 160", s.Step, s.Count, h.TotalCount())
		}
		// the slowest value is shard 2's: base 5000 × (k+1) + 59 µs
		if s.Quantiles.Max < 5.0 {
			t.Errorf("step %s: max %v ms, want shard 2's", s.Step, s.Quantiles.Max)
		}
	}
	if len(m.Series) != 2 || m.Series[0].Completed != 80 {
		t.Errorf("series %+v", m.Series)
	}
	for _, p := range m.Series {
		h, _ := driver.DecodeHistogram(p.Histogram)
		if h.TotalCount() != 80 {
			t.Errorf("second %d: histogram holds %d, want 80", p.Unix, h.TotalCount())
		}
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte(`id="latency-by-step"`)) {
		t.Error("the HTML report lacks its charts")
	}
}

func TestReportErrors(t *testing.T) {
	dir := t.TempDir()
	good := shardFile(t, dir, 1, 10, 0, 1000)
	badJSON := filepath.Join(dir, "bad.json")
	os.WriteFile(badJSON, []byte(`{"version": 1, "totals": {`), 0o644)
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, nil, 0o644)
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`{"name": "not results"}`), 0o644)
	missing := filepath.Join(dir, "missing.json")

	tests := []struct {
		name  string
		args  []string
		usage bool
		want  []string
	}{
		{"no files", nil, true, []string{"no results files"}},
		{"only flags", []string{"--out", "x.json"}, true, []string{"no results files"}},
		{"unknown flag", []string{good, "--bogus"}, true, []string{"bogus"}},
		{"same file twice", []string{good, good}, true, []string{"given twice"}},
		{"bad json", []string{good, badJSON}, false, []string{badJSON, "bad results file"}},
		{"empty", []string{empty}, false, []string{empty, "empty"}},
		{"not results", []string{other}, false, []string{other, `no "version" field`}},
		{"missing", []string{missing}, false, []string{missing, "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runReport(tt.args, &stdout, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, errUsage) != tt.usage {
				t.Errorf("usage error = %v, want %v (%v)", errors.Is(err, errUsage), tt.usage, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if stdout.Len() > 0 {
				t.Errorf("printed a summary despite the error:\n%s", stdout.String())
			}
		})
	}
}

func TestReportHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := runReport([]string{"a.json", "-h"}, &stdout, &stderr)
	if err == nil || !strings.Contains(stderr.String(), "edgesim report FILE...") || !strings.Contains(stderr.String(), "-html") {
		t.Errorf("err %v, stderr:\n%s", err, stderr.String())
	}
}

func TestReportDashDash(t *testing.T) {
	dir := t.TempDir()
	a := shardFile(t, dir, 1, 10, 0, 1000)
	var stdout, stderr bytes.Buffer
	// after --, "--html" is a file name
	err := runReport([]string{a, "--", "--html"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--html") {
		t.Errorf("err %v, want one about the file --html", err)
	}
}

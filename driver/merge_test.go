package driver

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// shardResults builds the results of shard i of n of the sample run, each shard taking every
// n-th login.
func shardResults(t *testing.T, logins []fakeLogin, i, n int, end time.Time) *Results {
	t.Helper()
	var mine []fakeLogin
	for j := i; j < len(logins); j += n {
		mine = append(mine, logins[j])
	}
	set := fakeSettings(100/n, 60)
	set.Users /= int64(n) // a shard's part of the users
	set.Shard = string(rune('1'+i)) + "/" + string(rune('0'+n))
	return buildResults(t, set, mine, end)
}

func jsonOf(t *testing.T, r *Results) string {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestMergeOneIsIdentity(t *testing.T) {
	r := sampleResults(t)
	before := jsonOf(t, r)
	m, err := Merge(r)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, r) {
		t.Errorf("Merge of one results differs from it:\n%s\nwant\n%s", jsonOf(t, m), before)
	}
	// A copy, not the same maps: changing it leaves the input alone.
	m.Errors[ClassTimeout]++
	m.Settings.Steps[0] = "changed"
	if jsonOf(t, r) != before {
		t.Error("changing the merged results changed the input")
	}

	// And the same through a file.
	back, err := ReadResults(strings.NewReader(before))
	if err != nil {
		t.Fatal(err)
	}
	m, err = Merge(back)
	if err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, m); got != before {
		t.Error("Merge of a read results file writes a different file")
	}
}

func TestMergeShardsIsExact(t *testing.T) {
	logins := fakeLogins(7, 100, 60)
	end := fakeRunStart.Add(60*time.Second + 500*time.Millisecond)
	whole := buildResults(t, fakeSettings(100, 60), logins, end)
	a := shardResults(t, logins, 0, 2, end)
	b := shardResults(t, logins, 1, 2, end.Add(-200*time.Millisecond))
	b.Driver[0].Host = "load-2"
	aJSON, bJSON := jsonOf(t, a), jsonOf(t, b)

	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if jsonOf(t, a) != aJSON || jsonOf(t, b) != bJSON {
		t.Error("Merge changed its inputs")
	}
	if m.Totals != whole.Totals {
		t.Errorf("totals %+v, want %+v", m.Totals, whole.Totals)
	}
	if !reflect.DeepEqual(m.Errors, whole.Errors) {
		t.Errorf("errors %v, want %v", m.Errors, whole.Errors)
	}
	if len(m.Steps) != len(whole.Steps) {
		t.Fatalf("%d steps, want %d", len(m.Steps), len(whole.Steps))
	}
	for i, s := range m.Steps {
		w := whole.Steps[i]
		if s.Step != w.Step || s.Count != w.Count || s.Errors != w.Errors || s.Quantiles != w.Quantiles {
			t.Errorf("step %d: %+v\nwant %+v", i, s, w)
		}
		sameHist(t, string(s.Step), s.Histogram, w.Histogram)
	}
	if len(m.Series) != len(whole.Series) {
		t.Fatalf("%d seconds, want %d", len(m.Series), len(whole.Series))
	}
	for i, p := range m.Series {
		w := whole.Series[i]
		hp, hw := p.Histogram, w.Histogram
		p.Histogram, w.Histogram = "", ""
		if !reflect.DeepEqual(p, w) {
			t.Errorf("second %d: %+v\nwant %+v", i, p, w)
		}
		sameHist(t, "second", hp, hw)
	}
	if !m.Started.Equal(fakeRunStart) || !m.Ended.Equal(end) || m.ElapsedSeconds != 60.5 {
		t.Errorf("run %v to %v (%v s), want %v to %v (60.5 s)", m.Started, m.Ended, m.ElapsedSeconds, fakeRunStart, end)
	}
	if m.Settings.Rate != 100 || m.Settings.Users != whole.Settings.Users || m.Settings.Shard != "" || m.Shards != 2 || len(m.Settings.Extra) != 0 {
		t.Errorf("settings %+v, shards %d", m.Settings, m.Shards)
	}
	if len(m.Driver) != 2 || m.Driver[0].Host != "load-1" || m.Driver[1].Host != "load-2" {
		t.Errorf("driver %+v", m.Driver)
	}

	// Merging is associative: (a+b)+c = a+(b+c) as files.
	c := shardResults(t, logins[:1000], 0, 1, end)
	ab, _ := Merge(a, b)
	abc1, err := Merge(ab, c)
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := Merge(b, c)
	abc2, err := Merge(a, bc)
	if err != nil {
		t.Fatal(err)
	}
	abc1.Settings.Extra, abc2.Settings.Extra = nil, nil
	if jsonOf(t, abc1) != jsonOf(t, abc2) {
		t.Error("(a+b)+c differs from a+(b+c)")
	}
}

func sameHist(t *testing.T, what, got, want string) {
	t.Helper()
	g, err := DecodeHistogram(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := DecodeHistogram(want)
	if err != nil {
		t.Fatal(err)
	}
	if g.TotalCount() != w.TotalCount() || !g.Equals(w) {
		t.Errorf("%s: merged histogram (%d values) differs from the whole run's (%d values)", what, g.TotalCount(), w.TotalCount())
	}
}

func TestMergeNotes(t *testing.T) {
	a := sampleResults(t)
	b := sampleResults(t)
	b.Settings.Steps = []Step{StepSRV, StepTLS}
	b.Settings.Model = "closed"
	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	notes := strings.Join(m.Settings.Extra, "\n")
	for _, want := range []string{`different models: "open", "closed"`, `different steps: "srv,tls,identity,edge-domain,edge-config,xmpp,sip", "srv,tls"`} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
	if m.Settings.Count != a.Settings.Count+b.Settings.Count || m.Settings.Rate != 400 {
		t.Errorf("rate %v count %v", m.Settings.Rate, m.Settings.Count)
	}
}

func TestMergeRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(r *Results)
		want string
	}{
		{"version", func(r *Results) { r.Version = 2 }, "results 2 of 2: results version 2"},
		{"step histogram", func(r *Results) { r.Steps[1].Histogram = "bm90IGEgaGlzdG9ncmFt" }, `results 2 of 2: step "tls": histogram does not decode`},
		{"series histogram", func(r *Results) { r.Series[3].Histogram = "garbage" }, "results 2 of 2: second 1772445603: histogram does not decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := sampleResults(t)
			tt.edit(b)
			_, err := Merge(sampleResults(t), b)
			if !errors.Is(err, ErrBadResults) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrBadResults with %q", err, tt.want)
			}
		})
	}
	if _, err := Merge(); !errors.Is(err, ErrBadResults) {
		t.Errorf("Merge(): %v", err)
	}
}

func TestReadResults(t *testing.T) {
	good := jsonOf(t, sampleResults(t))
	tests := []struct {
		name string
		in   string
		want string // "" for no error
	}{
		{"good", good, ""},
		{"empty", "", "the file is empty"},
		{"blank", " \n\t", "the file is empty"},
		{"not json", "hello", "not JSON: invalid character"},
		{"array", "[1,2]", "not a JSON object"},
		{"wrong type", `{"version": "1"}`, "cannot unmarshal string"},
		{"other json", `{"name": "x"}`, `no "version" field`},
		{"newer version", `{"version": 2, "whatever": true}`, "results version 2, this edgesim reads version 1"},
		{"unknown field", strings.Replace(good, `"version": 1,`, `"version": 1, "extra": 3,`, 1), `unknown field "extra"`},
		{"truncated", good[:len(good)/2], "unexpected EOF"},
		{"two values", good + good, "more than one JSON value"},
		{"bad histogram", strings.Replace(good, `"histogram": "`, `"histogram": "x`, 1), `step "srv": histogram does not decode`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ReadResults(strings.NewReader(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if jsonOf(t, r) != good {
					t.Error("read results write a different file")
				}
				return
			}
			if !errors.Is(err, ErrBadResults) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrBadResults with %q", err, tt.want)
			}
		})
	}
}

// Closed-model shards split --concurrency: the merged run has the sum.
func TestMergeShardsSumConcurrency(t *testing.T) {
	logins := fakeLogins(7, 100, 10)
	end := fakeRunStart.Add(10 * time.Second)
	a, b := shardResults(t, logins, 0, 2, end), shardResults(t, logins, 1, 2, end)
	for r, c := range map[*Results]int{a: 4, b: 3} {
		r.Settings.Model, r.Settings.Rate, r.Settings.Concurrency = "closed", 0, c
	}
	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Settings.Concurrency != 7 || m.Settings.Users != a.Settings.Users+b.Settings.Users {
		t.Errorf("merged concurrency %d, users %d; want 7 and %d", m.Settings.Concurrency, m.Settings.Users, a.Settings.Users+b.Settings.Users)
	}
}

package driver

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run 'go test ./driver -run %s -update' to make it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (rerun with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestWriteSummaryGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleResults(t).WriteSummary(&buf); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.golden", buf.Bytes())
}

func TestWriteSummaryCases(t *testing.T) {
	base := func() *Results { return sampleResults(t) }
	tests := []struct {
		name    string
		edit    func(r *Results)
		want    []string
		notWant []string
	}{
		{
			name: "busy driver",
			edit: func(r *Results) { r.Driver[0].CPUPercent = 93 },
			want: []string{"used 93% of 2 cores", "results understate the edge"},
		},
		{
			name: "idle driver",
			want: []string{"driver on load-1 used 38% of 2 cores", "not the bottleneck"},
		},
		{
			name:    "closed model",
			edit:    func(r *Results) { r.Settings.Model, r.Settings.Rate, r.Settings.Concurrency = "closed", 0, 50 },
			want:    []string{"closed model", "50 logins in flight"},
			notWant: []string{"/s asked"},
		},
		{
			name: "unknown class",
			edit: func(r *Results) { r.Errors["from-the-future"] = 1 },
			want: []string{"from-the-future", "does not know"},
		},
		{
			name:    "nothing completed",
			edit:    func(r *Results) { r.Totals = Totals{Requested: 5}; r.Steps = nil; r.Errors = nil; r.Driver = nil },
			want:    []string{"5 requested, 0 completed: 0 succeeded (-), 0 failed (-)"},
			notWant: []string{"p50 ms", "first failing step", "driver"},
		},
		{
			name:    "control characters",
			edit:    func(r *Results) { r.Settings.Command = "edgesim load\n--rate 1\x1b[31m" },
			want:    []string{"edgesim load --rate 1 [31m"},
			notWant: []string{"\x1b"},
		},
		{
			name: "merged shards",
			edit: func(r *Results) { r.Shards = 3 },
			want: []string{"open model, 3 shards merged", "shards    3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			if tt.edit != nil {
				tt.edit(r)
			}
			var buf bytes.Buffer
			if err := r.WriteSummary(&buf); err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.want {
				if !strings.Contains(buf.String(), s) {
					t.Errorf("summary lacks %q:\n%s", s, buf.String())
				}
			}
			for _, s := range tt.notWant {
				if strings.Contains(buf.String(), s) {
					t.Errorf("summary has %q:\n%s", s, buf.String())
				}
			}
		})
	}
}

func TestClassMeaningCoversEveryClass(t *testing.T) {
	for _, c := range []Class{ClassDNSTimeout, ClassDNSNXDomain, ClassDNSError, ClassInside, ClassConnect,
		ClassTimeout, ClassHandshake, ClassPlatformCert, ClassExpired, ClassUntrusted, ClassNameMismatch,
		ClassEdgeDomain, ClassUnauthorized, ClassForbidden, ClassHTTP, ClassBadEdgeConfig, ClassXMPP,
		ClassSIP, ClassCanceled} {
		if _, ok := classMeaning[c]; !ok {
			t.Errorf("class %q has no meaning", c)
		}
	}
}

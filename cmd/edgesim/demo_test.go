package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README's first command: a short demo traces a good and a failing login, runs a load and
// writes the report and results.
func TestDemo(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo", "--out", out, "--tenants", "20", "--rate", "50", "--duration", "1s"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"login of bob@example.com passed every step", "FAILED at identity (platform-cert)",
		"50 requested, 50 completed", "report written to " + filepath.Join(out, "report.html")} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, f := range []string{"report.html", "results.json"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if code := run([]string{"demo", "--tenants", "0"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("--tenants 0: exit %d, want 2", code)
	}
}

package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/edgesim/edgesim/tenant"
)

// TestReadme keeps README.md honest: every serve flag it mentions exists, and its tenants file
// example is the one in testdata and loads.
func TestReadme(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	// Each command's section may mention only flags the command has ('edgesim X -h' lists them).
	sections := regexp.MustCompile("(?m)^### `edgesim ([a-z]+)[^`]*`").FindAllStringSubmatchIndex(readme, -1)
	if len(sections) < 4 {
		t.Fatalf("README has %d command sections, want serve, login, load, report at least", len(sections))
	}
	for _, sec := range sections {
		cmd := readme[sec[2]:sec[3]]
		end := len(readme)
		if next := strings.Index(readme[sec[1]:], "\n### "); next >= 0 {
			end = sec[1] + next
		}
		known := commandFlags(t, cmd)
		for _, m := range regexp.MustCompile("`(--[a-z-]+)").FindAllStringSubmatch(readme[sec[1]:end], -1) {
			if !known[strings.TrimPrefix(m[1], "--")] {
				t.Errorf("README's %s section mentions flag %s, which 'edgesim %s' does not have", cmd, m[1], cmd)
			}
		}
	}
	example := regexp.MustCompile("(?s)### Tenants file\n\n```yaml\n(.*?)```").FindStringSubmatch(readme)
	fixture, err := os.ReadFile("../../testdata/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if example == nil || !strings.HasSuffix(string(fixture), example[1]) {
		t.Fatal("README's tenants example and testdata/tenants.yaml differ")
	}
	d, err := tenant.Load("../../testdata/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 5 {
		t.Fatalf("README example has %d tenants, want 5", d.Len())
	}
}

// commandFlags returns the flags 'edgesim cmd -h' lists.
func commandFlags(t *testing.T, cmd string) map[string]bool {
	t.Helper()
	var out, errb strings.Builder
	args := []string{cmd, "-h"}
	if cmd == "dns" {
		args = []string{"dns", "export", "-h"}
	}
	if code := run(args, &out, &errb); code != exitOK {
		t.Fatalf("edgesim %s -h: exit %d", cmd, code)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(errb.String(), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("edgesim %s -h lists no flags:\n%s", cmd, errb.String())
	}
	return flags
}

package main

import (
	"io"
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
	var o serveOptions
	fs := newFlagSet("serve", "", io.Discard)
	o.register(fs)
	table := readme[strings.Index(readme, "### `edgesim serve`"):strings.Index(readme, "### Tenants file")]
	for _, m := range regexp.MustCompile("`(--[a-z-]+)").FindAllStringSubmatch(table, -1) {
		if fs.Lookup(strings.TrimPrefix(m[1], "--")) == nil {
			t.Errorf("README mentions serve flag %s, which does not exist", m[1])
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

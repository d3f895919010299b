package certdir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func wantEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("events\n got %q\nwant %q", got, want)
	}
}

func TestAddChangeRemove(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	h.load(t)
	wantEvents(t, h.store.take())

	a1 := ca.issue(t, []string{"mra.example.com", "Example.COM."})
	writePlain(t, h.dir, "example-com-tls", a1)
	h.load(t)
	wantEvents(t, h.store.take(), "install example.com "+a1.serial, "install mra.example.com "+a1.serial)

	h.load(t) // nothing changed: nothing installed again
	wantEvents(t, h.store.take())

	a2 := ca.issue(t, []string{"mra.example.com", "collab-edge.example.com"})
	writePlain(t, h.dir, "example-com-tls", a2)
	h.load(t)
	wantEvents(t, h.store.take(), "install collab-edge.example.com "+a2.serial, "install mra.example.com "+a2.serial,
		"remove example.com")

	b := ca.issue(t, []string{"mra.example.org"})
	writePlain(t, h.dir, "other", b)
	h.load(t)
	wantEvents(t, h.store.take(), "install mra.example.org "+b.serial)
	if got := h.src.Hosts(); got["mra.example.org"] != "other" || got["mra.example.com"] != "example-com-tls" || len(got) != 3 {
		t.Fatalf("Hosts() = %v", got)
	}

	if err := os.RemoveAll(filepath.Join(h.dir, "example-com-tls")); err != nil {
		t.Fatal(err)
	}
	h.load(t)
	wantEvents(t, h.store.take(), "remove collab-edge.example.com", "remove mra.example.com")
	if w := h.warnings(); len(w) != 0 {
		t.Fatalf("warnings %q", w)
	}
}

func TestBrokenPairKeepsLastGood(t *testing.T) {
	ca := newCA(t)
	good := ca.issue(t, []string{"mra.example.com"})
	other := ca.issue(t, []string{"mra.example.com"})
	noNames := ca.issue(t, nil)
	garbledKey := []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	encrypted := []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		reason string
	}{
		{"cert not PEM", func(t *testing.T, d string) { writeFile(t, filepath.Join(d, CertFile), []byte("not a certificate")) }, ReasonBadCert},
		{"cert DER garbage", func(t *testing.T, d string) {
			writeFile(t, filepath.Join(d, CertFile), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
		}, ReasonBadCert},
		{"key not PEM", func(t *testing.T, d string) { writeFile(t, filepath.Join(d, KeyFile), []byte("nope")) }, ReasonBadKey},
		{"key garbled", func(t *testing.T, d string) { writeFile(t, filepath.Join(d, KeyFile), garbledKey) }, ReasonBadKey},
		{"key encrypted", func(t *testing.T, d string) { writeFile(t, filepath.Join(d, KeyFile), encrypted) }, ReasonBadKey},
		{"key missing", func(t *testing.T, d string) { _ = os.Remove(filepath.Join(d, KeyFile)) }, ReasonMissingKey},
		{"cert missing", func(t *testing.T, d string) { _ = os.Remove(filepath.Join(d, CertFile)) }, ReasonMissingCert},
		{"key of another certificate", func(t *testing.T, d string) { writeFile(t, filepath.Join(d, KeyFile), other.key) }, ReasonKeyMismatch},
		{"no DNS names", func(t *testing.T, d string) { writePlain(t, filepath.Dir(d), filepath.Base(d), noNames) }, ReasonNoNames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			writePlain(t, h.dir, "f", good)
			h.load(t)
			wantEvents(t, h.store.take(), "install mra.example.com "+good.serial)

			tc.break_(t, filepath.Join(h.dir, "f"))
			h.load(t)
			h.load(t) // the same broken content is reported once
			wantEvents(t, h.store.take())
			if got := h.store.serial("mra.example.com"); got != good.serial {
				t.Fatalf("serving %s, want the last good %s", got, good.serial)
			}
			if got := h.errorsFor(tc.reason); got != 1 {
				t.Fatalf("errors_total{reason=%s} = %v, want 1", tc.reason, got)
			}
			wantEvents(t, h.warnings(), "certificate pair not loaded: keeping the last good certificate folder=f reason="+tc.reason)
			if got := testutil.ToFloat64(h.src.m.certificates); got != 1 {
				t.Fatalf("certificates gauge %v, want 1 (the last good)", got)
			}

			fixed := ca.issue(t, []string{"mra.example.com"})
			writePlain(t, h.dir, "f", fixed)
			h.load(t)
			wantEvents(t, h.store.take(), "install mra.example.com "+fixed.serial)
		})
	}
}

func TestBrokenFromTheStartServesNothing(t *testing.T) {
	h := newHarness(t)
	writeFile(t, filepath.Join(h.dir, "f", CertFile), []byte("junk"))
	h.load(t)
	wantEvents(t, h.store.take())
	wantEvents(t, h.warnings(), "certificate pair not loaded: nothing served from this folder folder=f reason="+ReasonMissingKey)
}

// A writer that replaces tls.crt and then tls.key (not the kubelet) is caught in between: the
// new certificate with the old key must not be installed, and nothing is reported unless the
// mismatch is still there at the next poll.
func TestKeyMismatchMidWrite(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	old := ca.issue(t, []string{"mra.example.com"})
	writePlain(t, h.dir, "f", old)
	h.load(t)
	h.store.take()

	next := ca.issue(t, []string{"mra.example.com"})
	writeFile(t, filepath.Join(h.dir, "f", CertFile), next.crt) // tls.key still old
	h.src.poll()
	wantEvents(t, h.store.take())
	if got := h.store.serial("mra.example.com"); got != old.serial {
		t.Fatalf("serving %s mid-write, want the old %s", got, old.serial)
	}
	if w := h.warnings(); len(w) != 0 || h.errorsFor(ReasonKeyMismatch) != 0 {
		t.Fatalf("a pair caught mid-write was reported: %q", w)
	}

	writeFile(t, filepath.Join(h.dir, "f", KeyFile), next.key)
	h.src.poll()
	wantEvents(t, h.store.take(), "install mra.example.com "+next.serial)

	// A mismatch that stays is reported at the second poll, once.
	writeFile(t, filepath.Join(h.dir, "f", KeyFile), old.key)
	for range 3 {
		h.src.poll()
	}
	wantEvents(t, h.store.take())
	if got := h.errorsFor(ReasonKeyMismatch); got != 1 {
		t.Fatalf("errors_total{reason=key_mismatch} = %v, want 1", got)
	}
	wantEvents(t, h.warnings(), "certificate pair not loaded: keeping the last good certificate folder=f reason="+ReasonKeyMismatch)
}

func TestWildcard(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t, func(c *Config) {
		c.WildcardHosts = func(parent string) []string {
			if parent != "example.com" {
				return nil
			}
			return []string{"mra.example.com", "EXPE.example.com", "own.example.com", "deep.a.example.com", "other.example"}
		}
	})
	wild := ca.issue(t, []string{"*.example.com", "example.com"})
	own := ca.issue(t, []string{"own.example.com"}, leafOpts{notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(30 * time.Minute)})
	writePlain(t, h.dir, "wild", wild)
	writePlain(t, h.dir, "own", own)
	h.load(t)
	// own.example.com has a certificate of its own; deep.a.example.com and other.example are
	// not covered by *.example.com.
	wantEvents(t, h.store.take(),
		"install *.example.com "+wild.serial, "install example.com "+wild.serial, "install expe.example.com "+wild.serial,
		"install mra.example.com "+wild.serial, "install own.example.com "+own.serial)

	if err := os.RemoveAll(filepath.Join(h.dir, "own")); err != nil {
		t.Fatal(err)
	}
	h.load(t)
	wantEvents(t, h.store.take(), "install own.example.com "+wild.serial)
	if err := os.RemoveAll(filepath.Join(h.dir, "wild")); err != nil {
		t.Fatal(err)
	}
	h.load(t)
	wantEvents(t, h.store.take(), "remove *.example.com", "remove example.com", "remove expe.example.com",
		"remove mra.example.com", "remove own.example.com")
}

// Two folders carrying one name: the certificate that expires last serves it, and the other
// takes over when it goes.
func TestOverlap(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	now := time.Now()
	short := ca.issue(t, []string{"mra.example.com"}, leafOpts{now.Add(-time.Hour), now.Add(time.Hour)})
	long := ca.issue(t, []string{"mra.example.com"}, leafOpts{now.Add(-time.Hour), now.Add(2 * time.Hour)})
	writePlain(t, h.dir, "a-short", short)
	writePlain(t, h.dir, "b-long", long)
	h.load(t)
	wantEvents(t, h.store.take(), "install mra.example.com "+long.serial)
	if err := os.RemoveAll(filepath.Join(h.dir, "b-long")); err != nil {
		t.Fatal(err)
	}
	h.load(t)
	wantEvents(t, h.store.take(), "install mra.example.com "+short.serial)
}

func TestExpiredLoadedAndWarned(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	now := time.Now()
	exp := ca.issue(t, []string{"mra.example.com"}, leafOpts{now.Add(-2 * time.Hour), now.Add(-time.Hour)})
	writePlain(t, h.dir, "old", exp)
	early := ca.issue(t, []string{"early.example.com"}, leafOpts{now.Add(time.Hour), now.Add(2 * time.Hour)})
	writePlain(t, h.dir, "early", early)
	h.load(t)
	wantEvents(t, h.store.take(), "install early.example.com "+early.serial, "install mra.example.com "+exp.serial)
	if h.errorsFor(ReasonExpired) != 1 || h.errorsFor(ReasonNotYetValid) != 1 {
		t.Fatalf("errors_total expired %v, not_yet_valid %v, want 1 and 1", h.errorsFor(ReasonExpired), h.errorsFor(ReasonNotYetValid))
	}
	w := h.warnings()
	slices.Sort(w)
	wantEvents(t, w, "certificate loaded but expired: clients will refuse it folder=old reason=<nil>",
		"certificate loaded but not valid yet: clients will refuse it folder=early reason=<nil>")
}

// The kubelet's layout: DIR/<name>/..<timestamp>/{tls.crt,tls.key}, DIR/<name>/..data ->
// ..<timestamp>, DIR/<name>/tls.crt -> ..data/tls.crt; an update swaps ..data.
func TestKubeletSwap(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	first := ca.issue(t, []string{"mra.example.com"})
	writeKubelet(t, h.dir, "mra-example-com", first)
	h.load(t)
	wantEvents(t, h.store.take(), "install mra.example.com "+first.serial)

	for i := range 5 {
		next := ca.issue(t, []string{"mra.example.com"})
		writeKubelet(t, h.dir, "mra-example-com", next)
		h.src.poll()
		wantEvents(t, h.store.take(), "install mra.example.com "+next.serial)
		entries, _ := os.ReadDir(filepath.Join(h.dir, "mra-example-com"))
		if len(entries) != 4 { // ..<timestamp>, ..data, tls.crt, tls.key
			t.Fatalf("swap %d: folder holds %d entries, want 4", i, len(entries))
		}
	}
	if got := h.src.Hosts(); len(got) != 1 || got["mra.example.com"] != "mra-example-com" {
		t.Fatalf("Hosts() = %v", got)
	}
	if w := h.warnings(); len(w) != 0 {
		t.Fatalf("warnings %q", w)
	}
	if got := h.errorsFor(ReasonKeyMismatch); got != 0 {
		t.Fatalf("key_mismatch %v", got)
	}
}

// A projected volume mounted at DIR: DIR/..data -> ..<timestamp>, and each folder is a symlink
// DIR/<name> -> ..data/<name>. The dot entries are not folders.
func TestProjectedVolumeRoot(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	a, b := ca.issue(t, []string{"a.example.com"}), ca.issue(t, []string{"b.example.com"})
	writeAtomic(t, h.dir, map[string][]byte{"a/tls.crt": a.crt, "a/tls.key": a.key, "b/tls.crt": b.crt, "b/tls.key": b.key})
	h.load(t)
	wantEvents(t, h.store.take(), "install a.example.com "+a.serial, "install b.example.com "+b.serial)

	a2 := ca.issue(t, []string{"a.example.com"})
	writeAtomic(t, h.dir, map[string][]byte{"a/tls.crt": a2.crt, "a/tls.key": a2.key, "b/tls.crt": b.crt, "b/tls.key": b.key})
	h.src.poll()
	wantEvents(t, h.store.take(), "install a.example.com "+a2.serial)
	if w := h.warnings(); len(w) != 0 {
		t.Fatalf("warnings %q", w)
	}
}

func TestMetrics(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	writePlain(t, h.dir, "a", ca.issue(t, []string{"a.example.com", "*.a.example.com"}))
	writePlain(t, h.dir, "b", ca.issue(t, []string{"b.example.com"}))
	writeFile(t, filepath.Join(h.dir, "broken", CertFile), []byte("x"))
	writeFile(t, filepath.Join(h.dir, "broken", KeyFile), []byte("x"))
	h.load(t)
	n, err := testutil.GatherAndCount(h.reg, "edgesim_certdir_certificates", "edgesim_certdir_hosts",
		"edgesim_certdir_loads_total", "edgesim_certdir_errors_total")
	if err != nil || n != 3+len(reasons) {
		t.Fatalf("gathered %d series (%v), want %d", n, err, 3+len(reasons))
	}
	for name, want := range map[string]float64{"certificates": 2, "hosts": 3, "loads": 2, "bad_cert": 1} {
		var got float64
		switch name {
		case "certificates":
			got = testutil.ToFloat64(h.src.m.certificates)
		case "hosts":
			got = testutil.ToFloat64(h.src.m.hosts)
		case "loads":
			got = testutil.ToFloat64(h.src.m.loads)
		default:
			got = h.errorsFor(name)
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// A second Source on the same registry is refused, not a panic.
	if _, err := New(Config{Dir: h.dir, Install: h.store.install, Registerer: h.reg}); !errors.Is(err, ErrConfig) {
		t.Fatalf("second registration: %v, want ErrConfig", err)
	}
}

func TestDirMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	src, err := New(Config{Dir: missing, Install: newFakeStore().install})
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range []func() error{src.Load, func() error { return src.Start(context.Background()) }} {
		err := fn()
		if !errors.Is(err, ErrDir) || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "no such file or directory") {
			t.Fatalf("err %v, want ErrDir naming %s", err, missing)
		}
	}
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, nil)
	src, _ = New(Config{Dir: file, Install: newFakeStore().install})
	if err := src.Load(); !errors.Is(err, ErrDir) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("err %v", err)
	}
	if _, err := New(Config{Install: newFakeStore().install}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no Dir: %v", err)
	}
	if _, err := New(Config{Dir: file}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no Install: %v", err)
	}
}

// The directory going away under a running Source keeps what is served and is reported once.
func TestDirVanishesWhilePolling(t *testing.T) {
	ca := newCA(t)
	parent := t.TempDir()
	dir := filepath.Join(parent, "certs")
	h := newHarness(t, func(c *Config) { c.Dir = dir })
	a := ca.issue(t, []string{"a.example.com"})
	writePlain(t, dir, "a", a)
	h.load(t)
	h.store.take()
	if err := os.Rename(dir, filepath.Join(parent, "moved")); err != nil {
		t.Fatal(err)
	}
	h.src.poll()
	h.src.poll()
	wantEvents(t, h.store.take())
	if got := h.errorsFor(ReasonDir); got != 1 {
		t.Fatalf("errors_total{reason=dir} = %v, want 1", got)
	}
	if err := os.Rename(filepath.Join(parent, "moved"), dir); err != nil {
		t.Fatal(err)
	}
	h.src.poll()
	wantEvents(t, h.store.take())
	if got := h.store.serial("a.example.com"); got != a.serial {
		t.Fatalf("serving %q, want %s", got, a.serial)
	}
}

func TestHiddenAndStrayEntriesIgnored(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	a := ca.issue(t, []string{"a.example.com"})
	writePlain(t, h.dir, ".hidden", a)
	writePlain(t, h.dir, "..2026_11_24_10_00_00.123456789", a)
	writeFile(t, filepath.Join(h.dir, "README"), []byte("hello"))
	writeFile(t, filepath.Join(h.dir, CertFile), a.crt) // a Secret mounted straight at DIR
	h.load(t)
	h.load(t)
	wantEvents(t, h.store.take())
	wantEvents(t, h.warnings(), "tls.crt directly in the certificate directory is not read: mount each Secret in a folder of its own (DIR/<name>/tls.crt) folder=<nil> reason=<nil>")
}

func TestStartPollsUntilStop(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t, func(c *Config) { c.Poll = 10 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.src.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.src.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	a := ca.issue(t, []string{"a.example.com"})
	writeKubelet(t, h.dir, "a", a)
	select {
	case ev := <-h.store.notify:
		if ev != "install a.example.com "+a.serial {
			t.Fatalf("event %q", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no install within 5s of polling every 10ms")
	}
	h.src.Stop()
	h.src.Stop()
	h.store.take()
	writeKubelet(t, h.dir, "a", ca.issue(t, []string{"a.example.com"}))
	time.Sleep(50 * time.Millisecond)
	wantEvents(t, h.store.take())
}

// No log line holds key material, whatever goes wrong.
func TestNoKeyMaterialInLogs(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t)
	a, b := ca.issue(t, []string{"a.example.com"}), ca.issue(t, []string{"a.example.com"})
	writePlain(t, h.dir, "a", a)
	h.load(t)
	writeFile(t, filepath.Join(h.dir, "a", KeyFile), b.key) // mismatch
	h.load(t)
	truncated := b.key[:len(b.key)/2]
	truncated = append(truncated, []byte("\n-----END PRIVATE KEY-----\n")...)
	writeFile(t, filepath.Join(h.dir, "a", KeyFile), truncated)
	h.load(t)
	// A block that decodes as PEM but not as a key, whose label carries key text.
	lines := strings.Split(string(b.key), "\n")
	label := lines[1][:28] + " PRIVATE KEY"
	writeFile(t, filepath.Join(h.dir, "a", KeyFile), []byte("-----BEGIN "+label+"-----\nAAAA\n-----END "+label+"-----\n"))
	h.load(t)
	writeFile(t, filepath.Join(h.dir, "a", CertFile), append(a.key, a.crt...)) // a key inside tls.crt
	writeFile(t, filepath.Join(h.dir, "a", KeyFile), a.key)
	h.load(t)
	body := func(k []byte) string { // a stretch of the base64 body
		s := string(k)
		i := strings.Index(s, "\n")
		return s[i+1 : i+30]
	}
	for _, e := range h.logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + strings.ReplaceAll(toString(v), "\n", " ")
		}
		for _, k := range [][]byte{a.key, b.key} {
			if strings.Contains(line, "PRIVATE KEY") || strings.Contains(line, body(k)) {
				t.Fatalf("log line holds key material: %s", line)
			}
		}
	}
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case error:
		return v.Error()
	case []any:
		var parts []string
		for _, x := range v {
			parts = append(parts, toString(x))
		}
		return strings.Join(parts, ",")
	}
	return strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(fmt.Sprint(v), "\n", " "), "\t", " "))
}

// Polling as fast as it can while the kubelet swaps the Secret: every pass sees a whole
// update, so nothing is reported and every update is installed (fakeStore panics on a pair
// that does not match).
func TestKubeletSwapUnderFastPolling(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t, func(c *Config) { c.Poll = time.Millisecond })
	leaves := make([]leafPEM, 30)
	for i := range leaves {
		leaves[i] = ca.issue(t, []string{"mra.example.com"})
	}
	writeKubelet(t, h.dir, "f", leaves[0])
	if err := h.src.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves[1:] {
		writeKubelet(t, h.dir, "f", l)
		time.Sleep(2 * time.Millisecond)
	}
	last := leaves[len(leaves)-1].serial
	deadline := time.Now().Add(5 * time.Second)
	for h.store.serial("mra.example.com") != last {
		if time.Now().After(deadline) {
			t.Fatalf("serving %s, want the last %s", h.store.serial("mra.example.com"), last)
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.src.Stop()
	if w := h.warnings(); len(w) != 0 {
		t.Fatalf("warnings %q", w)
	}
	for _, r := range reasons {
		if got := h.errorsFor(r); got != 0 {
			t.Errorf("errors_total{reason=%s} = %v", r, got)
		}
	}
}

// A writer that rewrites tls.crt and tls.key in place, one after the other, raced by fast
// polling: a mismatched pair is never installed (fakeStore panics on one) and the final pair is.
func TestInPlaceWriterUnderFastPolling(t *testing.T) {
	ca := newCA(t)
	h := newHarness(t, func(c *Config) { c.Poll = time.Millisecond })
	leaves := make([]leafPEM, 30)
	for i := range leaves {
		leaves[i] = ca.issue(t, []string{"mra.example.com"})
	}
	writePlain(t, h.dir, "f", leaves[0])
	if err := h.src.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves[1:] {
		writePlain(t, h.dir, "f", l)
		time.Sleep(2 * time.Millisecond)
	}
	last := leaves[len(leaves)-1].serial
	deadline := time.Now().Add(5 * time.Second)
	for h.store.serial("mra.example.com") != last {
		if time.Now().After(deadline) {
			t.Fatalf("serving %s, want the last %s", h.store.serial("mra.example.com"), last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

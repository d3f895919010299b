package deploy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// healthzPath is what the probes ask; TestLiveMetrics checks a running edgesim answers it.
const healthzPath = "/healthz"

// proc is an edgesim process started by a test; its stdout and stderr are read line by line.
type proc struct {
	cmd   *exec.Cmd
	lines chan string
	mu    sync.Mutex
	log   strings.Builder
	done  chan struct{}
	err   error
}

func startProc(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(edgesimBinary(t), args...), lines: make(chan string, 4096), done: make(chan struct{})}
	p.cmd.Dir = dir
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		w.Close()
	}()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			fmt.Fprintln(&p.log, sc.Text())
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill() // this test's own child, by its pid
			<-p.done
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// await reads lines until one matches re, and returns its submatches.
func (p *proc) await(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				<-p.done
				t.Fatalf("edgesim %s exited (%v) before printing /%s/:\n%s", p.cmd.Args[1], p.err, re, p.output())
			}
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("edgesim %s: no /%s/ within %v:\n%s", p.cmd.Args[1], re, timeout, p.output())
		}
	}
}

// stop interrupts the process as Ctrl-C does and waits for it to exit.
func (p *proc) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("edgesim %s after SIGINT: %v\n%s", p.cmd.Args[1], p.err, p.output())
		}
	case <-time.After(timeout):
		t.Errorf("edgesim %s did not stop within %v of SIGINT", p.cmd.Args[1], timeout)
	}
}

var client = &http.Client{Timeout: 5 * time.Second}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(body)
}

// exposition is a scraped /metrics page: the TYPE of each family and the samples of each
// series name.
type exposition struct {
	types   map[string]string
	samples map[string][]map[string]string
}

var (
	typeLine   = regexp.MustCompile(`^# TYPE (\S+) (\S+)$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func (e *exposition) add(page string) {
	for line := range strings.Lines(page) {
		line = strings.TrimSpace(line)
		if m := typeLine.FindStringSubmatch(line); m != nil {
			e.types[m[1]] = m[2]
		} else if m := sampleLine.FindStringSubmatch(line); m != nil {
			ls := map[string]string{}
			for _, l := range labelPair.FindAllStringSubmatch(m[2], -1) {
				ls[l[1]] = l[2]
			}
			e.samples[m[1]] = append(e.samples[m[1]], ls)
		}
	}
}

// family is the metric family a series name belongs to, and whether its TYPE allows the
// suffix: _bucket only on a histogram, _count and _sum on a histogram or summary.
func (e *exposition) family(name string) (string, error) {
	for suffix, types := range map[string][]string{"_bucket": {"histogram"}, "_count": {"histogram", "summary"}, "_sum": {"histogram", "summary"}} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if typ, ok := e.types[base]; ok {
				if !slices.Contains(types, typ) {
					return "", fmt.Errorf("%s: %s is a %s, which has no %s series", name, base, typ, suffix)
				}
				return base, nil
			}
		}
	}
	if typ, ok := e.types[name]; ok {
		if typ == "histogram" || typ == "summary" {
			return "", fmt.Errorf("%s is a %s: query its _bucket, _count or _sum", name, typ)
		}
		return name, nil
	}
	return "", fmt.Errorf("%s: no such metric", name)
}

func (e *exposition) hasLabel(name, label string) bool {
	for _, s := range e.samples[name] {
		if _, ok := s[label]; ok {
			return true
		}
	}
	return false
}

func (e *exposition) hasValue(name, label, value string) bool {
	for _, s := range e.samples[name] {
		if s[label] == value {
			return true
		}
	}
	return false
}

var (
	metricRef   = regexp.MustCompile(`\b(edgesim_[a-z0-9_]+)\b(\{[^}]*\})?`)
	matcher     = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	grouping    = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	labelValues = regexp.MustCompile(`label_values\(\s*(edgesim_[a-z0-9_]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
)

// checkQuery checks every metric an expression names is served, with the labels it selects
// on, the label values it asks for by equality, and the labels it groups by.
func (e *exposition) checkQuery(where, expr string) []error {
	var errs []error
	refs := metricRef.FindAllStringSubmatch(expr, -1)
	if len(refs) == 0 {
		return []error{fmt.Errorf("%s: %q names no edgesim metric", where, expr)}
	}
	var names []string
	for _, r := range refs {
		name := r[1]
		names = append(names, name)
		if _, err := e.family(name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		if len(e.samples[name]) == 0 {
			errs = append(errs, fmt.Errorf("%s: %s has no samples", where, name))
			continue
		}
		for _, m := range matcher.FindAllStringSubmatch(r[2], -1) {
			switch {
			case !e.hasLabel(name, m[1]):
				errs = append(errs, fmt.Errorf("%s: %s has no label %s", where, name, m[1]))
			case m[2] == "=" && !strings.Contains(m[3], "$") && !e.hasValue(name, m[1], m[3]):
				errs = append(errs, fmt.Errorf("%s: %s has no series with %s=%q", where, name, m[1], m[3]))
			}
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			l = strings.TrimSpace(l)
			if l != "" && !slices.ContainsFunc(names, func(n string) bool { return e.hasLabel(n, l) }) {
				errs = append(errs, fmt.Errorf("%s: grouping by %s, a label none of %v has", where, l, names))
			}
		}
	}
	for _, lv := range labelValues.FindAllStringSubmatch(expr, -1) {
		if !e.hasLabel(lv[1], lv[2]) {
			errs = append(errs, fmt.Errorf("%s: label_values: %s has no label %s", where, lv[1], lv[2]))
		}
	}
	return errs
}

// dashboardQueries returns every PromQL expression in the dashboard: the targets' expr and the
// variables' queries.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("grafana/edgesim.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("grafana/edgesim.json: %v", err)
	}
	queries := map[string]string{}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				where = title
			} else if name, ok := v["name"].(string); ok {
				where = "variable " + name
			}
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition" || (k == "query" && strings.Contains(s, "edgesim_"))) {
					queries[fmt.Sprintf("%s (%s #%d)", where, k, len(queries))] = s
				}
				walk(where, x)
			}
		case []any:
			for _, x := range v {
				walk(where, x)
			}
		}
	}
	walk("dashboard", dash)
	return queries
}

func TestDashboard(t *testing.T) {
	queries := dashboardQueries(t)
	joined := strings.Join(slices.Collect(mapValues(queries)), "\n")
	// The panels the scale-out issue asks for.
	for _, want := range []string{
		"edgesim_tls_handshake_duration_seconds_bucket",
		`edgesim_sni_selections_total{kind="platform"}`,
		`edgesim_driver_step_duration_seconds_count{result="success"}`,
		"edgesim_dns_queries_total",
		"rate(edgesim_driver_logins_started_total",
		"edgesim_driver_target_rate",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("no dashboard query uses %s", want)
		}
	}
	data, _ := os.ReadFile("grafana/edgesim.json")
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID      int                      `json:"id"`
			Type    string                   `json:"type"`
			Title   string                   `json:"title"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr   string `json:"expr"`
				Format string `json:"format"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil || dash.UID == "" {
		t.Fatalf("dashboard: %v, uid %q", err, dash.UID)
	}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: %d targets, gridPos %+v", p.Title, len(p.Targets), p.GridPos)
		}
		if p.Type == "heatmap" && (p.Targets[0].Format != "heatmap" || !strings.Contains(p.Targets[0].Expr, "_bucket")) {
			t.Errorf("heatmap %q: want format heatmap over a _bucket series", p.Title)
		}
	}
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// liveArgs rewrites a manifest's edgesim arguments for loopback: listeners on port 0, files in
// dir. Flags the binary does not have yet (pendingFlags) are dropped.
func liveArgs(t *testing.T, args []string, set map[string]string) []string {
	t.Helper()
	have := commandFlags(t, args[0])
	out := []string{args[0]}
	for _, a := range args[1:] {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !have[name] {
			if pendingFlags[args[0]+" --"+name] {
				t.Logf("running without --%s: edgesim %s does not have it yet", name, args[0])
				continue
			}
			t.Fatalf("edgesim %s has no --%s", args[0], name)
		}
		if v, ok := set[name]; ok {
			a = "--" + name + "=" + v
		}
		out = append(out, a)
	}
	return out
}

// TestLiveMetrics runs the base manifests' edge and driver on loopback with the base's tenants
// and checks the probes' path answers and that every metric the dashboard and the recording
// rules query is served, with the labels and values they select.
func TestLiveMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts edgesim serve and edgesim load")
	}
	bs := builds(t)
	objs := everything(bs)
	edge, driver := workloads(bs["k8s/base"])[0], workloads(bs["k8s/driver"])[0]
	ec, _ := edgesimContainer(edge)
	dc, _ := edgesimContainer(driver)
	_, tenantsYAML := configFile(t, objs, edge, ec)
	if edge.job != nil || driver.job == nil {
		t.Fatal("want the base's Deployment and the driver's Job")
	}

	dir := t.TempDir()
	tenants := filepath.Join(dir, "tenants.yaml")
	keys := make([]byte, 32)
	rand.Read(keys)
	for name, data := range map[string]string{tenants: tenantsYAML, filepath.Join(dir, "ticket-keys"): base64.StdEncoding.EncodeToString(keys) + "\n"} {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	// The shared CA, made outside edgesim as for the edgesim-ca Secret: every replica must
	// take it as it is (the Secret is mounted read-only).
	caPEM := writeCA(t, filepath.Join(dir, "data"))
	loop := "127.0.0.1:0"
	serve := startProc(t, dir, liveArgs(t, ec.Args, map[string]string{
		"https-addr": loop, "xmpp-addr": loop, "sip-addr": loop, "dns-addr": loop, "metrics-addr": loop,
		"advertise-addr": "127.0.0.1", "data": filepath.Join(dir, "data"), "config": tenants,
		"cert-dir": filepath.Join(dir, "certs"), "session-ticket-keys": filepath.Join(dir, "ticket-keys"),
	})...)
	dnsAddr := serve.await(t, regexp.MustCompile(`^\s+dns\s+(\S+)`), 15*time.Second)[1]
	edgeMetrics := serve.await(t, regexp.MustCompile(`^\s+metrics\s+(http://\S+)/metrics`), 5*time.Second)[1]
	if got := get(t, edgeMetrics+edge.spec.Containers[0].ReadinessProbe.HTTPGet.Path); strings.TrimSpace(got) != "ok" {
		t.Errorf("GET %s: %q", healthzPath, got)
	}

	out := filepath.Join(dir, "shard-0.json")
	load := startProc(t, dir, append(liveArgs(t, dc.Args, map[string]string{
		"dns": dnsAddr, "ca": filepath.Join(dir, "data", "ca.pem"), "config": tenants,
		"rate": "50", "duration": "60s", "drain": "5s", "shard": "0/1", "out": out, "metrics-addr": loop,
	}), "--progress=off")...)
	driverMetrics := load.await(t, regexp.MustCompile(`driver metrics on (http://\S+)/metrics`), 10*time.Second)[1]

	// The driver serves metrics only while it runs: scrape once 20 logins have finished
	// (the scenario tenants make some fail, so error series exist), then interrupt it.
	var driverPage string
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for finished := 0; finished < 20; {
		select {
		case <-ctx.Done():
			t.Fatalf("the driver finished %d logins in 10 s:\n%s", finished, load.output())
		case <-tick.C:
		}
		driverPage = get(t, driverMetrics+"/metrics")
		finished = 0
		for line := range strings.Lines(driverPage) {
			if strings.HasPrefix(line, "edgesim_driver_logins_total{") {
				n, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
				finished += int(n)
			}
		}
	}
	load.stop(t, 10*time.Second)
	if _, err := os.Stat(out); err != nil {
		t.Errorf("the interrupted driver wrote no results: %v", err)
	} else if rep, err := exec.Command(edgesimBinary(t), "report", out).CombinedOutput(); err != nil {
		t.Errorf("edgesim report %s: %v\n%s", out, err, rep)
	}

	e := &exposition{types: map[string]string{}, samples: map[string][]map[string]string{}}
	e.add(get(t, edgeMetrics+"/metrics"))
	e.add(driverPage)
	serve.stop(t, 15*time.Second)
	if got, _ := os.ReadFile(filepath.Join(dir, "data", "ca.pem")); string(got) != string(caPEM) {
		t.Errorf("edgesim serve rewrote the CA it was given in --data")
	}

	queries := dashboardQueries(t)
	var rules promRules
	readStrict(t, "prometheus/rules.yml", &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			queries["rule "+r.Record] = r.Expr
		}
	}
	for where, q := range queries {
		for _, err := range e.checkQuery(where, q) {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.Logf("edge log:\n%s", serve.output())
	}
}

// writeCA makes a CA as 'openssl req -x509' or cert-manager would (ECDSA P-256, SEC1 key) as
// dir/ca.pem and dir/ca.key, read-only, and returns the certificate's PEM.
func writeCA(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edgesim cluster CA", Organization: []string{"edgesim"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.pem": certPEM, "ca.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	return certPEM
}

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgesim/edgesim/driver"
	"github.com/edgesim/edgesim/tenant"
)

// loadOptions are the flags of 'edgesim load'.
type loadOptions struct {
	client                 clientOptions
	tenants, users         int
	config, usersFile      string
	rate                   float64
	concurrency            int
	duration               time.Duration
	count                  int64
	maxInFlight            int
	drain                  time.Duration
	steps                  string
	resume                 bool
	out, html, metricsAddr string
	progress               string
	shard, loginsOut       string
	notes                  []string // for the results' settings (demo)
}

func (o *loadOptions) register(fs *flagSet) {
	o.client.register(fs)
	fs.IntVar(&o.tenants, "tenants", 0, "users from `N` synthetic tenants tenant-1.example … (as 'edgesim serve --tenants N')")
	fs.IntVar(&o.users, "users", tenant.DefaultUsers, "users `M` per synthetic tenant (user1 … userM)")
	fs.StringVar(&o.config, "config", "", "users from a tenants YAML `FILE` (each tenant's users)")
	fs.StringVar(&o.usersFile, "users-file", "", "users from a `FILE` of addresses, one user@domain per line")
	fs.Float64Var(&o.rate, "rate", 0, "open model: start `R` logins per second, whatever the edge's speed")
	fs.IntVar(&o.concurrency, "concurrency", 0, "closed model (instead of --rate): keep `C` logins in flight")
	fs.DurationVar(&o.duration, "duration", 0, "schedule logins for this long, like 30s or 10m")
	fs.Int64Var(&o.count, "count", 0, "schedule this many logins (with --duration: whichever ends first)")
	fs.IntVar(&o.maxInFlight, "max-in-flight", 10000, "open model: at most this many logins under way; later ones wait, and their wait counts in their latency")
	fs.DurationVar(&o.drain, "drain", 30*time.Second, "after the last login is scheduled, wait this long for those in flight")
	fs.StringVar(&o.steps, "steps", "all", "what a login does: a list of "+strings.Join(stepNames(), ",")+" (e.g. srv,tls for handshakes only)")
	fs.BoolVar(&o.resume, "resume", false, "each simulated device resumes its TLS session, as a re-connecting client does")
	fs.StringVar(&o.out, "out", "", "write the results as JSON to `FILE` ('edgesim report' reads and merges them)")
	fs.StringVar(&o.html, "html", "", "write the HTML report to `FILE`")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve the driver's Prometheus metrics on `HOST:PORT` during the run")
	fs.StringVar(&o.shard, "shard", "", "run shard `I/N` of a run split over N drivers: users I, I+N, …, and an N-th of --rate, --count and --concurrency; merge the shards' --out files with 'edgesim report'")
	fs.StringVar(&o.loginsOut, "logins-out", "", "write one JSON line per login to `FILE`: user, intended start, ms, ok, failed step and class")
	fs.StringVar(&o.progress, "progress", "auto", "live progress on stderr: auto (each second on a terminal, every 10 s otherwise), on, off")
}

func stepNames() []string {
	out := make([]string, len(driver.Steps))
	for i, s := range driver.Steps {
		out[i] = string(s)
	}
	return out
}

// syntheticUsers is the population of 'serve --tenants N --users M', computed on demand: login i
// goes to tenant i mod N, so consecutive logins spread over tenants.
type syntheticUsers struct{ tenants, users int64 }

func (s syntheticUsers) Len() int64 { return s.tenants * s.users }
func (s syntheticUsers) At(i int64) string {
	i %= s.Len()
	return tenant.SyntheticUser(int(i/s.tenants%s.users)+1) + "@" + tenant.SyntheticDomain(int(i%s.tenants)+1)
}

// interleavedUsers lists every user of every tenant, first users of all tenants first, so
// consecutive logins spread over tenants as they do with --tenants.
func interleavedUsers(dir tenant.Directory) driver.UserList {
	var list driver.UserList
	for round := 0; ; round++ {
		added := false
		dir.Each(func(t *tenant.Tenant) bool {
			if round < len(t.Users) {
				list = append(list, t.Users[round]+"@"+t.Domain)
				added = true
			}
			return true
		})
		if !added {
			return list
		}
	}
}

// loadUsers builds the user population from the flags.
func (o *loadOptions) loadUsers() (driver.Users, string, error) {
	n := 0
	for _, set := range []bool{o.tenants > 0, o.config != "", o.usersFile != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, "", usagef("say whose logins to replay: --tenants N (synthetic tenants), --config tenants.yaml or --users-file FILE")
	case n > 1:
		return nil, "", usagef("--tenants, --config and --users-file each give the users: use one")
	case o.tenants < 0 || o.users < 1:
		return nil, "", usagef("--tenants and --users must be at least 1")
	case o.tenants > 0:
		return syntheticUsers{int64(o.tenants), int64(o.users)}, fmt.Sprintf("%d synthetic tenants × %d users", o.tenants, o.users), nil
	case o.config != "":
		dir, err := tenant.Load(o.config)
		if err != nil {
			return nil, "", usagef("--config: %v", err)
		}
		return interleavedUsers(dir), fmt.Sprintf("%s (%d tenants)", o.config, dir.Len()), nil
	}
	f, err := os.Open(o.usersFile)
	if err != nil {
		return nil, "", usagef("--users-file: %v", err)
	}
	defer f.Close()
	list, err := driver.ReadUsers(f)
	if err != nil {
		return nil, "", fmt.Errorf("--users-file %s: %w", o.usersFile, err)
	}
	return list, o.usersFile, nil
}

func runLoad(args []string, stdout, stderr io.Writer) error {
	var o loadOptions
	fs := newFlagSet("load", "edgesim load --dns HOST:PORT --ca FILE (--tenants N | --config FILE | --users-file FILE) (--rate R | --concurrency C) (--duration D | --count N) [--steps srv,tls] [--out results.json]", stderr)
	o.register(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	// A results file that cannot be written must be known before the run, not after it.
	for _, f := range []string{o.out, o.html} {
		if f == "" {
			continue
		}
		if st, err := os.Stat(filepath.Dir(f)); err != nil || !st.IsDir() {
			return usagef("cannot write %s: its folder %s does not exist", f, filepath.Dir(f))
		}
	}
	ctx, stop := interruptible(stderr, fmt.Sprintf("no new logins; waiting up to %v (--drain) for those in flight, then writing the results", o.drain))
	defer stop()
	res, err := o.run(ctx, "edgesim load "+strings.Join(args, " "), stderr)
	if err != nil {
		return err
	}
	return finishLoad(res, o.out, o.html, stdout, stderr)
}

// run checks the flags, runs the load and returns its results.
func (o *loadOptions) run(ctx context.Context, command string, stderr io.Writer) (*driver.Results, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	users, source, err := o.loadUsers()
	if err != nil {
		return nil, err
	}
	return o.runUsers(ctx, users, command, source, stderr)
}

// check refuses contradictory or missing bounds.
func (o *loadOptions) check() error {
	switch {
	case o.rate < 0:
		return usagef("--rate %g: want a positive number of logins per second", o.rate)
	case o.concurrency < 0:
		return usagef("--concurrency %d: want a positive number of logins in flight", o.concurrency)
	case o.duration < 0:
		return usagef("--duration %v: want a positive duration, like 30s or 10m", o.duration)
	case o.count < 0:
		return usagef("--count %d: want a positive number of logins", o.count)
	case o.maxInFlight < 1:
		return usagef("--max-in-flight %d: want at least 1", o.maxInFlight)
	case o.drain <= 0:
		return usagef("--drain %v: want a positive duration, like 30s", o.drain)
	case strings.TrimSpace(o.steps) == "":
		return usagef("--steps is empty: give a list of %s, or all", strings.Join(stepNames(), ","))
	case o.rate > 0 && o.concurrency > 0:
		return usagef("--rate (open model) and --concurrency (closed model) both given: use one")
	case o.rate == 0 && o.concurrency == 0:
		return usagef("give --rate R (logins per second) or --concurrency C")
	case o.duration == 0 && o.count == 0:
		return usagef("bound the run with --duration D or --count N")
	}
	return nil
}

// runUsers runs the load over users.
func (o *loadOptions) runUsers(ctx context.Context, users driver.Users, command, source string, stderr io.Writer) (*driver.Results, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	progressTTY, every := isTerminal(stderr), 10*time.Second
	switch o.progress {
	case "auto":
	case "on":
		every = time.Second
	case "off":
	default:
		return nil, usagef("--progress %q: want auto, on or off", o.progress)
	}
	steps, err := driver.ParseSteps(o.steps)
	if err != nil {
		return nil, usagef("--steps: %v", err)
	}
	cfg, err := o.client.config(steps)
	if err != nil {
		return nil, err
	}
	client, err := driver.NewClient(cfg)
	if err != nil {
		return nil, usagef("%v", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return nil, usagef("--metrics-addr: %v", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		fmt.Fprintf(stderr, "driver metrics on http://%s/metrics\n", ln.Addr())
	}
	model := "open"
	if o.concurrency > 0 {
		model = "closed"
	}
	var progress io.Writer
	if o.progress != "off" {
		progress = stderr
	}
	// A shard takes its part of the users, the rate, the count and the concurrency; its logins
	// are due between the other shards' (shard I starts I/R later).
	rate, count, concurrency, offset := o.rate, o.count, o.concurrency, time.Duration(0)
	shardName := ""
	if o.shard != "" {
		sh, err := driver.ParseShard(o.shard)
		if err != nil {
			return nil, usagef("--shard: %v", err)
		}
		all := users.Len()
		if users = sh.Users(users); users == nil {
			return nil, usagef("--shard %s: there are only %d user(s), so this shard has none; use fewer shards", sh, all)
		}
		rate /= float64(sh.N)
		count = sh.Count(count)
		if o.count > 0 && count == 0 {
			return nil, usagef("--shard %s: --count %d leaves this shard no logins", sh, o.count)
		}
		if concurrency > 0 {
			concurrency = max((concurrency+sh.N-1-sh.I)/sh.N, 1)
		}
		if o.rate > 0 {
			offset = time.Duration(float64(sh.I) * float64(time.Second) / o.rate)
		}
		shardName = sh.String()
	}
	login := driver.LoginFunc(client.Login)
	var lw *loginWriter
	if o.loginsOut != "" {
		f, err := os.Create(o.loginsOut)
		if err != nil {
			return nil, usagef("--logins-out: %v", err)
		}
		lw = &loginWriter{f: f, w: bufio.NewWriter(f)}
		defer lw.close()
		login = lw.wrap(login)
	}
	r, err := driver.NewRunner(driver.RunConfig{
		Login: login, Users: users,
		Rate: rate, Concurrency: concurrency, Duration: o.duration, Count: count, Offset: offset,
		MaxInFlight: o.maxInFlight, Drain: o.drain, Resume: o.resume, Steps: client.Steps(),
		Progress: progress, ProgressTTY: progressTTY, ProgressEvery: every, Registerer: reg,
		Settings: driver.Settings{
			Command: command, Model: model, Rate: rate, Concurrency: concurrency,
			Duration: o.duration.Seconds(), Count: count, Steps: client.Steps(), Resume: o.resume,
			Users: users.Len(), Source: source, DNS: o.client.dns, Shard: shardName, Extra: o.notes,
		},
	})
	if err != nil {
		return nil, usagef("%v", err)
	}
	res, err := r.Run(ctx)
	if lw != nil {
		if cerr := lw.close(); cerr != nil && err == nil {
			err = fmt.Errorf("--logins-out %s: %w", o.loginsOut, cerr)
		}
	}
	return res, err
}

// loginWriter writes one JSON line per finished login (--logins-out): which user, when it was
// meant to start, how long it took and how it ended.
type loginWriter struct {
	mu     sync.Mutex
	f      *os.File
	w      *bufio.Writer
	err    error
	closed bool
}

type loginLine struct {
	User    string       `json:"user"`
	Start   time.Time    `json:"start"`
	Elapsed float64      `json:"ms"`
	OK      bool         `json:"ok"`
	Failed  driver.Step  `json:"failed,omitempty"`
	Class   driver.Class `json:"class,omitempty"`
}

func (lw *loginWriter) wrap(login driver.LoginFunc) driver.LoginFunc {
	return func(ctx context.Context, user string, s tls.ClientSessionCache) *driver.Trace {
		tr := login(ctx, user, s)
		b, _ := json.Marshal(loginLine{User: user, Start: tr.Start, Elapsed: float64(tr.Elapsed) / 1e6, OK: tr.OK, Failed: tr.Failed, Class: tr.Class})
		lw.mu.Lock()
		if lw.err == nil && !lw.closed {
			_, lw.err = lw.w.Write(append(b, '\n'))
		}
		lw.mu.Unlock()
		return tr
	}
}

// close flushes and closes the file once and returns the first error.
func (lw *loginWriter) close() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if !lw.closed {
		lw.closed = true
		if lw.err == nil {
			lw.err = lw.w.Flush()
		}
		if err := lw.f.Close(); lw.err == nil {
			lw.err = err
		}
	}
	return lw.err
}

// finishLoad prints the summary to stdout, writes the files asked for and says where on notes.
func finishLoad(res *driver.Results, out, html string, stdout, notes io.Writer) error {
	var errs []error
	if err := res.WriteSummary(stdout); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []struct {
		path, what string
		write      func(io.Writer) error
	}{{out, "results", res.WriteJSON}, {html, "report", res.WriteHTML}} {
		if f.path == "" {
			continue
		}
		if err := writeFileWith(f.path, f.write); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(notes, "%s written to %s\n", f.what, f.path)
	}
	// A run that completed exits 0 even when logins failed: the failures are its findings.
	return errors.Join(errs...)
}

// interruptible returns a context cancelled by the first SIGINT or SIGTERM, which prints
// "stopping: <what>"; a second one ends the process at once (Go's default for the signal).
// stop ends the watch (and the context).
func interruptible(stderr io.Writer, what string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
			fmt.Fprintf(stderr, "\nstopping: %s. Ctrl-C again quits without them.\n", what)
		case <-done:
		}
		signal.Stop(sigs)
		cancel()
	}()
	var once sync.Once
	return ctx, func() { once.Do(func() { close(done) }) }
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

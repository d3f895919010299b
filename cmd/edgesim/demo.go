package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/edgesim/edgesim/driver"
	"github.com/edgesim/edgesim/tenant"
)

// demoOptions are the flags of 'edgesim demo'.
type demoOptions struct {
	tenants  int
	rate     float64
	duration time.Duration
	out      string
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	var o demoOptions
	fs := newFlagSet("demo", "edgesim demo [--tenants 300] [--rate 100] [--duration 5s] [--out edgesim-demo]", stderr)
	fs.IntVar(&o.tenants, "tenants", 300, "generated tenants besides the scenario tenants (one per certificate fault)")
	fs.Float64Var(&o.rate, "rate", 100, "logins per second in the load run")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of the load run")
	fs.StringVar(&o.out, "out", "edgesim-demo", "`DIR` for the report, the results file and the certificates (reused next time)")
	if err := fs.parse(args); err != nil {
		return err
	}
	switch {
	case o.tenants < 1 || o.tenants > 100000:
		return usagef("--tenants %d: want 1 … 100000", o.tenants)
	case o.rate <= 0 || o.duration <= 0:
		return usagef("--rate and --duration must be positive")
	}
	ctx, stop := interruptible(stderr, "finishing the demo early")
	defer stop()
	begin := time.Now()

	// 1. The simulated Expressway-E, every listener on a free loopback port.
	dir, faulty, err := demoTenants(o.tenants)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	so := serveOptions{
		dir: dir, data: filepath.Join(o.out, "data"), keyType: string(tenant.KeyECDSAP256),
		httpsAddr: "127.0.0.1:0", xmppAddr: "127.0.0.1:0", sipAddr: "127.0.0.1:0", dnsAddr: "127.0.0.1:0",
		handshakeTimeout: 10 * time.Second, idleTimeout: time.Minute, maxConns: 10000,
		curves: "x25519,p256", tlsMin: "1.2",
	}
	fmt.Fprintf(stdout, "edgesim demo: starting a simulated Expressway-E on loopback with %d tenants, %d of them with a faulty certificate\n", dir.Len(), faulty)
	srv, err := startServer(so, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.shutdown(sctx)
	}()
	https, xmpp, sip := srv.edge.Addrs()
	ca := srv.certs.Load().CAFile
	fmt.Fprintf(stdout, "  dns %s   https %s   xmpp %s   sip %s   CA %s\n\n", srv.dns.Addr(), https, xmpp, sip, ca)

	co := clientOptions{dns: srv.dns.Addr(), ca: ca, timeout: 5 * time.Second, sipMethod: "REGISTER"}
	cfg, err := co.config(nil)
	if err != nil {
		return err
	}
	client, err := driver.NewClient(cfg)
	if err != nil {
		return err
	}

	// 2. One good and one failing login, traced.
	for i, l := range []struct{ user, what string }{
		{"bob@example.com", "a login that works"},
		{"carol@example.org", "a tenant whose domain certificate is missing"},
	} {
		fmt.Fprintf(stdout, "%d. %s: edgesim login --dns %s --ca %s %s\n\n", i+1, l.what, co.dns, ca, l.user)
		printTrace(stdout, client.Login(ctx, l.user, nil))
		fmt.Fprintln(stdout)
	}

	// 3. A short load across every user of every tenant, the faulty ones included.
	users := interleavedUsers(dir)
	lo := loadOptions{
		client: co, rate: o.rate, duration: o.duration, maxInFlight: 10000, drain: 10 * time.Second,
		steps: "all", progress: "auto",
		notes: []string{"the simulated edge ran in the driver's process: the driver's CPU figure includes the edge's"},
	}
	fmt.Fprintf(stdout, "3. a load run: %g logins per second for %v over %d users (every step of the login)\n\n", o.rate, o.duration, len(users))
	res, err := lo.runUsers(ctx, users, fmt.Sprintf("edgesim demo --rate %g --duration %v", o.rate, o.duration), "demo tenants", stderr)
	if err != nil {
		return err
	}
	out, html := filepath.Join(o.out, "results.json"), filepath.Join(o.out, "report.html")
	if err := finishLoad(res, out, html, stdout, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\ndemo finished in %.1fs. Open %s in a browser; run 'edgesim serve' to keep an edge running.\n", time.Since(begin).Seconds(), html)
	return nil
}

// demoTenants returns the scenario tenants of 'edgesim serve' plus n generated valid ones, and
// how many have a faulty certificate.
func demoTenants(n int) (tenant.Directory, int, error) {
	var cfg tenant.Config
	if err := yaml.Unmarshal(defaultTenants, &cfg); err != nil {
		return nil, 0, err
	}
	faulty := 0
	for _, t := range cfg.Tenants {
		if t.Certificate != "" && t.Certificate != tenant.Valid && t.Certificate != tenant.Wildcard { // a wildcard passes
			faulty++
		}
	}
	for k := 1; k <= n; k++ {
		cfg.Tenants = append(cfg.Tenants, tenant.Tenant{Domain: tenant.SyntheticDomain(k)})
	}
	dir, err := cfg.Directory()
	return dir, faulty, err
}

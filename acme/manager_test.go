package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgesim/edgesim/acme/pebbletest"
)

// world is one loopback test setup: DNS, edge listener, HTTP listener and Pebble pointed at them.
type world struct {
	ch     *Challenges
	dns    *testDNS
	edge   *testEdge
	pebble *pebbletest.Pebble
	store  certmagic.Storage
	reg    *prometheus.Registry

	mu        sync.Mutex
	delivered map[string][]*tls.Certificate // domain -> every certificate OnCertificate got
}

// newWorld serves zones whose apex and mra.<apex> resolve to 127.0.0.1, except zones named
// noaddr.*, which have no address records.
func newWorld(t *testing.T, zones []string, opts pebbletest.Options) *world {
	t.Helper()
	w := &world{ch: &Challenges{}, reg: prometheus.NewRegistry(), delivered: make(map[string][]*tls.Certificate)}
	hosts := make(map[string]net.IP)
	for _, z := range zones {
		if strings.HasPrefix(z, "noaddr.") {
			continue
		}
		hosts[z] = net.IPv4(127, 0, 0, 1)
		hosts["mra."+z] = net.IPv4(127, 0, 0, 1)
	}
	w.dns = startDNS(t, w.ch, zones, hosts)
	w.edge = startEdge(t, w.ch)
	opts.Resolver = w.dns.addr
	opts.TLSPort = w.edge.port
	opts.HTTPPort = startHTTP(t, w.ch)
	w.pebble = pebbletest.Start(t, opts)
	w.store = &certmagic.FileStorage{Path: t.TempDir()}
	return w
}

// config returns a Manager configuration for this world; mra.<domain> rides on each certificate.
func (w *world) config(solvers ...string) Config {
	return Config{
		CA:           w.pebble.DirectoryURL,
		Roots:        w.pebble.Roots,
		Email:        "ops@sp.example",
		Storage:      w.store,
		Challenges:   w.ch,
		Solvers:      solvers,
		Names:        func(d string) []string { return []string{"mra." + d, d} },
		DNSResolvers: []string{w.dns.addr},
		Registerer:   w.reg,
		OnCertificate: func(d string, c *tls.Certificate) {
			w.edge.put(c)
			w.mu.Lock()
			w.delivered[d] = append(w.delivered[d], c)
			w.mu.Unlock()
		},
	}
}

func (w *world) deliveries(d string) []*tls.Certificate {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.delivered[d])
}

func newManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Stop)
	return m
}

// waitSettled waits until domain leaves the queued and ordering states.
func waitSettled(t *testing.T, m *Manager, domain string, timeout time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := m.Status(domain)
		if st.State != StateQueued && st.State != StateOrdering {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s after %v", domain, st.State, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkChain verifies c against Pebble's roots for every name of the domain.
func (w *world) checkChain(t *testing.T, domain string, c *tls.Certificate) {
	t.Helper()
	if c.Leaf == nil {
		t.Fatalf("%s: OnCertificate got no Leaf", domain)
	}
	inter := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(ic)
	}
	for _, name := range []string{domain, "mra." + domain} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: w.pebble.IssuerRoots, Intermediates: inter}); err != nil {
			t.Errorf("%s: certificate does not verify for %s: %v", domain, name, err)
		}
	}
}

// dialSerial connects to the edge as a client would and returns the served leaf's serial.
func (w *world) dialSerial(t *testing.T, serverName string) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", w.edge.addr,
		&tls.Config{ServerName: serverName, RootCAs: w.pebble.IssuerRoots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("dial %s: %v", serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

func orders(reg *prometheus.Registry, result string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "edgesim_acme_orders_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestManager issues for 20 tenants with TLS-ALPN-01 through the bounded queue, then exercises
// DNS-01, HTTP-01, forced renewal, loading by a second Manager, disabling and failures against
// one Pebble.
func TestManager(t *testing.T) {
	t.Parallel()
	const tenants = 20
	var zones []string
	for k := 1; k <= tenants; k++ {
		zones = append(zones, fmt.Sprintf("tenant-%d.example", k))
	}
	zones = append(zones, "dns-1.example", "dns-2.example", "dns-3.example", "http-1.example", "noaddr.example")
	w := newWorld(t, zones, pebbletest.Options{})
	m := newManager(t, w.config(SolverTLSALPN))

	start := time.Now()
	for _, z := range zones[:tenants] {
		if err := m.Enable(z); err != nil {
			t.Fatalf("Enable(%s): %v", z, err)
		}
	}
	if err := m.Enable(zones[0]); err != nil { // idempotent
		t.Fatalf("Enable again: %v", err)
	}
	for _, z := range zones[:tenants] {
		st := waitSettled(t, m, z, 30*time.Second)
		if st.State != StateValid || st.Challenge != SolverTLSALPN || st.Orders != 1 {
			t.Fatalf("%s: %+v", z, st)
		}
		if !slices.Equal(st.Names, []string{z, "mra." + z}) {
			t.Errorf("%s: names %v, want the domain then mra.<domain>", z, st.Names)
		}
		got := w.deliveries(z)
		if len(got) != 1 {
			t.Fatalf("%s: OnCertificate called %d times, want 1", z, len(got))
		}
		w.checkChain(t, z, got[0])
		if serial := w.dialSerial(t, "mra."+z); serial != st.Serial {
			t.Errorf("%s: edge served serial %s, status says %s", z, serial, st.Serial)
		}
	}
	t.Logf("%d domains issued with tls-alpn-01 in %v", tenants, time.Since(start).Round(time.Millisecond))
	if got := orders(w.reg, "success"); got != tenants {
		t.Errorf("orders_total{success} = %v, want %d", got, tenants)
	}
	if got := testutil.ToFloat64(m.met.managed); got != tenants {
		t.Errorf("managed_domains = %v", got)
	}
	if got := testutil.ToFloat64(m.met.expiry); got <= float64(time.Now().Unix()) {
		t.Errorf("certificate_expiry_timestamp_seconds = %v, want a time ahead", got)
	}

	t.Run("dns-01", func(t *testing.T) {
		md := newManager(t, w.config(SolverDNS))
		for _, z := range []string{"dns-1.example", "dns-2.example", "dns-3.example"} {
			if err := md.Enable(z); err != nil {
				t.Fatal(err)
			}
		}
		for _, z := range []string{"dns-1.example", "dns-2.example", "dns-3.example"} {
			st := waitSettled(t, md, z, 20*time.Second)
			if st.State != StateValid || st.Challenge != SolverDNS {
				t.Fatalf("%s: %+v", z, st)
			}
			w.checkChain(t, z, w.deliveries(z)[0])
			if txt := w.ch.TXT("_acme-challenge." + z); len(txt) != 0 {
				t.Errorf("%s: TXT records left behind: %v", z, txt)
			}
		}

		// A name added to the domain: the stored certificate is deployed at once, then replaced.
		cfg := w.config(SolverDNS)
		cfg.Names = func(d string) []string { return []string{"mra." + d, d, "collab-edge." + d} }
		mn := newManager(t, cfg)
		if err := mn.Enable("dns-1.example"); err != nil {
			t.Fatal(err)
		}
		st := waitSettled(t, mn, "dns-1.example", 20*time.Second)
		want := []string{"dns-1.example", "mra.dns-1.example", "collab-edge.dns-1.example"}
		if st.State != StateValid || st.Orders != 1 || !slices.Equal(st.Names, want) {
			t.Fatalf("after adding a name: %+v", st)
		}
		if got := w.deliveries("dns-1.example"); len(got) != 3 { // first Manager, stored, renewed
			t.Errorf("OnCertificate called %d times for dns-1.example, want 3", len(got))
		}
	})

	t.Run("http-01", func(t *testing.T) {
		mh := newManager(t, w.config(SolverHTTP))
		if err := mh.Enable("http-1.example"); err != nil {
			t.Fatal(err)
		}
		st := waitSettled(t, mh, "http-1.example", 20*time.Second)
		if st.State != StateValid || st.Challenge != SolverHTTP {
			t.Fatalf("%+v", st)
		}
	})

	t.Run("forced renew", func(t *testing.T) {
		const d = "tenant-1.example"
		before := m.Status(d)
		if err := m.Renew(context.Background(), d, true); err != nil {
			t.Fatalf("Renew: %v", err)
		}
		after := m.Status(d)
		if after.Serial == before.Serial || after.State != StateValid || after.Orders != 2 {
			t.Fatalf("before %+v\nafter %+v", before, after)
		}
		got := w.deliveries(d)
		if len(got) != 2 || got[1].Leaf.SerialNumber.Text(16) != after.Serial {
			t.Fatalf("OnCertificate got %d certificates, want the renewed one second", len(got))
		}
		w.checkChain(t, d, got[1])
		if serial := w.dialSerial(t, "MRA.Tenant-1.example"); serial != after.Serial {
			t.Errorf("edge serves %s, want the renewed %s", serial, after.Serial)
		}
		if err := m.Renew(context.Background(), d, false); err != nil { // not due: no order
			t.Fatal(err)
		}
		if st := m.Status(d); st.Orders != 2 || st.Serial != after.Serial {
			t.Errorf("unforced renewal of a fresh certificate ordered: %+v", st)
		}
		if err := m.Renew(context.Background(), "other.example", true); !errors.Is(err, ErrNotManaged) {
			t.Errorf("Renew of an unmanaged domain: %v", err)
		}
	})

	t.Run("second manager loads from storage", func(t *testing.T) {
		var mu sync.Mutex
		loaded := map[string]string{}
		cfg := w.config(SolverTLSALPN)
		cfg.Registerer = prometheus.NewRegistry()
		cfg.OnCertificate = func(d string, c *tls.Certificate) {
			mu.Lock()
			loaded[d] = c.Leaf.SerialNumber.Text(16)
			mu.Unlock()
		}
		m2 := newManager(t, cfg)
		okBefore := orders(w.reg, "success")
		for _, z := range zones[:tenants] {
			if err := m2.Enable(z); err != nil {
				t.Fatal(err)
			}
			// loaded at once: valid and delivered before Enable returns
			st := m2.Status(z)
			mu.Lock()
			serial := loaded[z]
			mu.Unlock()
			if st.State != StateValid || st.Orders != 0 || serial == "" || serial != m.Status(z).Serial {
				t.Fatalf("%s: %+v, delivered serial %q, want %q", z, st, serial, m.Status(z).Serial)
			}
		}
		if got := orders(w.reg, "success"); got != okBefore {
			t.Errorf("loading placed orders: %v -> %v", okBefore, got)
		}
		if got := testutil.ToFloat64(m2.met.managed); got != tenants {
			t.Errorf("managed_domains = %v", got)
		}

		m2.Disable(zones[0])
		if st := m2.Status(zones[0]); st.State != StateDisabled {
			t.Errorf("after Disable: %+v", st)
		}
		if got := testutil.ToFloat64(m2.met.managed); got != tenants-1 {
			t.Errorf("managed_domains after Disable = %v", got)
		}
		mu.Lock()
		delete(loaded, zones[0])
		mu.Unlock()
		if err := m2.Enable(zones[0]); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		serial := loaded[zones[0]]
		mu.Unlock()
		if st := m2.Status(zones[0]); st.State != StateValid || st.Orders != 0 || serial == "" {
			t.Errorf("enabled again: %+v, delivered %q", st, serial)
		}
	})

	t.Run("failures", func(t *testing.T) {
		for _, tc := range []struct {
			name, domain string
			ca           string // "" = Pebble
			want         []string
		}{
			{name: "no address and no zone", domain: "nowhere.invalid-zone.example",
				want: []string{"nowhere.invalid-zone.example"}},
			{name: "no A record", domain: "noaddr.example",
				want: []string{"noaddr.example", "resolve"}},
			{name: "CA unreachable", domain: "unreachable.example", ca: "https://127.0.0.1:1/dir",
				want: []string{"127.0.0.1:1", "connection refused"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cfg := w.config(SolverTLSALPN, SolverDNS)
				cfg.Names = nil
				cfg.Storage = &certmagic.FileStorage{Path: t.TempDir()}
				if tc.ca != "" {
					cfg.CA = tc.ca
				}
				if tc.domain == "noaddr.example" {
					cfg.Solvers = []string{SolverTLSALPN}
				}
				mf := newManager(t, cfg)
				failedBefore := orders(w.reg, "failure")
				if err := mf.Enable(tc.domain); err != nil {
					t.Fatal(err)
				}
				st := waitSettled(t, mf, tc.domain, 20*time.Second)
				if st.State != StateFailed || st.NextRetry.IsZero() {
					t.Fatalf("%+v", st)
				}
				for _, s := range tc.want {
					if !strings.Contains(st.LastError, s) {
						t.Errorf("LastError %q does not mention %q", st.LastError, s)
					}
				}
				t.Logf("LastError: %s", st.LastError)
				if got := orders(w.reg, "failure"); got <= failedBefore {
					t.Errorf("orders_total{failure} did not grow: %v", got)
				}
				if len(w.deliveries(tc.domain)) != 0 {
					t.Error("OnCertificate called for a failed domain")
				}
			})
		}
	})

	if len(w.ch.TXT("_acme-challenge.dns-1.example")) != 0 {
		t.Error("challenge records left in Challenges")
	}
}

// TestBackgroundRenewal lets certmagic's maintenance renew a short-lived certificate by itself.
func TestBackgroundRenewal(t *testing.T) {
	t.Parallel()
	const d = "short.example"
	w := newWorld(t, []string{d}, pebbletest.Options{Validity: 6 * time.Second})
	cfg := w.config(SolverTLSALPN)
	cfg.RenewCheckInterval = 200 * time.Millisecond
	renewed := make(chan *tls.Certificate, 8)
	deliver := cfg.OnCertificate
	cfg.OnCertificate = func(d string, c *tls.Certificate) {
		deliver(d, c)
		renewed <- c
	}
	m := newManager(t, cfg)
	if err := m.Enable(d); err != nil {
		t.Fatal(err)
	}
	first := <-renewed
	select {
	case second := <-renewed:
		if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
			t.Fatal("same certificate delivered twice")
		}
		if !second.Leaf.NotAfter.After(first.Leaf.NotAfter) {
			t.Errorf("renewed certificate ends %v, the first %v", second.Leaf.NotAfter, first.Leaf.NotAfter)
		}
		w.checkChain(t, d, second)
		if serial := w.dialSerial(t, "mra."+d); serial != second.Leaf.SerialNumber.Text(16) {
			t.Errorf("edge serves %s after renewal", serial)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no background renewal; status %+v", m.Status(d))
	}
	if st := m.Status(d); st.Orders < 2 {
		t.Errorf("orders %d after a renewal", st.Orders)
	}
}

func TestNewErrors(t *testing.T) {
	store := &certmagic.FileStorage{Path: t.TempDir()}
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"no CA", Config{Storage: store}, ErrBadCA},
		{"CA not a URL", Config{CA: "pebble:14000", Storage: store}, ErrBadCA},
		{"no storage", Config{CA: "https://127.0.0.1:14000/dir"}, ErrNoStorage},
		{"dns-01 without resolvers", Config{CA: "https://127.0.0.1:14000/dir", Storage: store, Solvers: []string{SolverDNS}}, ErrNoResolvers},
		{"unknown solver", Config{CA: "https://127.0.0.1:14000/dir", Storage: store, Solvers: []string{"tls-sni-01"}}, ErrBadSolver},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.cfg)
			if !errors.Is(err, tc.want) {
				if m != nil {
					m.Stop()
				}
				t.Fatalf("New: %v, want %v", err, tc.want)
			}
		})
	}

	m, err := New(Config{CA: "https://127.0.0.1:14000/dir", Storage: store})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	for _, bad := range []string{"", "localhost", "127.0.0.1", "a b.example", ".example.com"} {
		if err := m.Enable(bad); !errors.Is(err, ErrBadDomain) {
			t.Errorf("Enable(%q): %v, want ErrBadDomain", bad, err)
		}
	}
	if st := m.Status("never.example"); st.State != StateUnmanaged {
		t.Errorf("Status of an unknown domain: %+v", st)
	}
	m.Stop()
	if err := m.Enable("late.example"); !errors.Is(err, ErrStopped) {
		t.Errorf("Enable after Stop: %v", err)
	}
}

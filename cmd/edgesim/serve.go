package main

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/edgesim/edgesim/acme"
	"github.com/edgesim/edgesim/dnssrv"
	"github.com/edgesim/edgesim/proxy"
	"github.com/edgesim/edgesim/sni"
	"github.com/edgesim/edgesim/tenant"
	"github.com/edgesim/edgesim/tenant/certdir"
	"github.com/edgesim/edgesim/tenant/domains"
)

// defaultTenants is served when neither --config nor --tenants is given: one tenant per
// certificate scenario, so every failure a Jabber client meets can be tried at once.
//
//go:embed default-tenants.yaml
var defaultTenants []byte

// serveOptions are the flags of 'edgesim serve'.
type serveOptions struct {
	config, data, keyType                      string
	tenants, users                             int
	httpsAddr, xmppAddr, sipAddr, dnsAddr      string
	metricsAddr, advertise                     string
	handshakeTimeout, idleTimeout, drainTimout time.Duration
	maxConns                                   int
	gcHeadroom                                 int
	curves, tlsMin                             string
	logFormat, logLevel                        string
	adminAddr, adminTokenFile                  string
	acme                                       acmeOptions
	ticketKeys                                 string
	certDir                                    string
	certDirPoll                                time.Duration
	dir                                        tenant.Directory // set by demo: tenants built in code
	adminSecureLoopback                        bool             // set by tests: TLS and a token on loopback too
}

func (o *serveOptions) register(fs *flagSet) {
	fs.StringVar(&o.config, "config", "", "tenants YAML file (default: the built-in scenario tenants, unless --tenants is set)")
	fs.IntVar(&o.tenants, "tenants", 0, "generate `N` tenants tenant-1.example … tenant-N.example instead of reading --config")
	fs.IntVar(&o.users, "users", tenant.DefaultUsers, "users `M` per generated tenant (user1 … userM)")
	fs.StringVar(&o.data, "data", tenant.DefaultDataDir, "`DIR` keeping the local CA (DIR/ca.pem), keys (0600) and certificates between runs")
	fs.StringVar(&o.keyType, "key-type", string(tenant.DefaultKeyType), "leaf key type: rsa-2048|rsa-4096|ecdsa-p256|ecdsa-p384")
	fs.StringVar(&o.httpsAddr, "https-addr", proxy.DefaultHTTPSAddr, "HTTPS edge listener (get_edge_config)")
	fs.StringVar(&o.xmppAddr, "xmpp-addr", proxy.DefaultXMPPAddr, "XMPP listener (STARTTLS)")
	fs.StringVar(&o.sipAddr, "sip-addr", proxy.DefaultSIPAddr, "SIP over TLS listener")
	fs.StringVar(&o.dnsAddr, "dns-addr", dnssrv.DefaultAddr, "authoritative DNS, UDP and TCP")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9100", "Prometheus /metrics and /healthz ('' disables)")
	fs.StringVar(&o.advertise, "advertise-addr", "", "`IP` the DNS gives for the edge hosts (default: the HTTPS listener's address)")
	fs.DurationVar(&o.handshakeTimeout, "handshake-timeout", proxy.DefaultHandshakeTimeout, "limit on a TLS handshake (and the XMPP exchange before it)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", proxy.DefaultIdleTimeout, "close connections idle this long")
	fs.DurationVar(&o.drainTimout, "drain-timeout", 10*time.Second, "on SIGINT/SIGTERM, wait this long for in-flight connections")
	fs.IntVar(&o.maxConns, "max-conns", proxy.DefaultMaxConns, "open connections per listener; more are closed at once")
	fs.IntVar(&o.gcHeadroom, "gc-headroom", defaultGCHeadroomMiB, "let the heap grow at least `MiB` between garbage collections (Go's default: as much as the live heap); 0, or GOGC set: Go's default")
	fs.StringVar(&o.curves, "curves", "x25519,p256", "key-exchange groups offered, in order: x25519, p256, p384, p521, x25519mlkem768")
	fs.StringVar(&o.tlsMin, "tls-min", "1.2", "lowest TLS version: 1.2 or 1.3")
	fs.StringVar(&o.logFormat, "log-format", "console", "log format: console or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.adminAddr, "admin-addr", defaultAdminAddr, "admin API `HOST:PORT` for domain certificates ('edgesim domains'); on loopback plain HTTP without a token, beyond it HTTPS and a bearer token ('' disables)")
	o.acme.register(fs)
	fs.StringVar(&o.ticketKeys, "session-ticket-keys", "", ticketKeysHelp)
	fs.StringVar(&o.certDir, "cert-dir", "", "serve certificates from `DIR`/<name>/tls.crt and tls.key (mounted Kubernetes TLS Secrets) for every DNS name in their SANs: over the provisioned ones, under API domains; reloaded on change")
	fs.DurationVar(&o.certDirPoll, "cert-dir-poll", certdir.DefaultPoll, "how often --cert-dir is read again for changes")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "bearer token `FILE` for the admin API when bound beyond loopback; made on first use (default DIR/"+adminTokenName+" in --data)")
}

func runServe(args []string, stdout, stderr io.Writer) error {
	var o serveOptions
	fs := newFlagSet("serve", "edgesim serve [--tenants N | --config tenants.yaml] [flags]", stderr)
	o.register(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	log, err := newLogger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.gcHeadroom < 0 {
		return usagef("--gc-headroom %d: want 0 (Go's default) or more MiB", o.gcHeadroom)
	}
	s, err := startServer(o, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	if o.gcHeadroom > 0 && os.Getenv("GOGC") == "" {
		defer startGCHeadroom(uint64(o.gcHeadroom) << 20)()
	}
	s.printBanner(stdout)
	<-ctx.Done()
	stop()
	log.Info("shutting down: draining connections", zap.Duration("timeout", o.drainTimout))
	sctx, cancel := context.WithTimeout(context.Background(), o.drainTimout)
	defer cancel()
	if err := s.shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// server is a running edgesim serve: the parts wired leaf first (tenants, certificates, SNI store,
// listeners, DNS, metrics).
type server struct {
	log      *zap.Logger
	dir      tenant.Directory
	certs    atomic.Pointer[tenant.Result] // set once provisioning is done
	store    *sni.Store
	edge     *proxy.Edge
	dns      *dnssrv.Server
	metrics  *http.Server
	metricLn net.Listener
	dataDir  string
	admin    *adminServer     // nil when --admin-addr is ''
	domains  *domains.Manager // domain certificates added through the admin API
	acme     *acme.Manager    // nil without --acme-ca
	certDir  *certDirSource   // nil without --cert-dir
	// challenges hold pending ACME validations: TXT records for the DNS, TLS-ALPN-01
	// certificates for the HTTPS listener.
	challenges *acme.Challenges
	reg        *prometheus.Registry
}

func loadDirectory(o serveOptions) (tenant.Directory, error) {
	switch {
	case o.dir != nil:
		return o.dir, nil
	case o.config != "" && o.tenants > 0:
		return nil, usagef("--config and --tenants both given: use one")
	case o.config != "":
		return tenant.Load(o.config)
	case o.tenants > 0:
		return tenant.Synthetic(o.tenants, o.users)
	case o.tenants < 0:
		return nil, usagef("--tenants must be at least 1, got %d", o.tenants)
	default:
		return tenant.Parse(defaultTenants)
	}
}

func startServer(o serveOptions, log *zap.Logger, reg *prometheus.Registry) (s *server, err error) {
	tlsCfg, err := tlsOptions(o.curves, o.tlsMin)
	if err != nil {
		return nil, err
	}
	var advertise netip.Addr
	if o.advertise != "" {
		if advertise, err = netip.ParseAddr(o.advertise); err != nil {
			return nil, usagef("--advertise-addr %q is not an IP address", o.advertise)
		}
	}
	dir, err := loadDirectory(o)
	if err != nil {
		return nil, err
	}
	var ticketKeys [][32]byte
	if o.ticketKeys != "" {
		if ticketKeys, err = loadTicketKeys(o.ticketKeys); err != nil {
			return nil, err
		}
	}
	keyType, err := tenant.ParseKeyType(o.keyType)
	if err != nil {
		return nil, usagef("--key-type: %v", err)
	}

	s = &server{log: log, dir: dir, store: sni.New(), dataDir: o.data, challenges: &acme.Challenges{}, reg: reg}
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = s.shutdown(ctx)
		}
	}()
	registerServeMetrics(reg, s)

	// Bind every listener before the (possibly long) certificate provisioning, so a taken port is
	// reported at once. Nothing is accepted until the store is filled.
	// ACME challenges are answered only when ACME can run (--acme-ca): otherwise nothing would
	// ever publish one, and each handshake and zone build would still ask.
	var alpnChallenge func(*tls.ClientHelloInfo) (*tls.Certificate, bool)
	if o.acme.ca != "" {
		alpnChallenge = s.challenges.ALPNCertificate
	}
	s.edge, err = proxy.New(proxy.Config{
		HTTPSAddr: o.httpsAddr, XMPPAddr: o.xmppAddr, SIPAddr: o.sipAddr,
		GetCertificate: s.store.GetCertificate, Tenants: dir, ACMEChallenge: alpnChallenge,
		CurvePreferences: tlsCfg.CurvePreferences, MinVersion: tlsCfg.MinVersion, SessionTicketKeys: ticketKeys,
		HandshakeTimeout: o.handshakeTimeout, IdleTimeout: o.idleTimeout, MaxConns: o.maxConns,
		Logger: log, Registerer: reg,
	})
	if err != nil {
		return s, portHint(err, "--https-addr, --xmpp-addr or --sip-addr")
	}
	if o.metricsAddr != "" {
		if s.metricLn, err = net.Listen("tcp", o.metricsAddr); err != nil {
			return s, portHint(fmt.Errorf("--metrics-addr: %w", err), "--metrics-addr")
		}
	}
	if err = s.listenAdmin(o); err != nil {
		return s, err
	}
	httpsAddr, _, _ := s.edge.Addrs()
	hp := httpsAddr.(*net.TCPAddr).AddrPort()
	if !advertise.IsValid() {
		advertise = hp.Addr().Unmap()
		if advertise.IsUnspecified() {
			advertise = netip.MustParseAddr("127.0.0.1")
			log.Warn("HTTPS listens on all addresses: DNS answers 127.0.0.1 for the edge hosts; set --advertise-addr")
		}
	}
	zones := newTenantZones(dir, hp.Port(), []netip.Addr{advertise}, []netip.Addr{advertise})
	if o.acme.ca != "" {
		zones.withTXT(s.challenges.TXT, s.challenges.TXTVersion)
	}
	s.dns, err = dnssrv.New(dnssrv.Config{
		Addr:       o.dnsAddr,
		Zones:      zones,
		Nameserver: "ns." + dir.Provider().Domain,
		Logger:     log, Registerer: reg,
	})
	if err != nil {
		return s, usagef("--dns-addr: %v", err)
	}
	if err = s.dns.Start(); err != nil {
		return s, portHint(fmt.Errorf("--dns-addr: %w", err), "--dns-addr")
	}

	start := time.Now()
	batch := s.store.Batch()
	var addErr error
	certs, err := tenant.Provision(dir, tenant.Options{Dir: o.data, KeyType: keyType, Logger: log},
		func(host string, c *tls.Certificate) {
			// The handshake needs the DER chain and the key, not the parsed leaf (set only on
			// the files scenario's): dropping it saves about 4 KB per tenant and the garbage
			// collector's time marking it.
			if c.Leaf != nil {
				c = &tls.Certificate{Certificate: c.Certificate, PrivateKey: c.PrivateKey}
			}
			if err := batch.Set(host, c); err != nil && addErr == nil {
				addErr = err
			}
		})
	if err == nil {
		err = addErr
	}
	if err != nil {
		return s, fmt.Errorf("certificates: %w", err)
	}
	batch.Commit()
	s.store.SetPlatform(certs.Platform)
	s.certs.Store(certs)
	// Provisioning parses every certificate once and leaves that garbage behind: at a million
	// tenants about 0.8 GB the runtime would keep from the OS for minutes.
	debug.FreeOSMemory()
	log.Debug("sni store loaded", zap.Int("names", s.store.Len()), zap.Duration("took", time.Since(start)))
	// Domain certificates uploaded through the admin API replace the provisioned ones.
	if err = s.startDomains(o, certs); err != nil {
		return s, err
	}
	// Certificates from --cert-dir replace the provisioned ones, under the API's.
	if err = s.startCertDir(o); err != nil {
		return s, err
	}

	s.edge.Start()
	if s.metricLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = s.metrics.Serve(s.metricLn) }()
	}
	return s, nil
}

// shutdown stops accepting, drains in-flight connections until ctx ends, and closes everything.
// DNS and metrics stop first (they hold no sessions), so the edge gets the whole drain budget;
// connections still open when it runs out are closed, which is not an error.
func (s *server) shutdown(ctx context.Context) error {
	var errs []error
	if s.dns != nil {
		errs = append(errs, s.dns.Shutdown(ctx))
	}
	if s.metrics != nil {
		errs = append(errs, s.metrics.Shutdown(ctx))
	} else if s.metricLn != nil {
		errs = append(errs, s.metricLn.Close())
	}
	if s.admin != nil {
		errs = append(errs, s.admin.shutdown(ctx))
	}
	if s.acme != nil {
		s.acme.Stop()
	}
	if s.certDir != nil {
		s.certDir.stop()
	}
	if s.edge != nil {
		if err := s.edge.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
			s.log.Warn("drain timeout reached: closed the connections still open")
		} else {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func registerServeMetrics(reg *prometheus.Registry, s *server) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(s.store.Collector())
	build := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "edgesim", Name: "build_info",
		Help:        "Always 1; the labels say which edgesim is running.",
		ConstLabels: prometheus.Labels{"version": version(), "goversion": goVersion()}})
	build.Set(1)
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "edgesim", Name: "certificate_earliest_expiry_timestamp_seconds",
		Help: "Earliest NotAfter among the CA, platform and domain certificates in use (expired-scenario certificates left out), Unix seconds."},
		func() float64 {
			if c := s.certs.Load(); c != nil {
				return float64(c.Expiry.Unix())
			}
			return 0
		})
	tenants := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "edgesim", Name: "tenants", Help: "Tenants (service domains) served."})
	tenants.Set(float64(s.dir.Len()))
	reg.MustRegister(build, expiry, tenants)
}

// portHint adds what to do when a listener's port is taken.
func portHint(err error, flags string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: another process holds the port; stop it or choose another with %s", err, flags)
	}
	return err
}

// tlsOptions parses --curves and --tls-min.
func tlsOptions(curves, min string) (*tls.Config, error) {
	names := map[string]tls.CurveID{"x25519": tls.X25519, "p256": tls.CurveP256, "p384": tls.CurveP384,
		"p521": tls.CurveP521, "x25519mlkem768": tls.X25519MLKEM768}
	c := &tls.Config{}
	for _, n := range strings.Split(curves, ",") {
		id, ok := names[strings.ToLower(strings.TrimSpace(n))]
		if !ok {
			return nil, usagef("--curves: unknown group %q (want x25519, p256, p384, p521 or x25519mlkem768, comma-separated)", n)
		}
		c.CurvePreferences = append(c.CurvePreferences, id)
	}
	switch min {
	case "1.2":
		c.MinVersion = tls.VersionTLS12
	case "1.3":
		c.MinVersion = tls.VersionTLS13
	default:
		return nil, usagef("--tls-min %q: want 1.2 or 1.3", min)
	}
	return c, nil
}

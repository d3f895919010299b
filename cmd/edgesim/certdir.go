package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/edgesim/edgesim/sni"
	"github.com/edgesim/edgesim/tenant/certdir"
	"github.com/edgesim/edgesim/tenant/domains"
)

// --cert-dir: certificates from a directory of mounted Kubernetes TLS Secrets
// (DIR/<name>/tls.crt and tls.key, tenant/certdir), served for every DNS name in their SANs.
//
// Precedence for a host name, highest first:
//
//  1. a domain certificate from the admin API or ACME ('edgesim domains'): an explicit action
//     on one domain, so it stays in force while the directory changes underneath;
//  2. the certificate directory;
//  3. the certificate edgesim provisioned from its local CA (or none).
//
// The directory's certificate replaces the provisioned one; when the directory drops the name
// the provisioned one (or nothing) is served again. A host whose API domain has a certificate
// (uploaded or from ACME, even an expired one) keeps it; deleting that domain through the API
// brings the directory's current certificate back within one poll. A wildcard "*.example.com"
// is also put on the SNI hosts of tenant example.com directly under it, since an exact
// provisioned entry would otherwise win over the wildcard at lookup.
//
// The domains manager restores what it replaced through its own sniSwap; the directory keeps a
// restore map of its own in the layer below (dirLayer). When the API takes a host over, its
// sniSwap remembers the directory's certificate as the one to restore; dirLayer sees the
// stale one come back when the API lets go, and puts the current one in its place.

// certDirSource is a running --cert-dir.
type certDirSource struct {
	src    *certdir.Source
	layer  *dirLayer
	cancel context.CancelFunc
	done   chan struct{}
}

// startCertDir loads --cert-dir into the SNI store before the listeners accept, then keeps it
// current. Call it after startDomains.
func (s *server) startCertDir(o serveOptions) error {
	if o.certDir == "" {
		return nil
	}
	if o.certDirPoll <= 0 {
		return usagef("--cert-dir-poll %v: want a positive interval, like 2s", o.certDirPoll)
	}
	layer := &dirLayer{store: s.store, log: s.log.Named("certdir"), apiHosts: s.apiDomainHosts,
		hosts: map[string]*layerHost{}, kick: make(chan struct{}, 1)}
	src, err := certdir.New(certdir.Config{
		Dir: o.certDir, Poll: o.certDirPoll,
		Install: layer.install, Remove: layer.remove, WildcardHosts: s.tenantHostsUnder,
		Logger: s.log, Registerer: s.reg,
	})
	if err != nil {
		return fmt.Errorf("--cert-dir: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := src.Start(ctx); err != nil {
		cancel()
		return fmt.Errorf("--cert-dir: %w", err)
	}
	layer.reconcile()
	c := &certDirSource{src: src, layer: layer, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		layer.run(ctx, o.certDirPoll)
	}()
	s.certDir = c
	layer.log.Info("serving certificates from the certificate directory", zap.String("dir", o.certDir),
		zap.Int("names", len(src.Hosts())), zap.Duration("poll", o.certDirPoll))
	return nil
}

// stop ends polling; what the directory installed stays in the store.
func (c *certDirSource) stop() {
	c.src.Stop()
	c.cancel()
	<-c.done
}

// apiDomainHosts returns the SNI hosts of the API domains that have a certificate: the hosts
// the domains manager serves, which the directory leaves alone.
func (s *server) apiDomainHosts() map[string]bool {
	if s.domains == nil {
		return nil
	}
	out := map[string]bool{}
	for _, in := range s.domains.List() {
		if in.Source == domains.SourceNone {
			continue
		}
		for _, h := range in.Hosts {
			out[h] = true
		}
	}
	return out
}

// tenantHostsUnder returns the SNI hosts of tenant parent one label below it: the exact
// names a "*.parent" certificate from the directory also goes on.
func (s *server) tenantHostsUnder(parent string) []string {
	t, ok := s.dir.Lookup(parent)
	if !ok {
		return nil
	}
	var out []string
	for _, h := range t.SNIHosts(s.dir.Provider()) {
		if label, ok := strings.CutSuffix(h, "."+parent); ok && label != "" && !strings.Contains(label, ".") {
			out = append(out, h)
		}
	}
	return out
}

// dirLayer puts the directory's certificates into the SNI store under the API domains and over
// the provisioned certificates, and restores what was there when the directory drops a name.
// install and remove record what the directory wants and wake the reconciler, which applies it
// (and again every poll, to notice API domains coming and going).
type dirLayer struct {
	store    *sni.Store
	log      *zap.Logger
	apiHosts func() map[string]bool
	mu       sync.Mutex
	hosts    map[string]*layerHost
	kick     chan struct{}
}

// layerHost is one name the directory serves or served.
type layerHost struct {
	want *tls.Certificate // the directory's certificate; nil: dropped, restore base
	base *tls.Certificate // what the host served before the directory's first write; nil: nothing
	last *tls.Certificate // what the directory last wrote; nil: never wrote
	// stray is set when a round found a certificate that is neither the directory's nor the one
	// it replaced while no API domain claimed the host (an API change racing the round): the
	// next round looks again before overwriting it.
	stray bool
}

func (l *dirLayer) install(host string, c *tls.Certificate) { l.set(host, c) }

func (l *dirLayer) remove(host string) { l.set(host, nil) }

func (l *dirLayer) set(host string, c *tls.Certificate) {
	l.mu.Lock()
	st := l.hosts[host]
	if st == nil {
		st = &layerHost{}
		l.hosts[host] = st
	}
	st.want = c
	l.mu.Unlock()
	l.kickLater()
}

func (l *dirLayer) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-t.C:
		}
		l.reconcile()
	}
}

// reconcile makes the store serve, for each of the directory's names no API domain holds, the
// directory's certificate, or what it replaced once the directory dropped the name.
func (l *dirLayer) reconcile() {
	api := l.apiHosts()
	l.mu.Lock()
	defer l.mu.Unlock()
	for h, st := range l.hosts {
		if api[h] {
			st.stray = false
			continue // the API domain's certificate wins; its sniSwap restores st.last later
		}
		cur, _ := l.store.Get(h)
		if st.want == nil {
			if st.last != nil && cur == st.last {
				l.restore(h, cur, st.base)
			}
			delete(l.hosts, h)
			continue
		}
		if cur == st.want {
			st.last, st.stray = cur, false
			continue
		}
		switch {
		case st.last == nil:
			st.base = cur
		case cur != st.last && cur != st.base && !st.stray:
			st.stray = true
			continue
		}
		// Only over what was read above: an API upload installed in between wins, and the
		// next pass sees its host among the API's.
		ok, err := l.store.CompareAndSet(h, cur, st.want)
		if err != nil {
			l.log.Error("directory certificate not installed", zap.String("host", h), zap.Error(err))
			continue
		}
		if !ok {
			l.kickLater()
			continue
		}
		st.last, st.stray = st.want, false
	}
}

// restore puts back what h served before the directory, if h still holds cur (the directory's);
// the caller holds l.mu.
func (l *dirLayer) restore(h string, cur, base *tls.Certificate) {
	if _, err := l.store.CompareAndSet(h, cur, base); err != nil {
		l.log.Error("certificate not restored", zap.String("host", h), zap.Error(err))
	}
}

// kickLater asks for another pass soon, without waiting for the caller's lock.
func (l *dirLayer) kickLater() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

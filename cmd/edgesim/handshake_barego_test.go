package main

// The bare Go TLS server: Go's own floor for the handshake benchmark. It serves the certificates
// edgesim serves, from the same data directory, with the same groups and versions, but nothing
// else: an accept loop, a goroutine per connection that handshakes and closes, and
// GetCertificate from a map under a sync.RWMutex. What edgesim costs above it is what its store,
// listeners, metrics and HTTP server add to crypto/tls.

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/edgesim/edgesim/tenant"
)

// BenchmarkHandshakeBareGo is BenchmarkHandshake's 1,000-tenant cases against the bare Go server
// (runBareGoServer), pinned and measured the same way.
func BenchmarkHandshakeBareGo(b *testing.B) {
	const n = 1000
	b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
		data := benchDataDir(n)
		args := []string{"--tenants", strconv.Itoa(n), "--data", data}
		c := startBenchChild(b, "bare Go server", benchChildBareGo, "barego-"+strconv.Itoa(n), args, nil)
		target := &hsTarget{addr: c.banner(b, "https")["https"], tenants: n, pid: c.pid,
			roots: loadRoots(b, filepath.Join(data, tenant.CAFileName))}
		for _, v := range []hsVariant{hsTLS13, hsTLS12, hsResumed} {
			b.Run(v.name, func(b *testing.B) { benchHandshakes(b, target, v) })
		}
	})
}

// runBareGoServer is the bare Go server's main (EDGESIM_BENCH_CHILD=baregoserver): it loads the
// certificates of --tenants synthetic tenants from --data as 'edgesim serve --key-type ecdsa-p256'
// does (parsed leaves dropped, as serve drops them), listens on a free loopback port without TCP
// keep-alive probes (as edgesim's listeners), prints "https <addr>" and edgesim's last banner
// line, and serves until SIGINT or SIGTERM. TLS 1.2 and 1.3, X25519 then P-256, session tickets
// on (crypto/tls's own rotating keys); no handshake deadline, no metrics, no HTTP.
func runBareGoServer(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("baregoserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("tenants", 1000, "synthetic tenants")
	data := fs.String("data", "", "edgesim data directory")
	if err := fs.Parse(args); err != nil {
		return exitFail
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "baregoserver: %v\n", err)
		return exitFail
	}
	dir, err := tenant.Synthetic(*n, 1)
	if err != nil {
		return fail(err)
	}
	var mu sync.RWMutex
	certs := make(map[string]*tls.Certificate, *n)
	res, err := tenant.Provision(dir, tenant.Options{Dir: *data, KeyType: tenant.KeyECDSAP256},
		func(host string, c *tls.Certificate) {
			certs[host] = &tls.Certificate{Certificate: c.Certificate, PrivateKey: c.PrivateKey}
		})
	if err != nil {
		return fail(err)
	}
	platform := &tls.Certificate{Certificate: res.Platform.Certificate, PrivateKey: res.Platform.PrivateKey}
	cfg := &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.RLock()
			c, ok := certs[hello.ServerName]
			mu.RUnlock()
			if !ok {
				return platform, nil
			}
			return c, nil
		},
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
	}
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	fmt.Fprintf(stdout, "bare Go TLS server, %d tenants\n  https %s\n%s\n", *n, ln.Addr(), benchBannerEnd)

	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return 0
			}
			return fail(err)
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			tc := tls.Server(c, cfg)
			_ = tc.Handshake()
			tc.Close()
		}()
	}
}

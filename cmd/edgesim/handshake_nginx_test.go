package main

// nginx as the benchmark's reference: TestExportForNginx writes edgesim's certificates and an
// nginx.conf for bench/handshake.sh, which starts nginx; BenchmarkHandshakePeer measures it.

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/edgesim/edgesim/tenant"
)

// BenchmarkHandshakePeer runs BenchmarkHandshake's client against another server, such as the
// nginx bench/handshake.sh starts with the same certificates; it skips unless EDGESIM_PEER_ADDR,
// EDGESIM_PEER_PID and EDGESIM_PEER_CA are set.
func BenchmarkHandshakePeer(b *testing.B) {
	addr, pidText, ca := os.Getenv(envPeerAddr), os.Getenv(envPeerPID), os.Getenv(envPeerCA)
	if addr == "" || pidText == "" || ca == "" {
		b.Skipf("set %s, %s and %s to benchmark another server (bench/handshake.sh does)", envPeerAddr, envPeerPID, envPeerCA)
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		b.Fatalf("%s=%q: %v", envPeerPID, pidText, err)
	}
	n := envInt(b, envPeerTenants, 1000)
	pinClient(b)
	target := &hsTarget{addr: addr, tenants: n, roots: loadRoots(b, ca), pid: pid}
	b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
		for _, v := range []hsVariant{hsTLS13, hsTLS12, hsResumed} {
			b.Run(v.name, func(b *testing.B) { benchHandshakes(b, target, v) })
		}
	})
}

// TestExportForNginx writes the certificates edgesim serves for EDGESIM_NGINX_TENANTS tenants
// (default 1000; from the same data directory as BenchmarkHandshake) as files nginx loads, and an
// nginx.conf serving them on a free loopback port, into EDGESIM_NGINX_EXPORT:
//
//	nginx.conf  addr  ca.pem  certs/<host>.pem (leaf and CA)  keys/key-<i>.pem (0600)
//
// It skips unless EDGESIM_NGINX_EXPORT is set; bench/handshake.sh sets it.
func TestExportForNginx(t *testing.T) {
	out := os.Getenv(envNginxExport)
	if out == "" {
		t.Skipf("set %s=DIR to write certificates and an nginx.conf for bench/handshake.sh", envNginxExport)
	}
	n := envInt(t, envNginxN, 1000)
	out, err := filepath.Abs(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{out, filepath.Join(out, "certs"), filepath.Join(out, "keys"), filepath.Join(out, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := tenant.Synthetic(n, 1)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[crypto.PrivateKey]string{} // the pool's keys are shared objects
	type site struct{ host, cert, key string }
	var sites []site
	var writeErr error
	write := func(host string, c *tls.Certificate) (site, error) {
		keyFile, ok := keys[c.PrivateKey]
		if !ok {
			der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
			if err != nil {
				return site{}, err
			}
			keyFile = filepath.Join(out, "keys", fmt.Sprintf("key-%d.pem", len(keys)))
			if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				return site{}, err
			}
			keys[c.PrivateKey] = keyFile
		}
		var chain bytes.Buffer
		for _, der := range c.Certificate {
			_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		certFile := filepath.Join(out, "certs", host+".pem")
		return site{host, certFile, keyFile}, os.WriteFile(certFile, chain.Bytes(), 0o600)
	}
	res, err := tenant.Provision(dir, tenant.Options{Dir: benchDataDir(n), KeyType: tenant.KeyECDSAP256},
		func(host string, c *tls.Certificate) {
			s, err := write(host, c)
			if err != nil && writeErr == nil {
				writeErr = err
			}
			sites = append(sites, s)
		})
	if err != nil {
		t.Fatal(err)
	}
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	platform, err := write(dir.Provider().EdgeHost, res.Platform)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(sites, func(a, b site) int { return strings.Compare(a.host, b.host) })
	ca, err := os.ReadFile(res.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "ca.pem"), ca, 0o644); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port, for nginx to take right after
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var conf bytes.Buffer
	fmt.Fprintf(&conf, "# written by TestExportForNginx for bench/handshake.sh: %d tenants\n", n)
	if os.Geteuid() == 0 {
		conf.WriteString("user root;\n") // else the workers would run as nobody
	}
	fmt.Fprintf(&conf, `worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    server_names_hash_max_size 262144;
    server_names_hash_bucket_size 128;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;
    server {
        listen %[2]s ssl default_server;
        server_name %[3]s;
        ssl_certificate %[4]s;
        ssl_certificate_key %[5]s;
        return 204;
    }
`, out, addr, platform.host, platform.cert, platform.key)
	for _, s := range sites {
		fmt.Fprintf(&conf, "    server { listen %s ssl; server_name %s; ssl_certificate %s; ssl_certificate_key %s; return 204; }\n",
			addr, s.host, s.cert, s.key)
	}
	conf.WriteString("}\n")
	if err := os.WriteFile(filepath.Join(out, "nginx.conf"), conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "addr"), []byte(addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tenants, %d keys, nginx on %s: %s", len(sites), len(keys), addr, filepath.Join(out, "nginx.conf"))
}

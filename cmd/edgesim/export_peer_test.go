package main

// TestExportPeers writes the certificates edgesim serves for EDGESIM_CMP_TENANTS tenants with
// EDGESIM_CMP_KEY keys (from the data directory BenchmarkHandshakeCompare uses) as nginx,
// HAProxy and Caddy load them, each peer on a free loopback port of its own, into
// EDGESIM_CMP_EXPORT (bench/compare.sh sets these):
//
//	ca.pem  certs/<host>.pem (leaf and CA)  keys/key-<i>.pem  combined/<host>.pem (chain and key)
//	nginx.conf nginx.addr  haproxy.cfg haproxy.crtlist haproxy.addr  caddy.json caddy.addr
//
// Every peer: one worker (thread/process), TLS 1.2 and 1.3, X25519 only for the key exchange,
// the AES-128-GCM ECDHE suites first, session tickets as their defaults, 204 to any request.

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/edgesim/edgesim/tenant"
)

const envCmpExport = "EDGESIM_CMP_EXPORT"

func TestExportPeers(t *testing.T) {
	out := os.Getenv(envCmpExport)
	if out == "" {
		t.Skipf("set %s=DIR (bench/compare.sh does)", envCmpExport)
	}
	key := tenant.KeyType(os.Getenv(envCmpKey))
	if key == "" {
		key = tenant.KeyECDSAP256
	}
	n := envInt(t, envCmpTenants, 1000)
	out, err := filepath.Abs(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"certs", "keys", "combined", "tmp", "caddy-data"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := tenant.Synthetic(n, 1)
	if err != nil {
		t.Fatal(err)
	}
	type site struct{ host, cert, key, combined string }
	keys := map[crypto.PrivateKey]string{}
	keyPEM := map[string][]byte{}
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
			p := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
			if err := os.WriteFile(keyFile, p, 0o600); err != nil {
				return site{}, err
			}
			keys[c.PrivateKey] = keyFile
			keyPEM[keyFile] = p
		}
		var chain bytes.Buffer
		for _, der := range c.Certificate {
			_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		s := site{host, filepath.Join(out, "certs", host+".pem"), keyFile, filepath.Join(out, "combined", host+".pem")}
		if err := os.WriteFile(s.cert, chain.Bytes(), 0o600); err != nil {
			return s, err
		}
		chain.Write(keyPEM[keyFile])
		return s, os.WriteFile(s.combined, chain.Bytes(), 0o600)
	}
	res, err := tenant.Provision(dir, tenant.Options{Dir: benchDataDir(n), KeyType: key},
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
	ca, err := os.ReadFile(res.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	writeFile := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("ca.pem", ca)
	addrs := map[string]string{}
	for _, peer := range []string{"nginx", "haproxy", "caddy"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[peer] = ln.Addr().String()
		ln.Close()
		writeFile(peer+".addr", []byte(addrs[peer]+"\n"))
	}
	const ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"

	// nginx: one server block per host, as TestExportForNginx.
	var conf bytes.Buffer
	fmt.Fprintf(&conf, "# written by TestExportPeers for bench/compare.sh: %d tenants, %s\n", n, key)
	if os.Geteuid() == 0 {
		conf.WriteString("user root;\n")
	}
	fmt.Fprintf(&conf, `worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    server_names_hash_max_size 4194304;
    server_names_hash_bucket_size 128;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_ciphers %[6]s;
    server {
        listen %[2]s ssl default_server;
        server_name %[3]s;
        ssl_certificate %[4]s;
        ssl_certificate_key %[5]s;
        return 204;
    }
`, out, addrs["nginx"], platform.host, platform.cert, platform.key, ciphers)
	for _, s := range sites {
		fmt.Fprintf(&conf, "    server { listen %s ssl; server_name %s; ssl_certificate %s; ssl_certificate_key %s; return 204; }\n",
			addrs["nginx"], s.host, s.cert, s.key)
	}
	conf.WriteString("}\n")
	writeFile("nginx.conf", conf.Bytes())

	// HAProxy: a crt-list, the platform certificate first (the default), an SNI filter per line.
	var list bytes.Buffer
	fmt.Fprintf(&list, "%s\n", platform.combined)
	for _, s := range sites {
		fmt.Fprintf(&list, "%s %s\n", s.combined, s.host)
	}
	writeFile("haproxy.crtlist", list.Bytes())
	writeFile("haproxy.cfg", fmt.Appendf(nil, `# written by TestExportPeers for bench/compare.sh: %[4]d tenants, %[5]s
global
    nbthread 1
    maxconn 8192
    pidfile %[1]s/haproxy.pid
    ssl-default-bind-options ssl-min-ver TLSv1.2
    ssl-default-bind-ciphers %[3]s
defaults
    mode http
    timeout client 10s
    timeout connect 5s
    timeout server 10s
frontend edge
    bind %[2]s ssl crt-list %[1]s/haproxy.crtlist curves X25519
    http-request return status 204
`, out, addrs["haproxy"], ciphers, n, key))

	// Caddy: JSON, certificates loaded from files (unmanaged), no admin endpoint, no automatic HTTPS.
	type loadFile struct {
		Certificate string `json:"certificate"`
		Key         string `json:"key"`
	}
	files := []loadFile{{platform.cert, platform.key}}
	for _, s := range sites {
		files = append(files, loadFile{s.cert, s.key})
	}
	caddy := map[string]any{
		"admin":   map[string]any{"disabled": true},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"storage": map[string]any{"module": "file_system", "root": filepath.Join(out, "caddy-data")},
		"apps": map[string]any{
			"tls": map[string]any{
				"cache":        map[string]any{"capacity": len(files) + 16},
				"certificates": map[string]any{"load_files": files},
			},
			"http": map[string]any{"servers": map[string]any{"edge": map[string]any{
				"listen":          []string{addrs["caddy"]},
				"automatic_https": map[string]any{"disable": true},
				"tls_connection_policies": []any{map[string]any{
					"protocol_min": "tls1.2", "curves": []string{"x25519"}, "default_sni": platform.host,
				}},
				"routes": []any{map[string]any{"handle": []any{map[string]any{"handler": "static_response", "status_code": 204}}}},
			}}},
		},
	}
	f, err := os.Create(filepath.Join(out, "caddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := json.NewEncoder(w).Encode(caddy); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tenants (%s), %d hosts, %d keys: %s", n, key, len(sites), len(keys), strconv.Quote(out))
}

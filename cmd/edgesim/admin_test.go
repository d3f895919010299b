package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/edgesim/edgesim/tenant/domains"
)

// testSecureAdmin starts the whole server with the admin API served as it is when bound beyond
// loopback (TLS from the local CA, bearer token), while staying on 127.0.0.1.
func testSecureAdmin(t *testing.T, extra ...string) *server {
	t.Helper()
	var o serveOptions
	fs := newFlagSet("serve", "", io.Discard)
	o.register(fs)
	args := append([]string{"--data", t.TempDir(), "--key-type", "ecdsa-p256",
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "", "--admin-addr", "127.0.0.1:0"}, extra...)
	if err := fs.parse(args); err != nil {
		t.Fatal(err)
	}
	o.adminSecureLoopback = true
	s, err := startServer(o, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func TestAdminTokenAndTLS(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "secrets", "token")
	s := testSecureAdmin(t, "--admin-token-file", tokenFile)
	a := s.admin
	if !strings.HasPrefix(a.url(), "https://127.0.0.1:") {
		t.Fatalf("admin URL %s", a.url())
	}
	var banner strings.Builder
	s.printAdminBanner(&banner)
	if !strings.HasPrefix(banner.String(), "  admin    "+a.url()) || !strings.Contains(banner.String(), tokenFile) {
		t.Fatalf("banner line %q", banner.String())
	}
	fi, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	tokenBytes, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(tokenBytes))
	if len(token) < 40 {
		t.Fatalf("token %d characters", len(token))
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.caPool(t)}}}
	get := func(path, auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", strings.TrimSuffix(a.url(), "/api/v1/domains")+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct {
		name, path, auth string
		status           int
		want             string
	}{
		{"no token", "/api/v1/domains", "", 401, "needs its bearer token"},
		{"basic auth", "/api/v1/domains", "Basic Ym9iOmFueQ==", 401, "needs its bearer token"},
		{"wrong token", "/api/v1/domains", "Bearer " + strings.Repeat("x", len(token)), 401, "the bearer token is wrong"},
		{"short token", "/api/v1/domains", "Bearer x", 401, "wrong"},
		{"right token", "/api/v1/domains", "Bearer " + token, 200, `"domains"`},
		{"health without token", "/healthz", "", 200, "ok"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, body := get(tt.path, tt.auth)
			if st != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s; want %d and %q", st, body, tt.status, tt.want)
			}
			if st == 401 {
				var ae domains.APIError
				if json.Unmarshal([]byte(body), &ae) != nil || ae.Status != 401 || !strings.Contains(ae.Error, tokenFile) {
					t.Fatalf("401 body %s", body)
				}
				if strings.Contains(body, token) {
					t.Fatal("the 401 answer holds the token")
				}
			}
		})
	}
	// plain HTTP to the TLS port gets no API
	if resp, err := http.Get("http://" + a.ln.Addr().String() + "/api/v1/domains"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP reached the API")
		}
	}
	// the CLI: --ca and --token, or $EDGESIM_ADMIN_TOKEN; a sentence for each thing missing
	base := strings.TrimSuffix(a.url(), "/api/v1/domains")
	ca := s.certs.Load().CAFile
	if code, out, errs := domainsCLI(t, "--admin", base, "--ca", ca, "--token", tokenFile, "add", "example.com"); code != 0 || !strings.Contains(out, "added example.com") {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	if code, _, errs := domainsCLI(t, "--admin", base, "--ca", ca, "list"); code != exitFail || !strings.Contains(errs, "needs its bearer token") {
		t.Fatalf("without a token: exit %d: %s", code, errs)
	}
	if code, _, errs := domainsCLI(t, "--admin", base, "--token", tokenFile, "list"); code != exitFail || !strings.Contains(errs, "pass --ca") {
		t.Fatalf("without --ca: exit %d: %s", code, errs)
	}
	t.Setenv("EDGESIM_ADMIN_TOKEN", token)
	if code, out, errs := domainsCLI(t, "--admin", base, "--ca", ca, "list"); code != 0 || !strings.Contains(out, "example.com") {
		t.Fatalf("token from the environment: exit %d: %s %s", code, out, errs)
	}
	// a restart keeps the token
	testSecureAdmin(t, "--admin-token-file", tokenFile)
	if again, _ := os.ReadFile(tokenFile); string(again) != string(tokenBytes) {
		t.Fatal("the token changed on restart")
	}
}

func TestAdminDefaultTokenFile(t *testing.T) {
	s := testSecureAdmin(t)
	f := filepath.Join(s.dataDir, adminTokenName)
	if s.admin.tokenFile != f {
		t.Fatalf("token file %s, want %s", s.admin.tokenFile, f)
	}
	if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", f, fi, err)
	}
}

func TestAdminLoopbackBannerAndOff(t *testing.T) {
	s := testServer(t, "--admin-addr", "127.0.0.1:0")
	var b strings.Builder
	s.printAdminBanner(&b)
	want := "  admin    http://" + s.admin.ln.Addr().String() + "/api/v1/domains"
	if !strings.HasPrefix(b.String(), want) || !strings.Contains(b.String(), "no token needed") {
		t.Fatalf("banner %q, want %q", b.String(), want)
	}
	resp, err := http.Get("http://" + s.admin.ln.Addr().String() + "/api/v1/domains")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("loopback without a token: %d", resp.StatusCode)
	}
	off := testServer(t, "--admin-addr", "")
	if off.admin != nil || off.domains == nil {
		t.Fatal("--admin-addr '' must turn the API off and still restore domain certificates")
	}
}

func TestAdminAddrTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errOut strings.Builder
	code := run([]string{"serve", "--data", t.TempDir(), "--key-type", "ecdsa-p256", "--admin-addr", ln.Addr().String(),
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0", "--dns-addr", "127.0.0.1:0",
		"--metrics-addr", "", "--log-level", "error"}, &out, &errOut)
	if code != exitFail || !strings.Contains(errOut.String(), "choose another with --admin-addr") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

// Web pages cannot drive the API: another site's Origin, a form's content type and a name that
// is not loopback (DNS rebinding) are refused; the CLI's requests pass.
func TestAdminBrowserGuard(t *testing.T) {
	s := testServer(t, "--admin-addr", "127.0.0.1:0")
	base := s.admin.url()
	do := func(method, path, ctype, origin, host, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	body := `{"domain":"guard.example"}`
	for _, c := range []struct {
		name                string
		ctype, origin, host string
		want                int
	}{
		{"form post", "text/plain", "", "", http.StatusUnsupportedMediaType},
		{"urlencoded", "application/x-www-form-urlencoded", "", "", http.StatusUnsupportedMediaType},
		{"other site", "application/json", "http://evil.example", "", http.StatusForbidden},
		{"rebinding", "application/json", "", "evil.example:9180", http.StatusMisdirectedRequest},
		{"the CLI's way", "application/json", "", "", http.StatusCreated},
	} {
		if got := do("POST", "", c.ctype, c.origin, c.host, body); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
	}
	if got := do("GET", "", "", "", "localhost:1", ""); got != http.StatusOK {
		t.Errorf("GET with Host localhost: %d", got)
	}
}

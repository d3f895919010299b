package main

import (
	"crypto/tls"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edgesim/edgesim/acme/pebbletest"
)

// kill -9 while ACME writes its account, orders and certificates: the next start on the same
// data directory comes up cleanly, and every tenant ends with a Pebble-issued certificate.
func TestFaultKillDuringACME(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates through Pebble in two processes")
	}
	httpsPort, dnsPort := freeUDPPort(t), freeUDPPort(t)
	pebble := pebbletest.Start(t, pebbletest.Options{Resolver: "127.0.0.1:" + strconv.Itoa(dnsPort), TLSPort: httpsPort})
	dir := t.TempDir()
	root := filepath.Join(dir, "pebble-root.pem")
	if err := os.WriteFile(root, pebble.RootsPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 20
	cfg := filepath.Join(dir, "tenants.yaml")
	yaml := "tenants:\n"
	for k := 1; k <= n; k++ {
		yaml += fmt.Sprintf("  - {domain: kill-%d.example, acme: true}\n", k)
	}
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfg, "--data", filepath.Join(dir, "data"), "--admin-addr", "",
		"--https-addr", "127.0.0.1:" + strconv.Itoa(httpsPort), "--dns-addr", "127.0.0.1:" + strconv.Itoa(dnsPort),
		"--acme-ca", pebble.DirectoryURL, "--acme-ca-root", root}
	issued := func(https string) int {
		ok := 0
		for k := 1; k <= n; k++ {
			c, err := tls.Dial("tcp", https, &tls.Config{ServerName: fmt.Sprintf("mra.kill-%d.example", k), RootCAs: pebble.IssuerRoots})
			if err == nil {
				c.Close()
				ok++
			}
		}
		return ok
	}
	for round := 1; round <= 2; round++ {
		child := startChildServe(t, args...)
		time.Sleep(time.Duration(100+mrand.IntN(900)) * time.Millisecond) // the random moment of the kill
		before := issued(child.https)
		if err := child.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		exit := <-child.exited
		child.exited <- exit
		t.Logf("round %d: killed with %d of %d certificates issued", round, before, n)
	}
	child := startChildServe(t, args...) // must start cleanly on what the kills left
	deadline := time.Now().Add(60 * time.Second)
	for got := issued(child.https); got < n; got = issued(child.https) {
		if time.Now().After(deadline) {
			t.Fatalf("after the kills, %d of %d tenants serve a Pebble-issued certificate after 60 s; stderr:\n%s", got, n, child.stderr.String())
		}
		time.Sleep(100 * time.Millisecond) // polling issuance progress
	}
}

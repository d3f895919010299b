package main

import (
	"crypto/tls"
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// kill -9 while ACME writes its account, orders and certificates: the next start on the same
// data directory comes up cleanly, and every tenant ends with a Pebble-issued certificate.
func TestFaultKillDuringACME(t *testing.T) {
	if testing.Short() {
		t.Skip("issues certificates through Pebble in two processes")
	}
	const n = 20
	yaml := "tenants:\n"
	for k := 1; k <= n; k++ {
		yaml += fmt.Sprintf("  - {domain: kill-%d.example, acme: true}\n", k)
	}
	env := newACMESetup(t, yaml)
	pebble := env.pebble
	args := append(env.args, "--admin-addr", "")
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

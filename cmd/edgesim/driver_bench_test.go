package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgesim/edgesim/driver"
	"github.com/edgesim/edgesim/tenant"
)

// BenchmarkDriverLogin measures the driver against 'edgesim serve --tenants 1000' (ECDSA P-256,
// TLS 1.3, full handshakes, no resumption) running as a child process on its own core, the
// driver pinned to the other: driver-µs/login is the driver's CPU per login, logins/s/driver-core
// its inverse, and server-µs/login the edge's CPU for the same login. A driver-µs/login below
// server-µs/login means one driver core saturates more than one edgesim core.
//
//	go test ./cmd/edgesim -run '^$' -bench DriverLogin -benchtime 3000x
func BenchmarkDriverLogin(b *testing.B) {
	t := startBenchServer(b, 1000)
	for _, c := range []struct {
		name  string
		steps []driver.Step
	}{
		{"steps=srv,tls", []driver.Step{driver.StepSRV, driver.StepTLS}},
		{"steps=srv,tls,identity", []driver.Step{driver.StepSRV, driver.StepTLS, driver.StepIdentity}},
		{"steps=all", nil},
	} {
		b.Run(c.name, func(b *testing.B) { benchDriver(b, t, c.steps) })
	}
}

func benchDriver(b *testing.B, t *hsTarget, steps []driver.Step) {
	pinClient(b)
	client, err := driver.NewClient(driver.Config{DNS: t.dns, Roots: t.roots, Steps: steps, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	const workers = 16
	runLogins := func(n int) error {
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					user := fmt.Sprintf("user1@%s", tenant.SyntheticDomain(int(i%int64(t.tenants))+1))
					if tr := client.Login(context.Background(), user, nil); !tr.OK {
						firstErr.CompareAndSwap(nil, fmt.Errorf("%s failed at %s (%s)", user, tr.Failed, tr.Class))
					}
				}
			}()
		}
		wg.Wait()
		if e, ok := firstErr.Load().(error); ok {
			return e
		}
		return nil
	}
	if err := runLogins(200); err != nil { // warm-up
		b.Fatal(err)
	}
	cpu0, err := procTreeCPU(t.pid)
	if err != nil {
		b.Fatal(err)
	}
	self0 := selfCPU()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	err = runLogins(b.N)
	wall := time.Since(start)
	self := (selfCPU() - self0).Seconds()
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	cpu1, _ := procTreeCPU(t.pid)
	server := (cpu1 - cpu0).Seconds()
	b.ReportMetric(self*1e6/float64(b.N), "driver-µs/login")
	b.ReportMetric(float64(b.N)/self, "logins/s/driver-core")
	b.ReportMetric(server*1e6/float64(b.N), "server-µs/login")
	b.ReportMetric(float64(b.N)/wall.Seconds(), "logins/s")
}

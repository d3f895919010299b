package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// TestGCHeadroom checks that the headroom raises GOGC after a collection while the live heap is
// small, and that stopping it restores GOGC.
func TestGCHeadroom(t *testing.T) {
	gogc := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)

	stop := startGCHeadroom(256 << 20) // far more than this test binary's live heap
	deadline := time.Now().Add(10 * time.Second)
	for gogc() <= 100 {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("GOGC still %d after collections; want it raised", gogc())
		}
		runtime.GC()
		time.Sleep(time.Millisecond) // the cleanup goroutine sets it after the collection
	}
	stop()
	if got := gogc(); got != 100 {
		t.Errorf("GOGC after stop = %d, want 100 restored", got)
	}

	stop = startGCHeadroom(1) // less than the live heap: Go's default stands
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := gogc(); got != 100 {
		t.Errorf("GOGC with 1 byte of headroom = %d, want 100", got)
	}
	stop()
}

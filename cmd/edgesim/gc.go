package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// defaultGCHeadroomMiB is --gc-headroom's default. crypto/tls allocates about 40 KB per
// handshake; at 1,000 tenants the live heap is about 2 MB, so with Go's default (GOGC=100 and a
// 4 MiB heap at least) a collection comes every 50 or so handshakes. 5 MiB of headroom makes
// that about 125, for some 3 MB more resident memory (bench/README.md has the figures). At
// 100,000 tenants the live heap is far larger than the headroom, and nothing changes.
const defaultGCHeadroomMiB = 5

// startGCHeadroom makes the garbage collector let the heap grow by at least headroom bytes
// between collections, or by as much as Go's default lets it (GOGC=100) when that is more. After
// each collection it sets GOGC from the live heap: GOGC is a percentage of the live heap, stacks
// and globals, and also scales the runtime's 4 MiB minimum heap size, so the percentage is the
// smaller of the two that each give live heap + headroom, and never below 100. It returns a
// function that stops it and restores GOGC.
func startGCHeadroom(headroom uint64) (stop func()) {
	t := &gcHeadroom{headroom: headroom, orig: debug.SetGCPercent(100), percent: 100}
	t.samples[0].Name = "/gc/heap/live:bytes"
	t.samples[1].Name = "/gc/scan/stack:bytes"
	t.samples[2].Name = "/gc/scan/globals:bytes"
	t.adjust()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.stopped = true
		debug.SetGCPercent(t.orig)
	}
}

// gcHeadroom is the state of startGCHeadroom. adjust runs on the runtime's cleanup goroutine,
// once per collection, and costs a few microseconds.
type gcHeadroom struct {
	headroom uint64
	orig     int // GOGC before
	percent  int // GOGC now
	samples  [3]metrics.Sample

	mu      sync.Mutex // adjust against stop
	stopped bool
}

// runtimeHeapMinimum is the heap size below which Go does not collect at GOGC=100.
const runtimeHeapMinimum = 4 << 20

// adjust sets GOGC from the last collection's figures and asks to run again after the next one.
func (t *gcHeadroom) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	metrics.Read(t.samples[:])
	var live, base uint64
	for i, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			base += s.Value.Uint64()
			if i == 0 {
				live = s.Value.Uint64()
			}
		}
	}
	p := 100
	if base > 0 {
		p = max(p, int(min(100*t.headroom/base, 100*(live+t.headroom)/runtimeHeapMinimum)))
	}
	if p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	// An object nothing refers to: its cleanup runs once the next collection has found it
	// unreachable.
	runtime.AddCleanup(new(gcSentinel), func(t *gcHeadroom) { t.adjust() }, t)
}

type gcSentinel struct{ _ *int } // holds a pointer, so it is not batched with other tiny objects

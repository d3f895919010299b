package driver

import (
	"runtime"
	"testing"
	"time"
)

func TestUsage(t *testing.T) {
	u := startUsage()
	start := time.Now()
	x := 0
	for time.Since(start) < 50*time.Millisecond {
		x++ // burn CPU so there is some to measure
	}
	d := u.stop(time.Since(start))
	if d.CPUSeconds <= 0 || d.CPUSeconds > 5 || d.CPUPercent <= 0 {
		t.Errorf("cpu %.3fs (%.1f%%) for 50ms of spinning (%d)", d.CPUSeconds, d.CPUPercent, x)
	}
	if d.Cores != runtime.GOMAXPROCS(0) || d.MaxRSSMB < 1 || d.MaxRSSMB > 1<<20 {
		t.Errorf("usage %+v", d)
	}
}

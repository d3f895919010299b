package driver

import (
	"os"
	"runtime"
	"syscall"
	"time"
)

// usageMeter measures the driver process's own cost over a run.
type usageMeter struct {
	cpu float64 // CPU seconds at the start
}

func startUsage() usageMeter {
	return usageMeter{cpu: processCPUSeconds()}
}

// stop returns the usage since startUsage, over a run that took elapsed.
func (u usageMeter) stop(elapsed time.Duration) DriverUsage {
	d := DriverUsage{Cores: runtime.GOMAXPROCS(0)}
	d.Host, _ = os.Hostname()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return d
	}
	d.CPUSeconds = max(cpuSeconds(&ru)-u.cpu, 0)
	if elapsed > 0 && d.Cores > 0 {
		d.CPUPercent = 100 * d.CPUSeconds / (elapsed.Seconds() * float64(d.Cores))
	}
	// ru_maxrss is in kilobytes on Linux and the BSDs, in bytes on macOS.
	rss := float64(ru.Maxrss) * 1024
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		rss = float64(ru.Maxrss)
	}
	d.MaxRSSMB = rss / (1 << 20)
	return d
}

// cpuPeak follows the driver's CPU use second by second; used by one goroutine (the ticker).
type cpuPeak struct {
	lastCPU float64
	lastAt  time.Time
	peak    float64 // percent of all cores
}

func (c *cpuPeak) sample(now time.Time) {
	cpu := processCPUSeconds()
	if !c.lastAt.IsZero() {
		if d := now.Sub(c.lastAt).Seconds(); d > 0.5 {
			c.peak = max(c.peak, 100*(cpu-c.lastCPU)/(d*float64(runtime.GOMAXPROCS(0))))
		}
	}
	c.lastCPU, c.lastAt = cpu, now
}

// processCPUSeconds is the user and system CPU time of this process so far (0 if unknown).
func processCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return cpuSeconds(&ru)
}

func cpuSeconds(ru *syscall.Rusage) float64 {
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

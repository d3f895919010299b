package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// The test binary doubles as 'edgesim serve' for BenchmarkHandshake and as the bare Go TLS
// server for BenchmarkHandshakeBareGo, which need the server in a process of its own: pinned to
// one core and measured through /proc. With benchChildEnv set, TestMain runs the arguments as
// that server's command line instead of the tests.
const (
	benchChildEnv     = "EDGESIM_BENCH_CHILD" // the child mode, one of these:
	benchChildEdgesim = "1"                   // run os.Args[1:] as edgesim
	benchChildBareGo  = "baregoserver"        // run os.Args[1:] as the bare Go server (runBareGoServer)
	// benchChildCPUEnv pins every thread of the child to this CPU (used when taskset is missing).
	benchChildCPUEnv = "EDGESIM_BENCH_CHILD_CPU"
	// benchChildCPUProfileEnv: write a CPU profile of the serving phase (from the banner to
	// shutdown) to this file.
	benchChildCPUProfileEnv = "EDGESIM_BENCH_CHILD_CPUPROFILE"
	// benchChildMemProfileEnv: write a heap profile to this file on SIGUSR1, then print
	// benchHeapWritten on stdout.
	benchChildMemProfileEnv = "EDGESIM_BENCH_CHILD_MEMPROFILE"
	// benchChildStartProfileEnv: write a CPU profile of start-up (from the process's start to
	// the banner) to this file.
	benchChildStartProfileEnv = "EDGESIM_BENCH_CHILD_STARTPROFILE"
	benchHeapWritten          = "edgesim-bench: heap profile written"
	benchBannerEnd            = "press Ctrl-C to stop"
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(benchChildEnv); mode {
	case "":
		os.Exit(runTestsCheckingLeaks(m))
	case benchChildEdgesim:
		os.Exit(runBenchChild(os.Args[1:], run))
	case benchChildBareGo:
		os.Exit(runBenchChild(os.Args[1:], runBareGoServer))
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: want %q (edgesim) or %q\n", benchChildEnv, mode, benchChildEdgesim, benchChildBareGo)
		os.Exit(exitFail)
	}
}

// runTestsCheckingLeaks runs the tests, then (when they passed) fails the run if goroutines
// are left behind: every server a test starts is shut down by its cleanup, so whatever edgesim
// goroutine remains was not stopped by shutdown. Only third-party goroutines that outlive their
// users by design are ignored, each for the reason given.
func runTestsCheckingLeaks(m *testing.M) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	// Keep-alive connections of the default client (http.Get in tests) hold a read and a write
	// goroutine each until they idle out.
	http.DefaultClient.CloseIdleConnections()
	if err := goleak.Find(leakIgnores...); err != nil {
		fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
		return exitFail
	}
	return code
}

// leakIgnores are the goroutines of libraries that outlive the tests by design.
var leakIgnores = []goleak.Option{
	// Pebble's validation authority (acme/pebbletest, the ACME tests' CA) starts a task loop in
	// va.New that ranges over a channel Pebble never closes: Pebble has no way to stop it.
	goleak.IgnoreTopFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
}

// runBenchChild is the child process of BenchmarkHandshake (run is edgesim's) or of
// BenchmarkHandshakeBareGo, with the optional pinning and profiles the benchmark asks for
// through the environment. run prints a banner ending in benchBannerEnd once it serves.
func runBenchChild(args []string, run func(args []string, stdout, stderr io.Writer) int) int {
	if s := os.Getenv(benchChildCPUEnv); s != "" {
		cpu, err := strconv.Atoi(s)
		if err == nil {
			err = pinAllThreads(cpu)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "edgesim-bench: pin to CPU %s: %v\n", s, err)
			return exitFail
		}
	}
	stdout := io.Writer(os.Stdout)
	if path := os.Getenv(benchChildStartProfileEnv); path != "" {
		sp, err := startProfileUntilBanner(stdout, path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "edgesim-bench: start-up profile: %v\n", err)
			return exitFail
		}
		stdout = sp
	}
	var prof *cpuProfileOnBanner
	if path := os.Getenv(benchChildCPUProfileEnv); path != "" {
		prof = &cpuProfileOnBanner{w: stdout, path: path}
		stdout = prof
	}
	if path := os.Getenv(benchChildMemProfileEnv); path != "" {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				if err := writeHeapProfile(path); err != nil {
					fmt.Fprintf(os.Stderr, "edgesim-bench: heap profile: %v\n", err)
				}
				fmt.Fprintln(os.Stdout, benchHeapWritten)
			}
		}()
	}
	code := run(args, stdout, os.Stderr)
	if prof != nil {
		if err := prof.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "edgesim-bench: cpu profile: %v\n", err)
		}
	}
	return code
}

func writeHeapProfile(path string) error {
	runtime.GC() // the profile's in-use figures are as of the last collection
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startProfile is a CPU profile running since the process started, which stops once the
// banner's last line has gone by on w.
type startProfile struct {
	w    io.Writer
	f    *os.File
	mu   sync.Mutex
	seen []byte
}

func startProfileUntilBanner(w io.Writer, path string) (*startProfile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return &startProfile{w: w, f: f}, nil
}

func (p *startProfile) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f != nil {
		p.seen = append(p.seen, b...)
		if bytes.Contains(p.seen, []byte(benchBannerEnd)) {
			pprof.StopCPUProfile()
			if cerr := p.f.Close(); cerr != nil {
				fmt.Fprintf(os.Stderr, "edgesim-bench: start-up profile: %v\n", cerr)
			}
			p.f, p.seen = nil, nil
		}
	}
	return n, err
}

// cpuProfileOnBanner passes writes through to w and starts a CPU profile once the banner's last
// line has gone by, so the profile covers serving only, not certificate provisioning.
type cpuProfileOnBanner struct {
	w    io.Writer
	path string

	mu      sync.Mutex
	seen    []byte // output so far, until the banner ends
	f       *os.File
	started bool
}

func (p *cpuProfileOnBanner) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.seen = append(p.seen, b...)
		if bytes.Contains(p.seen, []byte(benchBannerEnd)) {
			p.started, p.seen = true, nil
			if f, ferr := os.Create(p.path); ferr != nil {
				fmt.Fprintf(os.Stderr, "edgesim-bench: cpu profile: %v\n", ferr)
			} else if ferr := pprof.StartCPUProfile(f); ferr != nil {
				f.Close()
				fmt.Fprintf(os.Stderr, "edgesim-bench: cpu profile: %v\n", ferr)
			} else {
				p.f = f
			}
		}
	}
	return n, err
}

func (p *cpuProfileOnBanner) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := p.f.Close()
	p.f = nil
	return err
}

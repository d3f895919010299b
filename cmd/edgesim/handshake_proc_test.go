package main

// CPU pinning of the benchmark's client and server, and the server's CPU time and memory from /proc.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pinning reports whether server and client go on separate cores: not when asked not to, and
// not on a one-CPU machine.
func pinning() bool {
	if os.Getenv(envBenchNoPin) == "1" {
		return false
	}
	online, err := os.ReadFile("/sys/devices/system/cpu/online")
	return err == nil && strings.TrimSpace(string(online)) != "0"
}

var pinOnce sync.Once

// pinClient moves this process (the client) to clientCPU.
func pinClient(b *testing.B) {
	if !pinning() {
		return
	}
	pinOnce.Do(func() {
		if err := pinAllThreads(clientCPU); err != nil {
			b.Logf("client not pinned to CPU %d: %v", clientCPU, err)
		}
	})
}

// pinAllThreads sets the CPU affinity of every thread of this process to cpu. Threads made
// later inherit it from the thread that makes them.
func pinAllThreads(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 2 { // again, for threads started during the first pass
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
		}
	}
	return nil
}

// procTree returns pid and its descendants.
func procTree(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStatFields(p)
		if err != nil {
			continue // gone
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree, nil
}

// procStatFields returns the fields of /proc/<pid>/stat after the command name: [0] is the
// state (field 3 in proc(5)), [1] the parent, [11] utime, [12] stime.
func procStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// procTreeCPU returns the user+system CPU time of pid and its descendants, in clock ticks of
// 10 ms: measure enough handshakes that a tick does not matter.
func procTreeCPU(pid int) (time.Duration, error) {
	tree, err := procTree(pid)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for i, p := range tree {
		f, err := procStatFields(p)
		if err != nil {
			if i == 0 {
				return 0, fmt.Errorf("server process %d: %w", pid, err)
			}
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / clkTck, nil
}

// procTreeMemory returns the resident (VmRSS) and proportional (Pss: shared pages split between
// the processes sharing them) set sizes of pid and its descendants, in bytes.
func procTreeMemory(pid int) (rss, pss int64, err error) {
	tree, err := procTree(pid)
	if err != nil {
		return 0, 0, err
	}
	for i, p := range tree {
		r, err := procKB(fmt.Sprintf("/proc/%d/status", p), "VmRSS:")
		if err != nil {
			if i == 0 {
				return 0, 0, err
			}
			continue
		}
		s, _ := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss:")
		rss += r << 10
		pss += s << 10
	}
	return rss, pss, nil
}

// procKB reads a "Key:   1234 kB" line from a /proc file.
func procKB(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}

// selfCPU returns the user+system CPU time of this process (the client) so far, children not
// included. The client does the same work whichever server it drives, so the server's CPU time
// over the client's is a figure that machine-wide changes of speed (a VM's neighbours) mostly
// cancel out of.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

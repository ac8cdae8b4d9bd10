package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procCPU is the CPU time a process has used (user + system, its own
// threads only; children are not included).
type procCPU struct {
	User, System time.Duration
}

// Total is user + system time.
func (c procCPU) Total() time.Duration { return c.User + c.System }

// parseStat reads utime and stime (fields 14 and 15 of proc(5)
// /proc/PID/stat, in clock ticks). The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseStat(b []byte, tick time.Duration) (procCPU, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procCPU{}, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return procCPU{}, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	u, err1 := strconv.ParseUint(f[utime], 10, 64)
	s, err2 := strconv.ParseUint(f[stime], 10, 64)
	if err1 != nil || err2 != nil {
		return procCPU{}, fmt.Errorf("stat: bad utime/stime %q %q", f[utime], f[stime])
	}
	return procCPU{User: time.Duration(u) * tick, System: time.Duration(s) * tick}, nil
}

// readCPU reads the CPU time of pid (0 = this process).
func readCPU(pid int) (procCPU, error) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return procCPU{}, err
	}
	return parseStat(b, clockTick())
}

// procMem is the resident set of a process, from /proc/PID/status.
type procMem struct {
	RSS int64 // VmRSS, bytes
	HWM int64 // VmHWM: peak RSS since start, bytes
}

// parseStatus reads VmRSS and VmHWM (in kB, i.e. KiB) from /proc/PID/status.
func parseStatus(b []byte) (procMem, error) {
	var m procMem
	var seen int
	for line := range bytes.Lines(b) {
		key, rest, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var dst *int64
		switch string(key) {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		default:
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("status: bad %s line %q", key, bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status: bad %s value %q", key, f[0])
		}
		*dst = kb << 10
		seen++
	}
	if seen != 2 {
		return m, fmt.Errorf("status: VmRSS or VmHWM missing")
	}
	return m, nil
}

// readMem reads the resident set of pid (0 = this process).
func readMem(pid int) (procMem, error) {
	b, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return procMem{}, err
	}
	return parseStatus(b)
}

func procPath(pid int, file string) string {
	if pid == 0 {
		return "/proc/self/" + file
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + file
}

// atClkTck is the auxiliary vector entry holding sysconf(_SC_CLK_TCK).
const atClkTck = 17

var clockTick = sync.OnceValue(func() time.Duration {
	hz := uint64(100) // USER_HZ on every Linux architecture Go runs on
	if b, err := os.ReadFile("/proc/self/auxv"); err == nil {
		if v, ok := auxvValue(b, atClkTck); ok && v > 0 {
			hz = v
		}
	}
	return time.Second / time.Duration(hz)
})

// auxvValue finds key in a native-endian 64-bit auxiliary vector.
func auxvValue(b []byte, key uint64) (uint64, bool) {
	for i := 0; i+16 <= len(b); i += 16 {
		k := binary.NativeEndian.Uint64(b[i:])
		if k == 0 {
			break
		}
		if k == key {
			return binary.NativeEndian.Uint64(b[i+8:]), true
		}
	}
	return 0, false
}

// memSampler polls a process's VmRSS and keeps the largest value seen, in
// addition to the kernel's own VmHWM.
type memSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	peak int64
}

func sampleMem(pid int, every time.Duration) *memSampler {
	s := &memSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, err := readMem(pid); err == nil {
				s.peak = max(s.peak, m.RSS)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the largest VmRSS seen.
func (s *memSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	return s.peak
}

// machineCPU is the first line of /proc/stat: clock ticks spent by all
// CPUs busy (user, nice, system, irq, softirq, steal) and idle (idle,
// iowait) since boot.
type machineCPU struct {
	Busy, Idle, Steal uint64
}

// parseMachineStat reads the aggregate "cpu" line of proc(5) /proc/stat.
func parseMachineStat(b []byte) (machineCPU, error) {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat: bad field %q", f[i+1])
		}
		v[i] = n
	}
	// user nice system idle iowait irq softirq steal
	return machineCPU{Busy: v[0] + v[1] + v[2] + v[5] + v[6] + v[7], Idle: v[3] + v[4], Steal: v[7]}, nil
}

func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineStat(b)
}

// busyBetween returns the fraction of all CPUs busy between a and b, and
// the fraction stolen by the hypervisor.
func busyBetween(a, b machineCPU) (busy, steal float64) {
	total := float64((b.Busy - a.Busy) + (b.Idle - a.Idle))
	if total == 0 {
		return 0, 0
	}
	return float64(b.Busy-a.Busy) / total, float64(b.Steal-a.Steal) / total
}

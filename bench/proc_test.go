package main

import (
	"encoding/binary"
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	line := "4242 (se srelay) x) S 1 4242 4242 0 -1 4194560 1203 0 0 0 1234 567 0 0 20 0 9 0 88888 1234567 2345 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	c, err := parseStat([]byte(line), 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != 12340*time.Millisecond || c.System != 5670*time.Millisecond || c.Total() != 18010*time.Millisecond {
		t.Errorf("parseStat = %+v", c)
	}
	for _, bad := range []string{"", "1 (x S 1 2", "1 (x) S 1 2 3", "1 (x) S 1 2 3 4 5 6 7 8 9 10 a b c"} {
		if _, err := parseStat([]byte(bad), 10*time.Millisecond); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tsesrelay\nVmPeak:\t 1300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"
	m, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if m.HWM != 50<<20 || m.RSS != 40<<20 {
		t.Errorf("parseStatus = %+v", m)
	}
	for _, bad := range []string{"Name:\tx\n", "VmHWM:\t1 kB\n", "VmHWM:\t1 MB\nVmRSS:\t1 kB\n", "VmHWM:\tx kB\nVmRSS:\t1 kB\n"} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q): no error", bad)
		}
	}
}

func TestReadOwnProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	c, err := readCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := readMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.HWM < m.RSS || c.Total() < 0 {
		t.Errorf("own process: cpu %+v mem %+v", c, m)
	}
	if tick := clockTick(); tick <= 0 || tick > time.Second {
		t.Errorf("clock tick %v", tick)
	}
}

func TestAuxvValue(t *testing.T) {
	b := make([]byte, 0, 64)
	for _, kv := range [][2]uint64{{6, 4096}, {atClkTck, 250}, {0, 0}, {atClkTck, 1}} {
		b = binary.NativeEndian.AppendUint64(b, kv[0])
		b = binary.NativeEndian.AppendUint64(b, kv[1])
	}
	if v, ok := auxvValue(b, atClkTck); !ok || v != 250 {
		t.Errorf("auxvValue = %d, %v", v, ok)
	}
	if _, ok := auxvValue(b, 99); ok {
		t.Error("found a key after AT_NULL")
	}
}

func TestParseMachineStat(t *testing.T) {
	a, err := parseMachineStat([]byte("cpu  100 5 50 1000 10 1 4 40 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Busy != 200 || a.Idle != 1010 || a.Steal != 40 {
		t.Errorf("parseMachineStat = %+v", a)
	}
	b := machineCPU{Busy: a.Busy + 150, Idle: a.Idle + 50, Steal: a.Steal + 20}
	if busy, steal := busyBetween(a, b); busy != 0.75 || steal != 0.1 {
		t.Errorf("busyBetween = %v, %v", busy, steal)
	}
	if _, err := parseMachineStat([]byte("intr 1 2 3\n")); err == nil {
		t.Error("no error for a file without the cpu line")
	}
}

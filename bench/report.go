package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
)

// machineLine describes where the numbers come from.
func machineLine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return fmt.Sprintf("%d CPUs (%s), %s %s/%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// values returns f of the sample labelled label in each run that has one,
// indexed by run (NaN where missing).
func (o *orchestrator) values(scenario int, label string, f func(*sample) float64) []float64 {
	out := make([]float64, o.runs)
	for i := range out {
		out[i] = math.NaN()
	}
	for i := range o.samples {
		s := &o.samples[i]
		if s.Scenario == scenario && s.Label == label && s.Run >= 1 && s.Run <= o.runs {
			out[s.Run-1] = f(s)
		}
	}
	return out
}

func dropNaN(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			out = append(out, x)
		}
	}
	return out
}

// med is the median over runs of f for label.
func (o *orchestrator) med(scenario int, label string, f func(*sample) float64) float64 {
	return median(dropNaN(o.values(scenario, label, f)))
}

// medOf is the median over runs of g(a's value, b's value), each pair
// taken from the same run: the relay and the baseline share the machine's
// state of the moment.
func (o *orchestrator) medOf(scenario int, a, b string, f func(*sample) float64, g func(x, y float64) float64) float64 {
	xa, xb := o.values(scenario, a, f), o.values(scenario, b, f)
	var rs []float64
	for i := range xa {
		if r := g(xa[i], xb[i]); !math.IsNaN(r) {
			rs = append(rs, r)
		}
	}
	return median(rs)
}

func ratioOf(x, y float64) float64 { return ratio(x, y) }
func diffOf(x, y float64) float64  { return x - y }

var (
	perSec    = func(s *sample) float64 { return s.Load.PerSec }
	p50       = func(s *sample) float64 { return s.Load.Reply.P50 }
	p99       = func(s *sample) float64 { return s.Load.Reply.P99 }
	cpuPerMsg = func(s *sample) float64 { return s.CPUPerMsg }
	hwmMiB    = func(s *sample) float64 { return mib(s.HWM) }
	peakMiB   = func(s *sample) float64 { return mib(s.RSSPeak) }
	rssBefore = func(s *sample) float64 { return mib(s.RSSBefore) }
	rssHeld   = func(s *sample) float64 { return mib(s.RSSHeld) }
	openSecs  = func(s *sample) float64 { return s.Load.OpenSeconds }
	setupP50  = func(s *sample) float64 {
		if s.Load.Setup == nil {
			return math.NaN()
		}
		return s.Load.Setup.P50
	}
	setupP99 = func(s *sample) float64 {
		if s.Load.Setup == nil {
			return math.NaN()
		}
		return s.Load.Setup.P99
	}
	offered = func(s *sample) float64 { return s.Load.TargetRate }
	failed  = func(s *sample) float64 { return float64(s.Load.Failed) }
)

// table prints a Markdown table.
func (o *orchestrator) table(head []string, rows [][]string) {
	fmt.Fprintf(o.out, "| %s |\n", strings.Join(head, " | "))
	seps := make([]string, len(head))
	for i := range seps {
		seps[i] = "---"
		if i > 0 {
			seps[i] = "---:"
		}
	}
	fmt.Fprintf(o.out, "|%s|\n", strings.Join(seps, "|"))
	for _, r := range rows {
		fmt.Fprintf(o.out, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Fprintln(o.out)
}

func f0(x float64) string { return num(x, "%.0f") }
func f1(x float64) string { return num(x, "%.1f") }
func f2(x float64) string { return num(x, "%.2f") }
func f3(x float64) string { return num(x, "%.3f") }
func pct(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*x)
}

func num(x float64, format string) string {
	if math.IsNaN(x) {
		return "–"
	}
	return fmt.Sprintf(format, x)
}

// report prints the medians of scenario n as Markdown.
func (o *orchestrator) report(n int) {
	fmt.Fprintf(o.out, "## Scenario %d (medians of %d runs)\n\n", n, o.runs)
	defer func() {
		var busy, bg []float64
		for i := range o.samples {
			if s := &o.samples[i]; s.Scenario == n {
				busy, bg = append(busy, s.MachineBusy), append(bg, s.Background)
			}
		}
		fmt.Fprintf(o.out, "Whole machine during the measured windows: median %.0f%% of the CPUs busy; "+
			"in the second before each load (other users of the machine): median %.0f%%, max %.0f%%.\n\n",
			100*median(busy), 100*median(bg), 100*slices.Max(append(bg, 0)))
	}()
	switch n {
	case 1:
		o.throughputTable(n, []string{s1HTTP, s1HTTPS, labelFwd}, s1Base, false)
		fmt.Fprintf(o.out, "Latency at half of the relay's peak (SES over HTTP), the same offered rate for every server:\n\n")
		var rows [][]string
		for _, l := range []string{s1HTTPHalf, s1HTTPSHalf, s1FwdHalf, s1BaseHalf} {
			added, addedFwd := "–", "–"
			if l != s1BaseHalf {
				added = f3(o.medOf(n, l, s1BaseHalf, p99, diffOf))
			}
			if l != s1BaseHalf && l != s1FwdHalf {
				addedFwd = f3(o.medOf(n, l, s1FwdHalf, p99, diffOf))
			}
			rows = append(rows, []string{l, f0(o.med(n, l, offered)), f0(o.med(n, l, perSec)),
				f3(o.med(n, l, p50)), f3(o.med(n, l, p99)), added, addedFwd, f3(o.med(n, l, cpuPerMsg)), f0(o.med(n, l, failed))})
		}
		o.table([]string{"server", "offered msg/s", "achieved msg/s", "reply p50 ms", "reply p99 ms", "p99 added vs baseline ms", "p99 added vs forwarding ms", "server CPU ms/msg", "failed"}, rows)
	case 2:
		o.throughputTable(n, []string{s1HTTP, labelFwd}, s1Base, true)
	case 3:
		o.throughputTable(n, []string{"relay, no DKIM", "relay, DKIM RSA-2048", "relay, DKIM Ed25519", labelFwd}, s1Base, false)
		var rows [][]string
		for _, l := range []string{"relay, DKIM RSA-2048", "relay, DKIM Ed25519"} {
			cost := o.medOf(n, l, "relay, no DKIM", perSec, func(x, y float64) float64 { return 1 - ratio(x, y) })
			cpu := o.medOf(n, l, "relay, no DKIM", cpuPerMsg, diffOf)
			rows = append(rows, []string{l, pct(cost), f3(cpu), o.firstDKIM(n, l)})
		}
		o.table([]string{"signing", "throughput lost vs no DKIM", "CPU ms/msg added", "DKIM a= seen by the stand-in"}, rows)
	case 4, 6:
		size := float64(o.bigSize)
		what := fmt.Sprintf("one %.0f MiB message", size/(1<<20))
		if n == 6 {
			what = fmt.Sprintf("%d concurrent %.0f MiB messages", o.bigConns, size/(1<<20))
			size *= float64(o.bigConns)
		}
		var rows [][]string
		for _, l := range []string{s1HTTP, labelFwd, s1Base} {
			rows = append(rows, []string{l, f1(o.med(n, l, rssBefore)), f1(o.med(n, l, peakMiB)), f1(o.med(n, l, hwmMiB)),
				f2(o.med(n, l, func(s *sample) float64 { return float64(s.HWM) / size })),
				f2(o.med(n, l, func(s *sample) float64 { return float64(s.HWM-s.RSSBefore) / size })),
				f2(o.med(n, l, func(s *sample) float64 { return s.Load.Seconds })), f0(o.med(n, l, failed))})
		}
		o.table([]string{fmt.Sprintf("server (%s)", what), "RSS before MiB", "peak RSS polled MiB", "VmHWM MiB", "VmHWM / size", "(VmHWM − before) / size", "DATA→reply s", "failed"}, rows)
	case 7:
		var rows [][]string
		for _, l := range []string{s7Direct, s7Queue, s7DirectHalf, s7QueueHalf} {
			r := "1"
			switch l {
			case s7Queue:
				r = pct(o.medOf(n, l, s7Direct, perSec, ratioOf))
			case s7DirectHalf, s7QueueHalf:
				r = "–"
			}
			load := "closed loop"
			if l == s7DirectHalf || l == s7QueueHalf {
				load = f0(o.med(n, l, offered))
			}
			rows = append(rows, []string{l, load, f0(o.med(n, l, perSec)), r,
				f3(o.med(n, l, p50)), f3(o.med(n, l, p99)), f3(o.med(n, l, cpuPerMsg)),
				f3(o.med(n, l, func(s *sample) float64 { return s.StubCPUPerMsg })),
				f0(o.med(n, l, func(s *sample) float64 { return float64(s.StubCalls) })), f0(o.med(n, l, failed))})
		}
		o.table([]string{"server", "offered msg/s", "msg/s", "× direct", "reply p50 ms", "reply p99 ms", "server CPU ms/msg", "stand-in CPU ms/msg", "SES calls (whole life)", "failed"}, rows)
	case 5:
		var rows [][]string
		for _, l := range []string{s1HTTP, s1Base} {
			rows = append(rows, []string{l, f1(o.med(n, l, rssBefore)), f1(o.med(n, l, rssHeld)),
				f1(o.med(n, l, func(s *sample) float64 {
					if s.Load.Opened == 0 {
						return math.NaN()
					}
					return float64(s.RSSHeld-s.RSSBefore) / 1024 / float64(s.Load.Opened)
				})),
				f1(o.med(n, l, hwmMiB)), f2(o.med(n, l, openSecs)), f3(o.med(n, l, func(s *sample) float64 { return s.CPUPerCon })),
				f1(o.med(n, l, setupP99)), f0(o.med(n, l, func(s *sample) float64 { return float64(s.Load.Opened) }))})
		}
		o.table([]string{fmt.Sprintf("server (%d idle connections)", o.idle), "RSS before MiB", "RSS held MiB", "KiB per conn", "VmHWM MiB", "open all s", "CPU ms/conn", "setup p99 ms", "opened"}, rows)
	}
}

// firstDKIM lists the distinct a= tags the stand-in saw on the first
// message of each run ("none" when unsigned).
func (o *orchestrator) firstDKIM(n int, label string) string {
	var seen []string
	for i := range o.samples {
		s := &o.samples[i]
		if s.Scenario != n || s.Label != label {
			continue
		}
		a := s.StubFirstDKIM
		if a == "" {
			a = "none"
		}
		if !slices.Contains(seen, a) {
			seen = append(seen, a)
		}
	}
	return strings.Join(seen, ", ")
}

// throughputTable prints peak throughput rows and their ratios to the
// baseline and to the forwarding limit (labelFwd), each taken within a run.
func (o *orchestrator) throughputTable(n int, labels []string, base string, setup bool) {
	head := []string{"server", "msg/s", "× baseline", "× forwarding", "reply p50 ms", "reply p99 ms", "server CPU ms/msg"}
	if setup {
		head = append(head, "setup p50 ms", "setup p99 ms")
	}
	head = append(head, "stand-in CPU ms/msg", "generator CPU ms/msg", "SES conns opened", "peak RSS MiB", "failed")
	var rows [][]string
	for _, l := range append(labels, base) {
		r, rf := "1", "–"
		if l != base {
			r = pct(o.medOf(n, l, base, perSec, ratioOf))
		}
		if l != base && l != labelFwd {
			rf = f2(o.medOf(n, l, labelFwd, perSec, ratioOf))
		}
		row := []string{l, f0(o.med(n, l, perSec)), r, rf, f3(o.med(n, l, p50)), f3(o.med(n, l, p99)), f3(o.med(n, l, cpuPerMsg))}
		if setup {
			row = append(row, f2(o.med(n, l, setupP50)), f2(o.med(n, l, setupP99)))
		}
		stub, conns := "–", "–"
		if l != base {
			stub = f3(o.med(n, l, func(s *sample) float64 { return s.StubCPUPerMsg }))
			conns = f0(o.med(n, l, func(s *sample) float64 { return float64(s.StubConns) }))
		}
		row = append(row, stub, f3(o.med(n, l, func(s *sample) float64 { return s.Load.GeneratorCPUPerMsg })), conns,
			f1(o.med(n, l, peakMiB)), f0(o.med(n, l, failed)))
		rows = append(rows, row)
	}
	o.table(head, rows)
}

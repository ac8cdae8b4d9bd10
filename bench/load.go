package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Load modes.
const (
	modePersistent = "persistent"  // STARTTLS + AUTH once, then messages
	modePerMessage = "per-message" // connect, STARTTLS, AUTH, one message, QUIT
)

// loadConfig describes one load. Exactly one of Duration and Count bounds
// a throughput load; Idle and Big select the other two kinds.
type loadConfig struct {
	Addr, User, Pass string
	Mode             string
	Conns            int
	Size             int
	From, To         string
	Duration         time.Duration // measured window, after Warmup
	Warmup           time.Duration
	Count            int
	Rate             float64 // messages/s offered (open loop); 0 = as fast as replies come
	Timeout          time.Duration

	Idle     int           // open this many authenticated connections and hold them
	HoldFor  time.Duration // how long to hold them when Hold is nil
	Big      int           // send one message of this size
	MaxSetup int           // idle: concurrent connection openings (0 = Conns)

	// OnWindow, when set, is called as the measured window starts (true)
	// and ends (false), so that a caller can read the server's CPU time
	// at the same instants. For an idle load it is called when the first
	// connection is started and when the last is authenticated.
	OnWindow func(start bool)
	// Hold, when set, is called with all idle connections open; they are
	// closed when it returns.
	Hold func()
}

// loadResult is what one load measured. Latencies are in milliseconds.
type loadResult struct {
	Kind       string  `json:"kind"` // throughput, idle or big
	Addr       string  `json:"addr"`
	Mode       string  `json:"mode,omitempty"`
	Conns      int     `json:"conns"`
	Size       int     `json:"size"`
	TargetRate float64 `json:"target_rate,omitempty"`

	Seconds  float64 `json:"seconds"`
	Messages int64   `json:"messages"` // transactions answered 250 in the window
	Failed   int64   `json:"failed"`   // transactions that failed in the window
	PerSec   float64 `json:"messages_per_s"`

	// Reply is the time from the end of DATA (CRLF.CRLF handed to the
	// kernel) to the final reply.
	Reply latencySummary `json:"reply_latency"`
	// Setup is connect → 235 after AUTH, for per-message and idle loads.
	Setup *latencySummary `json:"session_setup,omitempty"`
	// Sojourn is, in an open-loop load, the time from a message's
	// scheduled arrival to its reply (queueing for a free connection
	// included).
	Sojourn *latencySummary `json:"sojourn,omitempty"`

	Errors       map[string]int64 `json:"errors"`
	ErrorSamples []string         `json:"error_samples,omitempty"`

	Opened      int     `json:"opened,omitempty"`       // idle: connections authenticated
	OpenSeconds float64 `json:"open_seconds,omitempty"` // idle: first dial → last 235

	// GeneratorCPUPerMsg is this process's own CPU time per message in
	// the window: the generator competes with the server for the cores.
	GeneratorCPUPerMsg float64 `json:"generator_cpu_ms_per_msg,omitempty"`
}

// tally is one worker's record; workers never share one.
type tally struct {
	reply, setup, sojourn []time.Duration
	ok, failed            int64
	errors                map[string]int64
	samples               []string
}

func (t *tally) fail(err error) {
	t.failed++
	if t.errors == nil {
		t.errors = map[string]int64{}
	}
	t.errors[errorKey(err)]++
	if len(t.samples) < 5 {
		t.samples = append(t.samples, err.Error())
	}
}

// arrival is one message to send; sched is its scheduled time in an
// open-loop load (zero otherwise).
type arrival struct{ sched time.Time }

func (cfg *loadConfig) check() error {
	if cfg.Addr == "" {
		return errors.New("--addr is required")
	}
	if cfg.Mode != modePersistent && cfg.Mode != modePerMessage {
		return fmt.Errorf("--mode must be %s or %s, got %q", modePersistent, modePerMessage, cfg.Mode)
	}
	if cfg.Conns < 1 {
		return errors.New("--conns must be at least 1")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if strings.IndexByte(cfg.From, '@') < 1 {
		return fmt.Errorf("--from must be an address, got %q", cfg.From)
	}
	if cfg.Idle > 0 || cfg.Big > 0 {
		return nil
	}
	if (cfg.Duration > 0) == (cfg.Count > 0) {
		return errors.New("give exactly one of --duration and --count")
	}
	if cfg.Rate < 0 {
		return errors.New("--rate must not be negative")
	}
	return nil
}

// runLoad runs the load cfg describes and returns what it measured. It
// stops by itself: at the end of the window, after Count messages, or
// when ctx is done.
func runLoad(ctx context.Context, cfg loadConfig) (*loadResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	switch {
	case cfg.Idle > 0:
		return runIdle(ctx, cfg)
	case cfg.Big > 0:
		return runBig(ctx, cfg)
	}
	return runThroughput(ctx, cfg)
}

func runThroughput(ctx context.Context, cfg loadConfig) (*loadResult, error) {
	tmpl := newMessage(cfg.From, cfg.To, cfg.Size)
	var seq atomic.Int64

	start := time.Now()
	winStart := start.Add(cfg.Warmup)
	winEnd := winStart.Add(cfg.Duration)
	if cfg.Count > 0 {
		winStart, winEnd = start, time.Time{} // the window ends with the last message
	}
	inWindow := func(t time.Time) bool {
		return !t.Before(winStart) && (winEnd.IsZero() || t.Before(winEnd))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Arrivals: in a closed loop each worker takes the next message as
	// soon as it is free; in an open loop a dispatcher releases them at
	// the offered rate and they wait for a free worker.
	var next func() (arrival, bool)
	var remaining atomic.Int64
	remaining.Store(int64(cfg.Count))
	more := func(now time.Time) bool {
		if cfg.Count > 0 {
			return remaining.Add(-1) >= 0
		}
		return now.Before(winEnd)
	}
	if cfg.Rate == 0 {
		next = func() (arrival, bool) {
			return arrival{}, ctx.Err() == nil && more(time.Now())
		}
	} else {
		ch := make(chan arrival, 1<<16)
		go func() {
			defer close(ch)
			interval := float64(time.Second) / cfg.Rate
			for i := 0; ; i++ {
				due := start.Add(time.Duration(float64(i) * interval))
				if d := time.Until(due); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				}
				if ctx.Err() != nil || !more(due) {
					return
				}
				select {
				case ch <- arrival{sched: due}:
				case <-ctx.Done():
					return
				}
			}
		}()
		next = func() (arrival, bool) {
			a, ok := <-ch
			return a, ok
		}
	}

	var cpuStart, cpuEnd procCPU
	var windowOnce sync.Once
	openWindow := func() {
		cpuStart, _ = readCPU(0)
		if cfg.OnWindow != nil {
			cfg.OnWindow(true)
		}
	}
	if cfg.Warmup > 0 && cfg.Count == 0 {
		t := time.AfterFunc(cfg.Warmup, func() { windowOnce.Do(openWindow) })
		defer t.Stop()
	} else {
		windowOnce.Do(openWindow)
	}

	tallies := make([]tally, cfg.Conns)
	var lastDone atomic.Int64 // unix nanoseconds of the last reply in the window
	var wg sync.WaitGroup
	for w := range cfg.Conns {
		t := &tallies[w]
		wg.Go(func() {
			var c *client
			defer func() {
				if c != nil {
					c.quit() //nolint:errcheck // end of the load
				}
			}()
			buf := make([]byte, 0, tmpl.size+64)
			for {
				a, ok := next()
				if !ok {
					return
				}
				msg := tmpl.render(seq.Add(1), buf)
				var (
					reply, setup time.Duration
					err          error
				)
				if c == nil {
					t0 := time.Now()
					if c, err = dialClient(ctx, cfg.Addr, cfg.User, cfg.Pass, cfg.Timeout); err == nil {
						setup = time.Since(t0)
					}
				}
				if err == nil {
					reply, err = c.send(cfg.From, cfg.To, msg)
				}
				if cfg.Mode == modePerMessage && c != nil {
					if qerr := c.quit(); qerr != nil && err == nil {
						err = qerr
					}
					c = nil
				}
				var ne *netError
				if errors.As(err, &ne) && c != nil {
					c.Close()
					c = nil
				}
				done := time.Now()
				if !inWindow(done) {
					if err != nil && ctx.Err() == nil {
						time.Sleep(10 * time.Millisecond) // a dead server must not spin the loop
					}
					continue
				}
				lastDone.Store(done.UnixNano())
				if setup > 0 {
					t.setup = append(t.setup, setup)
				}
				if err != nil {
					t.fail(err)
					if ne != nil && ctx.Err() == nil {
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				t.ok++
				t.reply = append(t.reply, reply)
				if !a.sched.IsZero() {
					t.sojourn = append(t.sojourn, done.Sub(a.sched))
				}
			}
		})
	}
	wg.Wait()
	windowOnce.Do(openWindow) // a load shorter than its warmup
	cpuEnd, _ = readCPU(0)
	if cfg.OnWindow != nil {
		cfg.OnWindow(false)
	}

	end := winEnd
	if cfg.Count > 0 {
		end = time.Unix(0, lastDone.Load())
	}
	res := &loadResult{
		Kind: "throughput", Addr: cfg.Addr, Mode: cfg.Mode, Conns: cfg.Conns, Size: tmpl.size,
		TargetRate: cfg.Rate, Seconds: end.Sub(winStart).Seconds(),
	}
	merged := mergeTallies(tallies)
	res.fill(merged)
	if cfg.Mode == modePerMessage {
		s := summarize(merged.setup)
		res.Setup = &s
	}
	if cfg.Rate > 0 {
		s := summarize(merged.sojourn)
		res.Sojourn = &s
	}
	if res.Seconds > 0 {
		res.PerSec = float64(res.Messages) / res.Seconds
	}
	if res.Messages > 0 {
		res.GeneratorCPUPerMsg = ms(cpuEnd.Total()-cpuStart.Total()) / float64(res.Messages)
	}
	return res, ctx.Err()
}

func mergeTallies(ts []tally) tally {
	var m tally
	m.errors = map[string]int64{}
	for i := range ts {
		t := &ts[i]
		m.reply = append(m.reply, t.reply...)
		m.setup = append(m.setup, t.setup...)
		m.sojourn = append(m.sojourn, t.sojourn...)
		m.ok += t.ok
		m.failed += t.failed
		for k, v := range t.errors {
			m.errors[k] += v
		}
		for _, s := range t.samples {
			if len(m.samples) < 5 && !slices.Contains(m.samples, s) {
				m.samples = append(m.samples, s)
			}
		}
	}
	return m
}

func (r *loadResult) fill(m tally) {
	r.Messages, r.Failed = m.ok, m.failed
	r.Reply = summarize(m.reply)
	r.Errors = m.errors
	r.ErrorSamples = m.samples
}

// runIdle opens cfg.Idle authenticated connections, cfg.MaxSetup at a
// time, holds them, then says QUIT on each.
func runIdle(ctx context.Context, cfg loadConfig) (*loadResult, error) {
	par := cfg.MaxSetup
	if par <= 0 {
		par = cfg.Conns
	}
	clients := make([]*client, cfg.Idle)
	tallies := make([]tally, par)
	var nextConn atomic.Int64
	if cfg.OnWindow != nil {
		cfg.OnWindow(true)
	}
	start := time.Now()
	var lastDone atomic.Int64
	var wg sync.WaitGroup
	for w := range par {
		t := &tallies[w]
		wg.Go(func() {
			for {
				i := int(nextConn.Add(1) - 1)
				if i >= cfg.Idle || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				c, err := dialClient(ctx, cfg.Addr, cfg.User, cfg.Pass, cfg.Timeout)
				if err != nil {
					t.fail(err)
					continue
				}
				now := time.Now()
				t.setup = append(t.setup, now.Sub(t0))
				t.ok++
				clients[i] = c
				for {
					last := lastDone.Load()
					if now.UnixNano() <= last || lastDone.CompareAndSwap(last, now.UnixNano()) {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	if cfg.OnWindow != nil {
		cfg.OnWindow(false)
	}
	merged := mergeTallies(tallies)
	res := &loadResult{Kind: "idle", Addr: cfg.Addr, Conns: cfg.Idle, Opened: int(merged.ok)}
	res.Errors, res.ErrorSamples, res.Failed = merged.errors, merged.samples, merged.failed
	s := summarize(merged.setup)
	res.Setup = &s
	if merged.ok > 0 {
		res.OpenSeconds = time.Unix(0, lastDone.Load()).Sub(start).Seconds()
	}
	if cfg.Hold != nil {
		cfg.Hold()
	} else if cfg.HoldFor > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(cfg.HoldFor):
		}
	}
	// Say QUIT on every connection, par at a time; count the ones that
	// did not survive the hold.
	var dropped atomic.Int64
	var qwg sync.WaitGroup
	var nextQuit atomic.Int64
	for range par {
		qwg.Go(func() {
			for {
				i := int(nextQuit.Add(1) - 1)
				if i >= len(clients) {
					return
				}
				if clients[i] != nil && clients[i].quit() != nil {
					dropped.Add(1)
				}
			}
		})
	}
	qwg.Wait()
	if n := dropped.Load(); n > 0 {
		res.Errors["net:hold"] += n
	}
	return res, ctx.Err()
}

// runBig sends one message of cfg.Big bytes on each of cfg.Conns
// connections (at least one), all at once: every connection is
// authenticated before the first DATA starts.
func runBig(ctx context.Context, cfg loadConfig) (*loadResult, error) {
	n := max(cfg.Conns, 1)
	tmpl := newMessage(cfg.From, cfg.To, cfg.Big)
	res := &loadResult{Kind: "big", Addr: cfg.Addr, Mode: modePersistent, Conns: n, Size: tmpl.size, Errors: map[string]int64{}}
	tallies := make([]tally, n)
	clients := make([]*client, n)
	msgs := make([][]byte, n)
	for i := range n {
		c, err := dialClient(ctx, cfg.Addr, cfg.User, cfg.Pass, cfg.Timeout)
		if err != nil {
			tallies[i].fail(err)
			continue
		}
		defer c.quit() //nolint:errcheck // end of the load
		clients[i], msgs[i] = c, tmpl.render(int64(i+1), nil)
	}
	if cfg.OnWindow != nil {
		cfg.OnWindow(true)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		if c == nil {
			continue
		}
		wg.Go(func() {
			reply, err := c.send(cfg.From, cfg.To, msgs[i])
			if err != nil {
				tallies[i].fail(err)
			} else {
				tallies[i].ok = 1
				tallies[i].reply = []time.Duration{reply}
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(t0).Seconds()
	if cfg.OnWindow != nil {
		cfg.OnWindow(false)
	}
	res.fill(mergeTallies(tallies))
	if res.Seconds > 0 {
		res.PerSec = float64(res.Messages) / res.Seconds
	}
	return res, nil
}

// printResult writes r as a small human-readable table.
func printResult(w io.Writer, title string, r *loadResult) {
	if title != "" {
		fmt.Fprintf(w, "== %s\n", title)
	}
	switch r.Kind {
	case "idle":
		fmt.Fprintf(w, "%-16s %d of %d authenticated connections in %.3f s\n", "idle", r.Opened, r.Conns, r.OpenSeconds)
		fmt.Fprintf(w, "%-16s %s\n", "setup (ms)", latencyLine(*r.Setup))
	case "big":
		fmt.Fprintf(w, "%-16s %d bytes, DATA sent and answered in %.3f s\n", "big message", r.Size, r.Seconds)
		fmt.Fprintf(w, "%-16s %s\n", "reply (ms)", latencyLine(r.Reply))
	default:
		rate := "closed loop"
		if r.TargetRate > 0 {
			rate = fmt.Sprintf("open loop at %.0f msg/s", r.TargetRate)
		}
		fmt.Fprintf(w, "%-16s %s, %d conns, %d-byte messages, %s\n", "load", r.Mode, r.Conns, r.Size, rate)
		fmt.Fprintf(w, "%-16s %d in %.2f s = %.1f msg/s\n", "messages", r.Messages, r.Seconds, r.PerSec)
		fmt.Fprintf(w, "%-16s %s\n", "reply (ms)", latencyLine(r.Reply))
		if r.Setup != nil {
			fmt.Fprintf(w, "%-16s %s\n", "setup (ms)", latencyLine(*r.Setup))
		}
		if r.Sojourn != nil {
			fmt.Fprintf(w, "%-16s %s\n", "sojourn (ms)", latencyLine(*r.Sojourn))
		}
		if r.GeneratorCPUPerMsg > 0 {
			fmt.Fprintf(w, "%-16s %.3f ms CPU/msg\n", "generator", r.GeneratorCPUPerMsg)
		}
	}
	fmt.Fprintf(w, "%-16s %s\n", "errors", errorsLine(r.Errors))
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(w, "%-16s %s\n", "", s)
	}
}

func latencyLine(s latencySummary) string {
	if s.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (n=%d)", s.P50, s.P90, s.P99, s.P999, s.Max, s.N)
}

func errorsLine(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// loadMain is "bench load".
func loadMain(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	var cfg loadConfig
	fs.StringVar(&cfg.Addr, "addr", "", "SMTP server HOST:PORT (STARTTLS)")
	fs.StringVar(&cfg.User, "user", benchUser, "AUTH PLAIN username")
	fs.StringVar(&cfg.Pass, "pass", benchPass, "AUTH PLAIN password")
	fs.StringVar(&cfg.Mode, "mode", modePersistent, "persistent or per-message")
	fs.IntVar(&cfg.Conns, "conns", 16, "concurrent connections")
	size := fs.String("size", "8KiB", "message size (header and body)")
	fs.StringVar(&cfg.From, "from", "sender@bench.example.com", "From and MAIL FROM address (its domain must be the tenant's)")
	fs.StringVar(&cfg.To, "to", "rcpt@example.net", "recipient")
	fs.DurationVar(&cfg.Duration, "duration", 0, "measured window (after --warmup)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "load before the measured window starts")
	fs.IntVar(&cfg.Count, "count", 0, "send this many messages instead of a --duration")
	fs.Float64Var(&cfg.Rate, "rate", 0, "offered messages/s, open loop (0: closed loop, as fast as replies come)")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Minute, "per-command and per-message timeout")
	fs.IntVar(&cfg.Idle, "idle", 0, "open this many authenticated connections, hold them, report the time to open all")
	fs.DurationVar(&cfg.HoldFor, "hold", 5*time.Second, "with --idle: how long to hold the connections")
	big := fs.String("big", "", "send one message of this size (e.g. 30MiB)")
	useBaseline := fs.Bool("baseline", false, "start the baseline server in this process and load it (ignores --addr/--user/--pass)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Parse(args) //nolint:errcheck // ExitOnError

	var err error
	if cfg.Size, err = parseSize(*size); err != nil {
		return err
	}
	if *big != "" {
		if cfg.Big, err = parseSize(*big); err != nil {
			return err
		}
	}
	if *useBaseline {
		b, err := startBaseline("127.0.0.1:0", benchUser, benchPass)
		if err != nil {
			return err
		}
		defer b.Close()
		cfg.Addr, cfg.User, cfg.Pass = b.Addr(), benchUser, benchPass
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := runLoad(ctx, cfg)
	if res != nil {
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				return err
			}
		} else {
			printResult(os.Stdout, "", res)
		}
	}
	return err
}

// signalContext is canceled on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

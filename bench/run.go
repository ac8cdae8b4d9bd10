package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alexedwards/argon2id"
)

// runOpts are the flags of "bench run".
type runOpts struct {
	scenarios   []int
	runs        int
	relayBin    string
	duration    time.Duration
	warmup      time.Duration
	conns       int
	size        int
	bigSize     int
	bigConns    int
	idle        int
	idlePar     int
	dir         string
	jsonOut     string
	profile     string
	profileMode string
	profileDKIM string
	quiet       float64
	quietWait   time.Duration
	self        string
}

// sample is one measurement of one server in one run.
type sample struct {
	Scenario int         `json:"scenario"`
	Run      int         `json:"run"`
	Label    string      `json:"label"`
	Server   string      `json:"server"` // relay or baseline
	Load     *loadResult `json:"load"`

	// Server process figures, read from /proc.
	CPUms     float64 `json:"server_cpu_ms"`         // in the measured window
	CPUPerMsg float64 `json:"server_cpu_ms_per_msg"` // CPUms / messages
	RSSBefore int64   `json:"rss_before_bytes"`      // VmRSS as the load started
	RSSHeld   int64   `json:"rss_held_bytes,omitempty"`
	RSSAfter  int64   `json:"rss_after_bytes"` // VmRSS as the load ended
	RSSPeak   int64   `json:"rss_peak_bytes"`  // largest VmRSS polled during the load
	HWM       int64   `json:"rss_hwm_bytes"`   // VmHWM, the kernel's peak since start
	CPUPerCon float64 `json:"server_cpu_ms_per_conn,omitempty"`

	// The SES stand-in: SendEmail calls answered over its whole life,
	// how the first message it received was signed, and its CPU time per
	// message in the window (it shares the cores with the relay).
	// Background is the fraction of all CPUs busy just before the load
	// started (other work on the machine); see waitQuiet.
	Background float64 `json:"background_busy"`
	// MachineBusy is the fraction of all CPUs busy in the window, from
	// /proc/stat (every process, the kernel's network work, the
	// hypervisor's steal); Steal is the stolen part.
	MachineBusy  float64 `json:"machine_busy"`
	MachineSteal float64 `json:"machine_steal"`

	StubCalls     int64   `json:"ses_calls"`
	StubConns     int64   `json:"ses_connections"` // connections the relay opened to the stand-in
	StubFirstDKIM string  `json:"ses_first_dkim"`
	StubCPUPerMsg float64 `json:"ses_cpu_ms_per_msg,omitempty"`
}

// orchestrator runs scenarios and keeps every sample.
type orchestrator struct {
	runOpts
	hash    string
	keys    map[string]string // "rsa", "ed25519" → key file
	samples []sample
	out     io.Writer
}

const (
	benchDomain = "bench.example.com"
	benchFrom   = "sender@" + benchDomain
	benchTo     = "rcpt@example.net"
)

func runMain(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var o runOpts
	scen := fs.String("scenario", "1..5", `scenarios: "1", "1,3", "1..7", or "none" (with --profile)`)
	fs.IntVar(&o.runs, "runs", 3, "runs per scenario (medians are reported)")
	fs.StringVar(&o.relayBin, "relay-bin", "/tmp/sesrelay", "the sesrelay binary")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured window of each throughput measurement")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measured window")
	fs.IntVar(&o.conns, "conns", 16, "concurrent connections (scenarios 1-3)")
	size := fs.String("size", "8KiB", "message size (scenarios 1-3)")
	big := fs.String("big", "30MiB", "message size of scenarios 4 and 6")
	fs.IntVar(&o.bigConns, "big-conns", 10, "concurrent large messages of scenario 6")
	fs.IntVar(&o.idle, "idle", 1000, "idle connections of scenario 5")
	fs.IntVar(&o.idlePar, "idle-par", 50, "connections scenario 5 opens at a time")
	fs.Float64Var(&o.quiet, "quiet", 0.15, "before each measurement wait for a second with at most this fraction of the CPUs busy")
	fs.DurationVar(&o.quietWait, "quiet-wait", time.Minute, "longest wait for a quiet machine before measuring anyway")
	fs.StringVar(&o.dir, "dir", "", "keep configs, keys and logs here (default: a temporary directory, removed)")
	fs.StringVar(&o.jsonOut, "json", "", "also write every sample and the summary as JSON to this file")
	fs.StringVar(&o.profile, "profile", "", "after the scenarios, take a CPU profile of the relay under scenario 1 load into this file")
	fs.StringVar(&o.profileDKIM, "profile-dkim", "", `with --profile: sign with the "rsa" or "ed25519" key`)
	fs.StringVar(&o.profileMode, "profile-mode", modePersistent, "load while profiling: persistent (scenario 1) or per-message (scenario 2)")
	fs.Parse(args) //nolint:errcheck // ExitOnError

	var err error
	if o.scenarios, err = parseScenarios(*scen); err != nil {
		return err
	}
	if o.size, err = parseSize(*size); err != nil {
		return err
	}
	if o.bigSize, err = parseSize(*big); err != nil {
		return err
	}
	if o.profileDKIM != "" && o.profileDKIM != "rsa" && o.profileDKIM != "ed25519" {
		return fmt.Errorf(`--profile-dkim must be "rsa" or "ed25519", got %q`, o.profileDKIM)
	}
	if o.profileMode != modePersistent && o.profileMode != modePerMessage {
		return fmt.Errorf("--profile-mode must be %s or %s", modePersistent, modePerMessage)
	}
	if o.runs < 1 {
		return errors.New("--runs must be at least 1")
	}
	if _, err := os.Stat(o.relayBin); err != nil {
		return fmt.Errorf("--relay-bin: %w (build it with: go build -o %s ./cmd/sesrelay)", err, o.relayBin)
	}
	if o.self, err = os.Executable(); err != nil {
		return err
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "sesrelay-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()

	orc := &orchestrator{runOpts: o, out: os.Stdout}
	if err := orc.prepare(); err != nil {
		return err
	}
	fmt.Fprintf(orc.out, "# sesrelay benchmark: %s\n\n", machineLine())
	fmt.Fprintf(orc.out, "scenarios %v, %d runs, %s window after %s warmup, files in %s\n\n", o.scenarios, o.runs, o.duration, o.warmup, o.dir)
	var runErr error
	for _, s := range o.scenarios {
		if runErr = orc.scenario(ctx, s); runErr != nil {
			break
		}
		orc.report(s)
	}
	if runErr == nil && o.profile != "" {
		runErr = orc.takeProfile(ctx)
	}
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(struct {
			Machine string   `json:"machine"`
			Samples []sample `json:"samples"`
		}{machineLine(), orc.samples}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return runErr
}

func parseScenarios(s string) ([]int, error) {
	if s == "none" { // only --profile
		return nil, nil
	}
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "..")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 1 || b > 7 || a > b {
			return nil, fmt.Errorf("bad --scenario %q: want numbers 1 to 7, like 1,3 or 1..7", s)
		}
		for i := a; i <= b; i++ {
			if !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	return out, nil
}

// prepare hashes the tenant password and writes the DKIM keys.
func (o *orchestrator) prepare() error {
	// The OWASP Argon2id parameters config.HashPassword uses; the config
	// package is not imported so that the baseline (this same binary)
	// does not compute its dummy hash at start and carry that memory.
	h, err := argon2id.CreateHash(benchPass, &argon2id.Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32})
	if err != nil {
		return err
	}
	o.hash = h
	o.keys = map[string]string{}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	for name, key := range map[string]any{"rsa": rk, "ed25519": ek} {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		file := filepath.Join(o.dir, "dkim-"+name+".pem")
		if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return err
		}
		o.keys[name] = file
	}
	return nil
}

// server is one SMTP server under test and what it needs.
type server struct {
	kind      string // relay, forwarding or baseline
	proc      *child
	addr      string
	stub      *child
	stubURL   string
	adminAddr string
	// statsCalls is how many times the stand-in was asked for its stats:
	// each asks over a connection of its own, which it counts.
	statsCalls int64
}

func (s *server) stop() {
	if s.proc != nil {
		s.proc.Stop(15 * time.Second)
	}
	if s.stub != nil {
		s.stub.Stop(5 * time.Second)
	}
}

// stubStats asks the stand-in what it received.
func (s *server) stubStats() stubStats {
	if s.stubURL == "" {
		return stubStats{}
	}
	s.statsCalls++
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // our own stand-in
	resp, err := c.Get(s.stubURL + statsPath)
	if err != nil {
		return stubStats{Requests: -1}
	}
	defer resp.Body.Close()
	var st stubStats
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return stubStats{Requests: -1}
	}
	st.Conns -= s.statsCalls
	return st
}

// variant is a relay configuration to measure.
type variant struct {
	name    string
	stubTLS bool
	dkim    string // "", "rsa" or "ed25519"
	queue   bool   // delivery.mode queue, queue.dir in the run's directory
}

func (o *orchestrator) startBaseline(tag string) (*server, error) {
	p, err := startChild("baseline", o.self, []string{"baseline", "--listen", "127.0.0.1:0", "--user", benchUser, "--pass", benchPass},
		os.Environ(), filepath.Join(o.dir, tag+"-baseline.log"))
	if err != nil {
		return nil, err
	}
	addr, err := p.waitListening(10 * time.Second)
	if err != nil {
		p.Stop(time.Second)
		return nil, err
	}
	return &server{kind: "baseline", proc: p, addr: addr}, nil
}

// startStub starts a fresh SES stand-in for s (HTTPS when useTLS, its
// certificate written to caFile).
func (o *orchestrator) startStub(s *server, tag string, useTLS bool, caFile string) error {
	stubArgs := []string{"sesstub", "--listen", "127.0.0.1:0"}
	if useTLS {
		stubArgs = append(stubArgs, "--tls", "--cert-out", caFile)
	}
	stub, err := startChild("sesstub", o.self, stubArgs, os.Environ(), filepath.Join(o.dir, tag+"-sesstub.log"))
	if err != nil {
		return err
	}
	s.stub = stub
	if s.stubURL, err = stub.waitListening(10 * time.Second); err != nil {
		s.stop()
		return err
	}
	return nil
}

// startForwarding starts the forwarding limit (bench forwarding) with a
// stand-in of its own, like a relay's.
func (o *orchestrator) startForwarding(tag string, useTLS bool) (*server, error) {
	s := &server{kind: "forwarding"}
	caFile := filepath.Join(o.dir, tag+"-fwd-ses-ca.pem")
	if err := o.startStub(s, tag+"-fwd", useTLS, caFile); err != nil {
		return nil, err
	}
	args := []string{"forwarding", "--listen", "127.0.0.1:0", "--user", benchUser, "--pass", benchPass, "--ses", s.stubURL}
	if useTLS {
		args = append(args, "--ca", caFile)
	}
	p, err := startChild("forwarding", o.self, args, os.Environ(), filepath.Join(o.dir, tag+"-forwarding.log"))
	if err != nil {
		s.stop()
		return nil, err
	}
	s.proc = p
	if s.addr, err = p.waitListening(10 * time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (o *orchestrator) startRelay(tag string, v variant) (*server, error) {
	s := &server{kind: "relay"}
	caFile := filepath.Join(o.dir, tag+"-ses-ca.pem")
	if err := o.startStub(s, tag, v.stubTLS, caFile); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		s.stop()
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		s.stop()
		return nil, err
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	s.adminAddr = fmt.Sprintf("127.0.0.1:%d", adminPort)
	keyFile := ""
	if v.dkim != "" {
		keyFile = o.keys[v.dkim]
	}
	cfgFile := filepath.Join(o.dir, tag+"-relay.yaml")
	queueDir := ""
	if v.queue {
		queueDir = filepath.Join(o.dir, tag+"-queue")
	}
	if err := os.WriteFile(cfgFile, []byte(relayConfig(s.addr, s.adminAddr, s.stubURL, o.hash, keyFile, queueDir)), 0o600); err != nil {
		s.stop()
		return nil, err
	}
	home := filepath.Join(o.dir, "home")
	os.MkdirAll(home, 0o700) //nolint:errcheck // shows when the relay starts
	// A clean environment: fixed credentials, no shared AWS config or
	// profile, no instance metadata lookups.
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"AWS_ACCESS_KEY_ID=bench",
		"AWS_SECRET_ACCESS_KEY=bench",
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "aws-credentials"),
	}
	if v.stubTLS {
		// AWS_CA_BUNDLE is how an SDK client is told to trust a private
		// CA, and the only trust the relay gets here.
		env = append(env, "AWS_CA_BUNDLE="+caFile)
	}
	bin, args := o.relayBin, []string{"serve", "--config", cfgFile}
	p, err := startChild("relay", bin, args, env, filepath.Join(o.dir, tag+"-relay.log"))
	if err != nil {
		s.stop()
		return nil, err
	}
	s.proc = p
	if err := p.waitSMTP(s.addr, 30*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// relayConfig is the relay's configuration file: one STARTTLS listener,
// the stand-in as the SES endpoint, one tenant, DKIM when keyFile is set,
// queue mode with its queue in queueDir when that is set, the admin
// listener (metrics, and pprof for --profile) on loopback. Connection
// limits are out of the way; everything else is the default.
func relayConfig(addr, adminAddr, stubURL, hash, keyFile, queueDir string) string {
	delivery := "delivery: {sender: ses}\n"
	if queueDir != "" {
		delivery = fmt.Sprintf("delivery: {sender: ses, mode: queue}\nqueue: {dir: %q}\n", queueDir)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by "bench run".
server:
  hostname: bench.local
  listeners: [{address: %q, tls: starttls}]
  tls: {self_signed: true}
  max_message_bytes: 41943040
  max_connections: 5000
  max_connections_per_ip: 0
admin: {address: %q, pprof: true}
log: {level: warn, format: json}
%sses: {region: us-east-1, endpoint: %q, timeout: 30s, max_attempts: 1}
tenants:
  - name: bench
    users: [{username: %q, password_hash: %q}]
    domains: [%q]
`, addr, adminAddr, delivery, stubURL, benchUser, hash, benchDomain)
	if keyFile != "" {
		fmt.Fprintf(&b, "    dkim: [{domain: %q, selector: s1, key_file: %q}]\n", benchDomain, keyFile)
	}
	return b.String()
}

// measure runs cfg against s and reads the server's CPU and memory around
// it.
func (o *orchestrator) measure(ctx context.Context, s *server, scenario, run int, label string, cfg loadConfig) (*sample, error) {
	pid := s.proc.Pid()
	cfg.Addr, cfg.User, cfg.Pass = s.addr, benchUser, benchPass
	cfg.From, cfg.To = benchFrom, benchTo
	sm := &sample{Scenario: scenario, Run: run, Label: label, Server: s.kind}
	sm.Background = o.waitQuiet(ctx)
	var cpu0, cpu1, stub0, stub1 procCPU
	var mach0, mach1 machineCPU
	var cpuErr error
	cfg.OnWindow = func(start bool) {
		mc, _ := readMachineCPU()
		c, err := readCPU(pid)
		cpuErr = errors.Join(cpuErr, err)
		var sc procCPU
		if s.stub != nil {
			sc, _ = readCPU(s.stub.Pid())
		}
		if start {
			cpu0, stub0, mach0 = c, sc, mc
			if m, err := readMem(pid); err == nil {
				sm.RSSBefore = m.RSS
			}
		} else {
			cpu1, stub1, mach1 = c, sc, mc
		}
	}
	if cfg.Idle > 0 {
		cfg.Hold = func() {
			time.Sleep(2 * time.Second) // let the server settle after the last AUTH
			if m, err := readMem(pid); err == nil {
				sm.RSSHeld = m.RSS
			}
		}
	}
	poll := sampleMem(pid, 20*time.Millisecond)
	res, err := runLoad(ctx, cfg)
	sm.RSSPeak = poll.Stop()
	if err != nil {
		return nil, err
	}
	if cpuErr != nil {
		return nil, s.proc.failed("reading /proc", cpuErr)
	}
	m, err := readMem(pid)
	if err != nil {
		return nil, s.proc.failed("reading /proc", err)
	}
	sm.RSSAfter, sm.HWM = m.RSS, m.HWM
	sm.Load = res
	sm.CPUms = ms(cpu1.Total() - cpu0.Total())
	sm.MachineBusy, sm.MachineSteal = busyBetween(mach0, mach1)
	if res.Messages > 0 {
		sm.CPUPerMsg = sm.CPUms / float64(res.Messages)
		sm.StubCPUPerMsg = ms(stub1.Total()-stub0.Total()) / float64(res.Messages)
	}
	if res.Kind == "idle" && res.Opened > 0 {
		sm.CPUPerCon = sm.CPUms / float64(res.Opened)
	}
	st := s.stubStats()
	sm.StubCalls, sm.StubFirstDKIM, sm.StubConns = st.Requests, st.FirstDKIM, st.Conns
	o.samples = append(o.samples, *sm)
	fmt.Fprintf(os.Stderr, "scenario %d run %d %-22s %s\n", scenario, run, label, sampleLine(sm))
	if res.Messages == 0 && res.Opened == 0 {
		return sm, s.proc.failed(label+": nothing succeeded", fmt.Errorf("errors %s %v", errorsLine(res.Errors), res.ErrorSamples))
	}
	return sm, nil
}

// waitQuiet waits, up to --quiet-wait, for a second in which less than
// --quiet of the machine's CPU is busy (the cores are shared: a compile or
// a test run elsewhere would be measured as the relay's slowness). It
// returns the busy fraction of the last second it saw.
func (o *orchestrator) waitQuiet(ctx context.Context) float64 {
	deadline := time.Now().Add(o.quietWait)
	for {
		a, err := readMachineCPU()
		if err != nil {
			return math.NaN()
		}
		select {
		case <-ctx.Done():
			return math.NaN()
		case <-time.After(time.Second):
		}
		b, err := readMachineCPU()
		if err != nil {
			return math.NaN()
		}
		busy, _ := busyBetween(a, b)
		if busy <= o.quiet || time.Now().After(deadline) {
			if busy > o.quiet {
				fmt.Fprintf(os.Stderr, "machine still %.0f%% busy after waiting %s; measuring anyway\n", 100*busy, o.quietWait)
			}
			return busy
		}
	}
}

func sampleLine(s *sample) string {
	r := s.Load
	switch r.Kind {
	case "idle":
		return fmt.Sprintf("%d conns in %.2fs, RSS %.1f→%.1f MiB, errors %s", r.Opened, r.OpenSeconds, mib(s.RSSBefore), mib(s.RSSHeld), errorsLine(r.Errors))
	case "big":
		return fmt.Sprintf("%.1f MiB in %.2fs, peak RSS %.1f MiB (HWM %.1f), errors %s", mib(int64(r.Size)), r.Seconds, mib(s.RSSPeak), mib(s.HWM), errorsLine(r.Errors))
	}
	return fmt.Sprintf("%.0f msg/s p50 %.2f p99 %.2f ms, %.3f ms CPU/msg (stand-in %.3f, generator %.3f), machine busy %.0f%% (before %.0f%%, steal %.0f%%), ses calls %d over %d conns, dkim %q, errors %s",
		r.PerSec, r.Reply.P50, r.Reply.P99, s.CPUPerMsg, s.StubCPUPerMsg, r.GeneratorCPUPerMsg, 100*s.MachineBusy, 100*s.Background, 100*s.MachineSteal, s.StubCalls, s.StubConns, s.StubFirstDKIM, errorsLine(r.Errors))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func (o *orchestrator) throughput(mode string, rate float64) loadConfig {
	return loadConfig{Mode: mode, Conns: o.conns, Size: o.size, Duration: o.duration, Warmup: o.warmup, Rate: rate, Timeout: time.Minute}
}

// scenario runs scenario n o.runs times.
func (o *orchestrator) scenario(ctx context.Context, n int) error {
	for run := 1; run <= o.runs; run++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		tag := fmt.Sprintf("s%d-r%d", n, run)
		var err error
		switch n {
		case 1:
			err = o.scenario1(ctx, tag, run)
		case 2:
			err = o.pair(ctx, tag, n, run, []variant{{name: "relay (SES over HTTP)"}}, true, o.throughput(modePerMessage, 0))
		case 3:
			err = o.pair(ctx, tag, n, run, []variant{
				{name: "relay, no DKIM"},
				{name: "relay, DKIM RSA-2048", dkim: "rsa"},
				{name: "relay, DKIM Ed25519", dkim: "ed25519"},
			}, true, o.throughput(modePersistent, 0))
		case 4:
			err = o.pair(ctx, tag, n, run, []variant{{name: "relay (SES over HTTP)"}}, true,
				loadConfig{Mode: modePersistent, Conns: 1, Big: o.bigSize, Timeout: 5 * time.Minute})
		case 6:
			err = o.pair(ctx, tag, n, run, []variant{{name: "relay (SES over HTTP)"}}, true,
				loadConfig{Mode: modePersistent, Conns: o.bigConns, Big: o.bigSize, Timeout: 5 * time.Minute})
		case 5:
			err = o.pair(ctx, tag, n, run, []variant{{name: "relay (SES over HTTP)"}}, false,
				loadConfig{Mode: modePersistent, Conns: 1, Idle: o.idle, MaxSetup: o.idlePar, Timeout: time.Minute})
		case 7:
			err = o.scenario7(ctx, tag, run)
		}
		if err != nil {
			return fmt.Errorf("scenario %d run %d: %w", n, run, err)
		}
	}
	return nil
}

// pair measures each relay variant, each in a fresh process, then the
// forwarding limit (when fwd), then the baseline, with the same load.
func (o *orchestrator) pair(ctx context.Context, tag string, n, run int, vs []variant, fwd bool, cfg loadConfig) error {
	for i, v := range vs {
		if _, err := o.measureFresh(ctx, fmt.Sprintf("%s-v%d", tag, i), v, n, run, v.name, cfg); err != nil {
			return err
		}
	}
	if fwd {
		f, err := o.startForwarding(tag, false)
		if err != nil {
			return err
		}
		_, err = o.measure(ctx, f, n, run, labelFwd, cfg)
		f.stop()
		if err != nil {
			return err
		}
	}
	b, err := o.startBaseline(tag)
	if err != nil {
		return err
	}
	defer b.stop()
	_, err = o.measure(ctx, b, n, run, "baseline", cfg)
	return err
}

// Labels of scenario 1.
const (
	s1HTTP      = "relay (SES over HTTP)"
	s1HTTPS     = "relay (SES over HTTPS)"
	s1Base      = "baseline"
	labelFwd    = "forwarding limit (SES over HTTP)"
	s1FwdHalf   = labelFwd + halfSuffix
	halfSuffix  = " at half load"
	s1HTTPHalf  = s1HTTP + halfSuffix
	s1HTTPSHalf = s1HTTPS + halfSuffix
	s1BaseHalf  = s1Base + halfSuffix
)

// scenario1 measures peak throughput closed-loop, then latency open-loop
// at half the relay's peak (over HTTP), the same offered rate for every
// server (relay, forwarding limit, baseline) so that the relay-added
// latency is a difference at equal load.
func (o *orchestrator) scenario1(ctx context.Context, tag string, run int) error {
	var half float64
	for i, v := range []variant{{name: s1HTTP}, {name: s1HTTPS, stubTLS: true}} {
		s, err := o.startRelay(fmt.Sprintf("%s-v%d", tag, i), v)
		if err != nil {
			return err
		}
		sm, err := o.measure(ctx, s, 1, run, v.name, o.throughput(modePersistent, 0))
		if err == nil {
			if half == 0 {
				half = sm.Load.PerSec / 2
			}
			_, err = o.measure(ctx, s, 1, run, v.name+halfSuffix, o.throughput(modePersistent, half))
		}
		s.stop()
		if err != nil {
			return err
		}
	}
	f, err := o.startForwarding(tag, false)
	if err != nil {
		return err
	}
	_, err = o.measure(ctx, f, 1, run, labelFwd, o.throughput(modePersistent, 0))
	if err == nil {
		_, err = o.measure(ctx, f, 1, run, s1FwdHalf, o.throughput(modePersistent, half))
	}
	f.stop()
	if err != nil {
		return err
	}
	b, err := o.startBaseline(tag)
	if err != nil {
		return err
	}
	defer b.stop()
	if _, err := o.measure(ctx, b, 1, run, s1Base, o.throughput(modePersistent, 0)); err != nil {
		return err
	}
	_, err = o.measure(ctx, b, 1, run, s1BaseHalf, o.throughput(modePersistent, half))
	return err
}

// Labels of scenario 7.
const (
	s7Direct     = "relay, direct mode"
	s7Queue      = "relay, queue mode"
	s7DirectHalf = s7Direct + halfSuffix
	s7QueueHalf  = s7Queue + halfSuffix
)

// scenario7 is issue 16's comparison: the relay in queue mode (250 once
// the message is durably queued, workers send it) against direct mode
// (250 once SES accepted it), each a fresh process with a fresh queue,
// peak throughput closed-loop, then latency open-loop at half of the
// lower peak, the same offered rate for both.
func (o *orchestrator) scenario7(ctx context.Context, tag string, run int) error {
	peak := map[string]float64{}
	vs := []variant{{name: s7Direct}, {name: s7Queue, queue: true}}
	for i, v := range vs {
		sm, err := o.measureFresh(ctx, fmt.Sprintf("%s-v%d", tag, i), v, 7, run, v.name, o.throughput(modePersistent, 0))
		if err != nil {
			return err
		}
		peak[v.name] = sm.Load.PerSec
	}
	half := min(peak[s7Direct], peak[s7Queue]) / 2
	for i, v := range vs {
		if _, err := o.measureFresh(ctx, fmt.Sprintf("%s-h%d", tag, i), v, 7, run, v.name+halfSuffix, o.throughput(modePersistent, half)); err != nil {
			return err
		}
	}
	return nil
}

// measureFresh starts relay variant v, measures cfg against it and stops it.
func (o *orchestrator) measureFresh(ctx context.Context, tag string, v variant, n, run int, label string, cfg loadConfig) (*sample, error) {
	s, err := o.startRelay(tag, v)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	return o.measure(ctx, s, n, run, label, cfg)
}

// takeProfile runs one more load (SES over HTTP) while profiling the
// relay through /debug/pprof/ on its admin listener (admin.pprof): the CPU
// profile covers the measured window, the allocation profile the relay's
// whole life up to the end of the window.
func (o *orchestrator) takeProfile(ctx context.Context) error {
	cpu, err := filepath.Abs(o.profile)
	if err != nil {
		return err
	}
	s, err := o.startRelay("profile", variant{name: s1HTTP, dkim: o.profileDKIM})
	if err != nil {
		return err
	}
	defer s.stop()
	cfg := o.throughput(o.profileMode, 0)
	base := "http://" + s.adminAddr + "/debug/pprof/"
	resp, err := http.Get(base)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = errors.New(resp.Status)
		}
	}
	if err != nil {
		return fmt.Errorf("profile: the relay does not serve %s (%v): it needs admin.pprof", base, err)
	}
	fetched := make(chan error, 1)
	go func() {
		select {
		case <-time.After(o.warmup):
		case <-ctx.Done():
			fetched <- ctx.Err()
			return
		}
		err := fetchTo(ctx, fmt.Sprintf("%sprofile?seconds=%d", base, int(o.duration.Seconds())), cpu, o.duration+30*time.Second)
		if err == nil {
			err = fetchTo(ctx, base+"allocs", cpu+".allocs", 30*time.Second)
		}
		fetched <- err
	}()
	label := s1HTTP + " " + o.profileMode
	if o.profileDKIM != "" {
		label += ", DKIM " + o.profileDKIM
	}
	sm, err := o.measure(ctx, s, 0, 1, label+" (profiled)", cfg)
	if err != nil {
		return err
	}
	if err := <-fetched; err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	fmt.Fprintf(o.out, "CPU profile of the relay under %s load (%.0f msg/s, %.3f ms CPU/msg while profiled): %s (allocations: %s.allocs)\n"+
		"read it with: go tool pprof -top -nodecount=40 %s %s\n\n", label, sm.Load.PerSec, sm.CPUPerMsg, cpu, cpu, o.relayBin, cpu)
	return nil
}

// fetchTo GETs url into file.
func fetchTo(ctx context.Context, url, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return os.WriteFile(file, b, 0o644)
}

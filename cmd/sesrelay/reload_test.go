package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay/sestest"
)

// reloadHash is bcrypt (cost 10) of reloadPassword.
const (
	reloadPassword = "demo-password"
	reloadHash     = "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"
)

const reloadYAML = `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}]
  shutdown_timeout: 5s
log: {level: debug}
delivery: {sender: file, file_dir: OUTBOX}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "BILLING_HASH"}]
    domains: ["billing.example.com"]
`

const supportTenant = `  - name: support
    users: [{username: support-app, password_hash: "` + reloadHash + `"}]
    domains: ["support.example.com"]
`

// writeAtomic replaces path the way editors and config management do:
// a new file renamed over the old one.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type reloadEvent struct {
	ok   bool
	hash string
}

type reloadHarness struct {
	t       *testing.T
	d       *daemon
	addr    string
	events  chan reloadEvent
	logs    *observer.ObservedLogs
	hup     chan os.Signal
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// startReloadDaemon builds the daemon as serve does (newDaemon) on the
// configuration file at path and runs it.
func startReloadDaemon(t *testing.T, path string) *reloadHarness {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	d, err := newDaemon(context.Background(), cfg, path, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	h := &reloadHarness{t: t, d: d, addr: d.srv.Addrs()[0].String(), events: make(chan reloadEvent, 16), logs: logs,
		hup: make(chan os.Signal, 1), done: make(chan error, 1)}
	prev := d.onReload
	d.onReload = func(ok bool, hash string) {
		if prev != nil {
			prev(ok, hash)
		}
		h.events <- reloadEvent{ok, hash}
	}
	d.rs.debounce = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- d.run(ctx, h.hup) }()
	t.Cleanup(func() { h.stop() })
	// run starts the watcher before it serves: wait for it, so that the
	// test's first edit is not made before anyone watches.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.rs.mu.Lock()
		n := len(d.rs.watched)
		d.rs.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the configuration directory is not watched")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return h
}

func (h *reloadHarness) stop() error {
	if h.stopped {
		return nil
	}
	h.stopped = true
	h.cancel()
	select {
	case err := <-h.done:
		return err
	case <-time.After(10 * time.Second):
		h.t.Error("run did not return")
		return nil
	}
}

func (h *reloadHarness) wait() reloadEvent {
	h.t.Helper()
	select {
	case ev := <-h.events:
		return ev
	case <-time.After(10 * time.Second):
		h.t.Fatal("no reload")
		return reloadEvent{}
	}
}

func (h *reloadHarness) login(user, pass string) (*smtp.Client, error) {
	h.t.Helper()
	conn, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	h.t.Cleanup(func() { c.Close() })
	return c, c.Auth(sasl.NewPlainClient("", user, pass))
}

func sendOne(c *smtp.Client, domain string) error {
	if err := c.Mail("app@"+domain, nil); err != nil {
		return err
	}
	if err := c.Rcpt("a@example.org", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: <app@%s>\r\nTo: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n", domain)
	return w.Close()
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

// TestReloadOnFileChange: an edited file is picked up without SIGHUP; a
// new tenant and a rotated password take effect, and a session opened
// before with the old password ends at its next MAIL; a broken file is refused with every problem
// logged and the configuration in force keeps serving; SIGHUP reloads.
func TestReloadOnFileChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sesrelay.yaml")
	base := strings.NewReplacer("OUTBOX", filepath.Join(dir, "outbox")).Replace(reloadYAML)
	v1 := strings.Replace(base, "BILLING_HASH", reloadHash, 1)
	writeAtomic(t, path, v1)
	h := startReloadDaemon(t, path)
	first := h.d.ConfigHash()

	open, err := h.login("billing-app", reloadPassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := sendOne(open, "billing.example.com"); err != nil {
		t.Fatal(err)
	}

	// A new tenant and a rotated password.
	rotated, _ := bcrypt.GenerateFromPassword([]byte("rotated-password"), 10)
	v2 := strings.Replace(base, "BILLING_HASH", string(rotated), 1) + supportTenant
	writeAtomic(t, path, v2)
	if ev := h.wait(); !ev.ok || ev.hash == first || ev.hash != h.d.ConfigHash() {
		t.Fatalf("reload after the edit: %+v (first %s)", ev, first)
	}
	if err := sendOne(open, "billing.example.com"); smtpCode(err) != 421 {
		t.Fatalf("the session opened with the old password, after the reload: %v, want 421 (revoked)", err)
	}
	if _, err := h.login("billing-app", reloadPassword); smtpCode(err) != 535 {
		t.Fatalf("old password after rotation: %v", err)
	}
	c, err := h.login("billing-app", "rotated-password")
	if err != nil {
		t.Fatal(err)
	}
	if err := sendOne(c, "billing.example.com"); err != nil {
		t.Fatal(err)
	}
	c, err = h.login("support-app", reloadPassword)
	if err != nil {
		t.Fatalf("new tenant: %v", err)
	}
	if err := sendOne(c, "support.example.com"); err != nil {
		t.Fatal(err)
	}
	good := h.d.ConfigHash()

	// A broken file: refused, every problem logged, the old one serves.
	broken := strings.Replace(v2, "shutdown_timeout: 5s", "shutdown_timeout: 5s\n  max_recipients: 500\n  no_such_key: 1", 1)
	writeAtomic(t, path, broken)
	if ev := h.wait(); ev.ok {
		t.Fatal("a broken configuration reloaded")
	}
	if h.d.ConfigHash() != good {
		t.Fatal("the hash in force changed on a failed reload")
	}
	failed := h.logs.FilterMessage("reload failed, keeping the previous configuration").All()
	if len(failed) == 0 {
		t.Fatal("no reload failure logged")
	}
	problems := fmt.Sprint(failed[len(failed)-1].ContextMap()["problems"])
	if !strings.Contains(problems, "server.no_such_key") {
		t.Fatalf("problems logged: %s", problems)
	}
	if c, err := h.login("billing-app", "rotated-password"); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	} else if err := sendOne(c, "billing.example.com"); err != nil {
		t.Fatal(err)
	}
	// SIGHUP forces a reload (of the still broken file: refused again).
	h.hup <- syscall.SIGHUP
	if ev := h.wait(); ev.ok {
		t.Fatal("SIGHUP reloaded a broken configuration")
	}
	// Repaired: reloads.
	writeAtomic(t, path, v2+"# repaired\n")
	if ev := h.wait(); !ev.ok {
		t.Fatal("the repaired configuration did not reload")
	}
	if err := h.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	// The outbox holds every message sent: 4 (the revoked session's
	// second message was refused).
	files, _ := filepath.Glob(filepath.Join(dir, "outbox", "*.eml"))
	if len(files) != 4 {
		t.Fatalf("%d messages in the outbox", len(files))
	}
}

// TestReloadConfigMapSwap: a Kubernetes ConfigMap volume updates by
// swapping the "..data" symlink; the file path itself never changes.
func TestReloadConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	base := strings.NewReplacer("OUTBOX", filepath.Join(dir, "outbox"), "BILLING_HASH", reloadHash).Replace(reloadYAML)
	mkVersion := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "sesrelay.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mkVersion("..2026_01", base)
	if err := os.Symlink("..2026_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sesrelay.yaml")
	if err := os.Symlink("..data/sesrelay.yaml", path); err != nil {
		t.Fatal(err)
	}
	h := startReloadDaemon(t, path)
	if _, err := h.login("support-app", reloadPassword); smtpCode(err) != 535 {
		t.Fatalf("support-app before the update: %v", err)
	}
	mkVersion("..2026_02", base+supportTenant)
	if err := os.Symlink("..2026_02", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if ev := h.wait(); !ev.ok {
		t.Fatal("reload failed")
	}
	if _, err := h.login("support-app", reloadPassword); err != nil {
		t.Fatalf("support-app after the update: %v", err)
	}
}

// TestReloadRateLimits: the limits follow the configuration, with
// max_send_rate: auto read from SES (GetAccount: 14/s at the stand-in)
// and divided by ses.replicas; an unreachable SES keeps the rate in force.
func TestReloadRateLimits(t *testing.T) {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
		"AWS_PROFILE": "", "AWS_REGION": "us-east-1",
	} {
		t.Setenv(k, v)
	}
	stub := sestest.New()
	defer stub.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "sesrelay.yaml")
	yaml := func(endpoint string, replicas int, tenantRate string) string {
		y := strings.NewReplacer("OUTBOX", dir, "BILLING_HASH", reloadHash).Replace(reloadYAML)
		y = strings.Replace(y, "delivery: {sender: file, file_dir: "+dir+"}",
			fmt.Sprintf("delivery: {sender: ses}\nses: {endpoint: %q, max_send_rate: auto, replicas: %d, rate_limit_wait: 1s}", endpoint, replicas), 1)
		return strings.Replace(y, `domains: ["billing.example.com"]`, `domains: ["billing.example.com"]`+"\n    max_send_rate: "+tenantRate, 1)
	}
	writeAtomic(t, path, yaml(stub.URL, 2, "3"))
	h := startReloadDaemon(t, path)
	rl := h.d.parts.limiter
	if l := rl.Limits(); l.Global != 7 || l.Tenants["billing"] != 3 || l.Wait != time.Second {
		t.Fatalf("limits at start: %+v", l)
	}
	writeAtomic(t, path, yaml(stub.URL, 7, "5"))
	if ev := h.wait(); !ev.ok {
		t.Fatal("reload failed")
	}
	if l := rl.Limits(); l.Global != 2 || l.Tenants["billing"] != 5 {
		t.Fatalf("limits after reload: %+v", l)
	}
	// SES unreachable: the reload succeeds, the global rate in force stays.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	writeAtomic(t, path, yaml(closed, 1, "6"))
	if ev := h.wait(); !ev.ok {
		t.Fatal("reload failed")
	}
	if l := rl.Limits(); l.Global != 2 || l.Tenants["billing"] != 6 {
		t.Fatalf("limits with SES unreachable: %+v", l)
	}
	if len(h.logs.FilterMessage("cannot resolve ses.max_send_rate, keeping the global rate in force (0 = none)").All()) == 0 {
		t.Fatal("the unresolved rate was not logged")
	}
	// Mail goes through the limiter to SES.
	c, err := h.login("billing-app", reloadPassword)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, yaml(stub.URL, 1, "6"))
	if ev := h.wait(); !ev.ok {
		t.Fatal("reload failed")
	}
	if err := sendOne(c, "billing.example.com"); err != nil {
		t.Fatal(err)
	}
	if len(stub.Requests()) != 1 || rl.Limits().Global != 14 {
		t.Fatalf("%d SES requests, global %v", len(stub.Requests()), rl.Limits().Global)
	}
}

// TestServeExitsZeroOnSignal: SIGTERM (the context main cancels) drains
// and exits 0.
func TestServeExitsZeroOnSignal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sesrelay.yaml")
	writeAtomic(t, path, strings.NewReplacer("OUTBOX", dir, "BILLING_HASH", reloadHash).Replace(reloadYAML))
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"serve", "--config", path}, nil, &bytes.Buffer{}, &stderr, nil) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "listening") {
		if time.Now().After(deadline) {
			t.Fatalf("not listening: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d: %s", c, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not exit")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

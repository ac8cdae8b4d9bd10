package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/queue"
	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/relay/smtptest"
)

// The kill -9 test of queue mode: the relay runs as a child process (this
// test binary again, TestCrashRelayChild) on one queue directory and is
// killed with SIGKILL at random moments while clients send a stream of
// messages and its workers call a slow SES stand-in; it is restarted each
// time. At the end every message that got 250 reached SES at least once,
// none that got an error reply did, and the duplicates are at most the
// SES calls that can be in flight at a kill (queue.workers) times the
// number of kills. A message whose connection died before any reply may
// or may not be sent: the relay may have stored it before it died (the
// client cannot know, as with any SMTP server; it retries and a duplicate
// is possible, RFC 1047).

const (
	crashRelayKills   = 20
	crashRelayWorkers = 4
	crashRelaySenders = 4
)

const crashRelayYAML = `
server:
  hostname: relay.test
  listeners: [{address: "ADDR", tls: none, allow_insecure_auth: true}]
  tls: {self_signed: true}
  shutdown_timeout: 2s
log: {level: warn}
delivery: {sender: ses, mode: queue}
ses: {region: us-east-1, endpoint: "ENDPOINT", max_attempts: 1, timeout: 5s, max_send_rate: "0"}
queue: {dir: QDIR, workers: WORKERS, min_backoff: 100ms, max_backoff: 400ms}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com"]
`

// TestCrashRelayChild is the relay process of TestKillRelayQueueMode.
func TestCrashRelayChild(t *testing.T) {
	path := os.Getenv("SESRELAY_CRASH_CHILD")
	if path == "" {
		t.Skip("helper process of TestKillRelayQueueMode")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, []string{"serve", "--config", path}, os.Stdin, os.Stdout, os.Stderr, nil))
}

var tagRE = regexp.MustCompile(`Subject: crash-(\d+)`)

func TestKillRelayQueueMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the relay 21 times")
	}
	dir := t.TempDir()
	stub := sestest.New()
	t.Cleanup(stub.Close)
	stub.Respond = func(int, *sestest.Request) sestest.Reply {
		// Slow enough that kills land during SES calls.
		time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond)
		return sestest.Reply{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	qdir := filepath.Join(dir, "queue")
	path := filepath.Join(dir, "sesrelay.yaml")
	y := strings.NewReplacer("ADDR", addr, "ENDPOINT", stub.URL, "QDIR", fmt.Sprintf("%q", qdir),
		"WORKERS", fmt.Sprint(crashRelayWorkers), "HASH", smtptest.PasswordHash).Replace(crashRelayYAML)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "relay.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRelayChild$")
		cmd.Env = append(os.Environ(), "SESRELAY_CRASH_CHILD="+path,
			"AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true",
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return cmd
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the relay did not listen on %s (log in %s)", addr, logf.Name())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Outcomes of every message, by tag.
	var (
		mu                   sync.Mutex
		ok, refused, noReply = map[int]bool{}, map[int]bool{}, map[int]bool{}
		next                 int
		stopSending          = make(chan struct{})
		senders              sync.WaitGroup
	)
	send := func() {
		defer senders.Done()
		for {
			select {
			case <-stopSending:
				return
			default:
			}
			c, err := smtp.Dial(addr)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if err := c.Auth(sasl.NewPlainClient("", "billing-app", smtptest.Password)); err != nil {
				c.Close()
				time.Sleep(5 * time.Millisecond)
				continue
			}
			for {
				select {
				case <-stopSending:
					c.Close()
					return
				default:
				}
				mu.Lock()
				tag := next
				next++
				mu.Unlock()
				msg := fmt.Sprintf("From: app@billing.example.com\r\nTo: a@example.org\r\nSubject: crash-%d\r\n\r\n%s\r\n",
					tag, strings.Repeat("body line of a message under a crash test\r\n", rand.IntN(400)))
				_, err := smtptest.Send(c, "app@billing.example.com", []string{"a@example.org"}, msg)
				mu.Lock()
				switch se, isReply := err.(*smtp.SMTPError); {
				case err == nil:
					ok[tag] = true
				case isReply && se.Code != 421:
					refused[tag] = true
				default:
					noReply[tag] = true
				}
				mu.Unlock()
				if err != nil {
					break
				}
			}
			c.Close()
		}
	}

	cmd := start()
	for range crashRelaySenders {
		senders.Add(1)
		go send()
	}
	okCount := func() int { mu.Lock(); defer mu.Unlock(); return len(ok) }
	for range crashRelayKills {
		// Each life of the relay first serves one message (AUTH is slow
		// under the race detector), then dies at a random moment.
		before, until := okCount(), time.Now().Add(10*time.Second)
		for okCount() == before && time.Now().Before(until) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		cmd = start()
	}
	time.Sleep(200 * time.Millisecond)
	close(stopSending)
	senders.Wait()

	mu.Lock()
	want := len(ok)
	mu.Unlock()
	if want < 50 {
		b, _ := os.ReadFile(logf.Name())
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Fatalf("only %d messages got 250 (%d error replies, %d without reply): the test proves little; relay log:\n%s",
			want, len(refused), len(noReply), b)
	}
	counts := func() map[int]int {
		out := map[int]int{}
		for _, r := range stub.Requests() {
			if m := tagRE.FindSubmatch(r.Raw); m != nil {
				var n int
				fmt.Sscan(string(m[1]), &n)
				out[n]++
			}
		}
		return out
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := counts()
		missing := 0
		for tag := range ok {
			if got[tag] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages that got 250 never reached SES", missing, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Let the workers finish what the dropped connections left queued.
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("relay after SIGTERM: %v", err)
	}
	q, err := queue.Open(qdir, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	left := q.List("")
	q.Close()
	if len(left) != 0 {
		t.Errorf("%d entries left in the queue", len(left))
	}

	got := counts()
	dups := 0
	for tag, n := range got {
		if refused[tag] {
			t.Errorf("message %d got an error reply and was sent", tag)
		}
		if !ok[tag] && !noReply[tag] {
			t.Errorf("message %d was sent but never sent by a client", tag)
		}
		dups += n - 1
	}
	if max := crashRelayKills * crashRelayWorkers; dups > max {
		t.Errorf("%d duplicates, more than %d kills x %d workers", dups, crashRelayKills, crashRelayWorkers)
	}
	t.Logf("%d kills: %d messages got 250, %d an error reply, %d no reply (of which %d sent anyway); SES got %d calls, %d duplicates",
		crashRelayKills, len(ok), len(refused), len(noReply), func() int {
			n := 0
			for tag := range noReply {
				if got[tag] > 0 {
					n++
				}
			}
			return n
		}(), len(stub.Requests()), dups)
}

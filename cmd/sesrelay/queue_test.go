package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/queue"
	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/relay/smtptest"
)

// queueExtra puts the relay of adminYAML in queue mode on dir.
func queueExtra(dir, mode string) string {
	return fmt.Sprintf("pprof: false\nqueue: {dir: %q, min_backoff: 50ms, max_backoff: 100ms, bounce_from: postmaster@billing.example.com}\ndelivery: {mode: %s}", dir, mode)
}

// runCLI runs the sesrelay command line and returns its exit code and
// output.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errOut, nil)
	return code, out.String(), errOut.String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestQueueCommandsOnRunningRelay: with the relay running (it holds the
// lock), `sesrelay queue` goes through the admin listener: list, show,
// requeue, retry and delete a message SES refused; a second relay on the
// same directory refuses to start.
func TestQueueCommandsOnRunningRelay(t *testing.T) {
	stub := sestest.New()
	t.Cleanup(stub.Close)
	var refuse atomic.Bool
	refuse.Store(true)
	stub.Respond = func(_ int, r *sestest.Request) sestest.Reply {
		if refuse.Load() && !bytes.Contains(r.Raw, []byte("multipart/report")) {
			return sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Email address is not verified."}
		}
		return sestest.Reply{}
	}
	qdir := filepath.Join(t.TempDir(), "queue")
	r := startRelay(t, stub.URL, queueExtra(qdir, "queue"))
	r.run()
	// admin.address is 127.0.0.1:0 here: name the bound port.
	admin := strings.TrimPrefix(r.admin, "http://")
	if code, body := r.get("/readyz"); code != 200 || !strings.Contains(body, "queue: 0 messages") {
		t.Fatalf("/readyz %d %q", code, body)
	}
	c := r.dial()
	if err := c.Auth(sasl.NewPlainClient("", "billing-app", smtptest.Password)); err != nil {
		t.Fatal(err)
	}
	if err := sendAdmin(c, "app@billing.example.com", []string{"a@example.org"}, adminTestMsg); err != nil {
		t.Fatal(err)
	}
	var id string
	waitUntil(t, "a dead entry", func() bool {
		code, out, _ := runCLI(t, "queue", "list", "--admin", admin, "--format", "json")
		var es []*queue.Entry
		if code != 0 || json.Unmarshal([]byte(out), &es) != nil {
			return false
		}
		for _, e := range es {
			if e.Dead && e.Sender != "" {
				id = e.ID
				return true
			}
		}
		return false
	})
	// One DSN went to the envelope sender.
	waitUntil(t, "the DSN", func() bool { return len(stub.Requests()) == 1 })
	if to := stub.Requests()[0].To; len(to) != 1 || to[0] != "app@billing.example.com" {
		t.Fatalf("DSN to %v", to)
	}

	code, out, errOut := runCLI(t, "queue", "list", "--admin", admin)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "dead:refused") || !strings.Contains(out, "a@example.org") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "queue", "show", id, "--admin", admin)
	if code != 0 || !strings.Contains(out, "Subject: SUBJECT") || !strings.Contains(out, "Email address is not verified") {
		t.Fatalf("show: %d %q %q", code, out, errOut)
	}
	if code, _, errOut = runCLI(t, "queue", "retry", id, "--admin", admin); code != 1 || !strings.Contains(errOut, "requeue it") {
		t.Fatalf("retry of a dead entry: %d %q", code, errOut)
	}
	// The operator fixes SES and requeues: the message goes out.
	refuse.Store(false)
	if code, out, errOut = runCLI(t, "queue", "requeue", id, "--admin", admin); code != 0 || !strings.Contains(out, "requeued") {
		t.Fatalf("requeue: %d %q %q", code, out, errOut)
	}
	waitUntil(t, "delivery after requeue", func() bool { return len(stub.Requests()) == 2 })
	// SES has the request; the entry goes once its answer is recorded.
	waitUntil(t, "the delivered entry to leave the queue", func() bool {
		code, _, errOut = runCLI(t, "queue", "show", id, "--admin", admin)
		return code == 1 && strings.Contains(errOut, "no such queue entry")
	})
	// An unknown id fails clearly.
	if code, _, errOut = runCLI(t, "queue", "delete", "0000nothere", "--admin", admin); code != 1 || !strings.Contains(errOut, "no such queue entry") {
		t.Fatalf("delete unknown: %d %q", code, errOut)
	}

	// A second relay on the same directory refuses to start.
	cfg, err := config.Load(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newDaemon(context.Background(), cfg, r.path, r.d.log); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second relay: %v", err)
	}
}

// TestQueueReadyzUnwritable: /readyz fails while the queue cannot be
// written.
func TestQueueReadyzUnwritable(t *testing.T) {
	qdir := filepath.Join(t.TempDir(), "queue")
	r := startRelay(t, "", queueExtra(qdir, "fallback"))
	r.run()
	inc := filepath.Join(qdir, "incoming")
	if err := os.RemoveAll(inc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inc, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := r.get("/readyz"); code != 503 || !strings.Contains(body, "queue: cannot be written") {
		t.Fatalf("/readyz %d %q", code, body)
	}
	os.Remove(inc)
	os.Mkdir(inc, 0o700)
	r.waitStatus("/readyz", 200)
}

// TestQueueCommandsOnStoppedRelay: without a running relay the commands
// work on the directory; retry --all sends through the configured sender.
func TestQueueCommandsOnStoppedRelay(t *testing.T) {
	dir := t.TempDir()
	qdir, outbox := filepath.Join(dir, "queue"), filepath.Join(dir, "outbox")
	path := filepath.Join(dir, "sesrelay.yaml")
	y := strings.NewReplacer("OUTBOX", outbox, "BILLING_HASH", reloadHash).Replace(reloadYAML) +
		fmt.Sprintf("queue: {dir: %q}\n", qdir)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := queue.Open(qdir, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := q.Enqueue(&queue.Message{Tenant: "billing", Sender: "app@billing.example.com",
			Requests: []queue.Request{{Recipients: []string{"a@example.org"}, Header: []byte("From: app@billing.example.com\r\nSubject: " + fmt.Sprint(i) + "\r\n\r\n")}},
			Body:     []byte("Hello.\r\n")})
		if err != nil {
			t.Fatal(err)
		}
	}
	// While another process holds the directory and no admin listener is
	// configured, the command says so.
	if code, _, errOut := runCLI(t, "queue", "list", "--config", path); code != 1 || !strings.Contains(errOut, "admin.address") {
		t.Fatalf("locked: %d %q", code, errOut)
	}
	q.Close()
	code, out, errOut := runCLI(t, "queue", "list", "--config", path)
	if code != 0 || !strings.Contains(out, "3 messages waiting") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "queue", "retry", "--all", "--config", path)
	if code != 0 || strings.Count(out, ": delivered") != 3 {
		t.Fatalf("retry --all: %d %q %q", code, out, errOut)
	}
	emls, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
	if len(emls) != 3 {
		t.Fatalf("%d messages in the outbox", len(emls))
	}
	if code, out, _ = runCLI(t, "queue", "list", "--config", path); code != 0 || !strings.Contains(out, "0 messages waiting") {
		t.Fatalf("list after retry: %q", out)
	}
}

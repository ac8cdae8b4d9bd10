package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay/sestest"
	"github.com/sesrelay/sesrelay/relay/smtptest"
	"github.com/sesrelay/sesrelay/suppression"
	"github.com/sesrelay/sesrelay/suppression/dynalitetest"
)

// processReplicaYAML is one replica of TestTwoRelayProcessesShareDynamoDB:
// real SES client against the stand-in, the shared DynamoDB table, its own
// SMTP and unsubscribe listeners.
const processReplicaYAML = `
server:
  hostname: relay.test
  listeners: [{address: "SMTPADDR", tls: none, allow_insecure_auth: true}]
  shutdown_timeout: 2s
log: {level: info}
delivery: {sender: ses}
ses: {region: us-east-1, endpoint: "SESURL", max_attempts: 1, timeout: 5s, max_send_rate: "0"}
suppression:
  store: dynamodb
  dynamodb: {table: sesrelay-suppression, endpoint: "DDBURL"}
  cache_ttl: CACHETTL
unsubscribe_server: {address: "UNSUBADDR", rate_burst: 100}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "BILLING_HASH"}]
    domains: ["billing.example.com"]
    list_unsubscribe:
      mode: add
      url: "https://unsub.example.com/u/{token}"
      secret_file: SECRET
      list_id_header: X-List
`

// relayProcess is one `sesrelay serve` child process.
type relayProcess struct {
	smtpAddr, unsubAddr string
	cmd                 *exec.Cmd
	out                 *bytes.Buffer
}

// startRelayProcess runs the relay binary on cfg (SMTPADDR and UNSUBADDR
// replaced by free loopback ports) until t ends, and waits until both
// listeners accept connections.
func startRelayProcess(t *testing.T, dir, cfg string) *relayProcess {
	t.Helper()
	p := &relayProcess{smtpAddr: freeAddr(t), unsubAddr: freeAddr(t), out: &bytes.Buffer{}}
	path := filepath.Join(dir, "sesrelay.yaml")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, strings.NewReplacer("SMTPADDR", p.smtpAddr, "UNSUBADDR", p.unsubAddr).Replace(cfg))
	p.cmd = exec.Command(relayBinary(t), "serve", "--config", path)
	p.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
	var mu sync.Mutex
	w := writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return p.out.Write(b) })
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("relay %s output:\n%s", dir, p.out.String())
			mu.Unlock()
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{p.smtpAddr, p.unsubAddr} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("relay %s exited before listening on %s: %v", dir, addr, p.cmd.ProcessState)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("relay %s does not listen on %s: %v", dir, addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestTwoRelayProcessesShareDynamoDB is the shared-store case of issue 17
// with real parts: two `sesrelay serve` processes on one DynamoDB table
// (the dynalite emulator, through the real aws-sdk-go-v2 client), each
// with its unsubscribe endpoint, both sending through the real SES client
// to a recording stand-in. A list message goes out through A; the one-click
// POST (as a mailbox provider makes it) on the List-Unsubscribe URL taken
// from what SES received goes to A's endpoint; from then on, at the latest
// after suppression.cache_ttl, replica B leaves that recipient out of the
// list's messages (although B had cached it as not suppressed), keeps
// sending to the others, and still sends mail without a list to everyone.
func TestTwoRelayProcessesShareDynamoDB(t *testing.T) {
	const cacheTTL = 2 * time.Second
	ddb := dynalitetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := suppression.NewDynamoDB(ctx, config.DynamoDBTable{Table: "sesrelay-suppression", Endpoint: ddb},
		suppression.Options{AWSConfig: dynalitetest.AWSConfig(), DefaultRegion: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	ses := sestest.New()
	t.Cleanup(ses.Close)

	dir := t.TempDir()
	key := filepath.Join(dir, "unsub.key")
	writeAtomic(t, key, "shared-secret-shared-secret-0123456789")
	cfg := strings.NewReplacer("SESURL", ses.URL, "DDBURL", ddb, "CACHETTL", cacheTTL.String(),
		"BILLING_HASH", reloadHash, "SECRET", key).Replace(processReplicaYAML)
	a := startRelayProcess(t, filepath.Join(dir, "a"), cfg)
	b := startRelayProcess(t, filepath.Join(dir, "b"), cfg)

	rcpts := []string{"ann@example.org", "bob@example.org", "carl@example.org"}
	var seq int
	// send sends one message through p (a list message when list is set)
	// and returns its subject, which marks its SES requests.
	send := func(p *relayProcess, list string) string {
		t.Helper()
		seq++
		subject := fmt.Sprintf("msg-%d", seq)
		c, err := smtp.Dial(p.smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", "billing-app", reloadPassword)); err != nil {
			t.Fatal(err)
		}
		msg := "From: news@billing.example.com\r\nTo: readers@example.org\r\nSubject: " + subject + "\r\n"
		if list != "" {
			msg += "X-List: " + list + "\r\n"
		}
		msg += "\r\nHello.\r\n"
		if _, err := smtptest.Send(c, "news@billing.example.com", rcpts, msg); err != nil {
			t.Fatalf("%s through %s: %v", subject, p.smtpAddr, err)
		}
		return subject
	}
	// requests are the SES requests of the message with subject.
	requests := func(subject string) []*sestest.Request {
		var out []*sestest.Request
		for _, r := range ses.Requests() {
			if bytes.Contains(r.Raw, []byte("\r\nSubject: "+subject+"\r\n")) {
				out = append(out, r)
			}
		}
		return out
	}
	// sentTo is every recipient of any SES request of subject, sorted.
	sentTo := func(subject string) []string {
		var out []string
		for _, r := range requests(subject) {
			out = append(out, r.To...)
			out = append(out, r.Cc...)
			out = append(out, r.Bcc...)
		}
		slices.Sort(out)
		return out
	}

	// B sends the list first and caches every recipient as not
	// suppressed; then A sends it.
	if got := sentTo(send(b, "monthly")); !slices.Equal(got, rcpts) {
		t.Fatalf("first list message through B went to %v, want %v", got, rcpts)
	}
	first := send(a, "monthly")
	if got := sentTo(first); !slices.Equal(got, rcpts) {
		t.Fatalf("first list message through A went to %v, want %v", got, rcpts)
	}
	var annPath string
	urlRE := regexp.MustCompile(`<https://unsub\.example\.com(/u/[A-Za-z0-9_-]+)>`)
	for _, r := range requests(first) {
		if slices.Equal(r.To, []string{"ann@example.org"}) {
			if m := urlRE.FindSubmatch(r.Raw); m != nil {
				annPath = string(m[1])
			}
		}
	}
	if annPath == "" {
		t.Fatalf("no List-Unsubscribe URL in the SES request to ann@example.org of %s", first)
	}

	if code := oneClick(t, "http://"+a.unsubAddr, annPath); code != 200 {
		t.Fatalf("one-click POST to replica A: %d", code)
	}
	posted := time.Now()

	// A took the unsubscribe: it holds there at once.
	if got := sentTo(send(a, "monthly")); !slices.Equal(got, []string{"bob@example.org", "carl@example.org"}) {
		t.Fatalf("list message through A right after the unsubscribe went to %v, want bob and carl", got)
	}
	// B: a message that starts after posted+cacheTTL must leave ann out;
	// once B left her out, it never sends her the list again.
	suppressedAt := time.Duration(-1)
	for {
		started := time.Since(posted)
		got := sentTo(send(b, "monthly"))
		switch {
		case slices.Equal(got, []string{"bob@example.org", "carl@example.org"}):
			if suppressedAt < 0 {
				suppressedAt = started
			}
		case slices.Equal(got, rcpts) && suppressedAt < 0 && started < cacheTTL:
			// Still within the cache bound: allowed.
		default:
			t.Fatalf("list message through B %s after the unsubscribe (cache_ttl %s; left out from %s, -1: not yet) went to %v",
				started.Round(time.Millisecond), cacheTTL, suppressedAt.Round(time.Millisecond), got)
		}
		if started > cacheTTL+500*time.Millisecond {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("replica B left the unsubscribed recipient out from %s after the POST on replica A (cache_ttl %s)", suppressedAt.Round(time.Millisecond), cacheTTL)

	// Mail without a list is never suppressed, on either replica.
	for _, p := range []*relayProcess{b, a} {
		if got := sentTo(send(p, "")); !slices.Equal(got, rcpts) {
			t.Fatalf("message without a list through %s went to %v, want %v", p.smtpAddr, got, rcpts)
		}
	}
	// A list the recipient did not leave still reaches her.
	if got := sentTo(send(b, "weekly")); !slices.Equal(got, rcpts) {
		t.Fatalf("message of another list through B went to %v, want %v", got, rcpts)
	}
}

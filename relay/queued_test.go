package relay_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/headers"
	"github.com/sesrelay/sesrelay/queue"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/sestest"
)

// queueYAML: billing in the mode under test (MODE), marketing direct.
const queueYAML = `
server:
  hostname: relay.test
  listeners:
    - {address: "127.0.0.1:0", tls: none, allow_insecure_auth: true}
  tls: {self_signed: true}
  max_message_bytes: 65536
  max_recipients: 50
log: {level: debug}
ses: {region: us-east-1, max_attempts: 1, timeout: 5s}
delivery: {mode: direct}
queue: {dir: QDIR, min_backoff: 50ms, max_backoff: 200ms, bounce_from: postmaster@relay.example.com}
tenants:
  - name: billing
    delivery_mode: MODE
    users: [{username: billing-app, password_hash: "HASH"}]
    domains: ["billing.example.com", "*.billing.example.com"]
    configuration_set: billing-tx
    tags: {stream: transactional}
    identity_arn: "arn:aws:ses:us-east-1:123456789012:identity/billing.example.com"
  - name: marketing
    users: [{username: marketing-app, password_hash: "HASH"}]
    domains: ["marketing.example.com"]
    configuration_set: marketing-bulk
`

type qHarness struct {
	t      *testing.T
	base   *harness
	srv    *relay.Server
	ses    *sestest.Server
	q      *queue.Queue
	runner *queue.Runner
	addr   string
	dir    string
	clock  atomic.Int64 // offset added to the real time, in ns
}

type qOpts struct {
	mode    string
	limits  queue.Limits
	norun   bool // do not start the runner
	respond func(n int, r *sestest.Request) sestest.Reply
	yaml    string // replaces queueYAML
	quiet   bool   // no test log (benchmarks)
	workers int    // delivery workers; 0: 2
}

func startQueued(t *testing.T, o qOpts) *qHarness {
	t.Helper()
	h := &qHarness{t: t, dir: t.TempDir()}
	y := o.yaml
	if y == "" {
		y = queueYAML
	}
	y = strings.ReplaceAll(y, "MODE", o.mode)
	y = strings.ReplaceAll(y, "QDIR", fmt.Sprintf("%q", h.dir))
	now := func() time.Time { return time.Now().Add(time.Duration(h.clock.Load())) }
	log := zaptest.NewLogger(t)
	if o.quiet {
		log = zap.NewNop()
	}
	base := startWith(t, y, hOpts{
		limits: func(*config.Config) relay.RateLimits { return relay.RateLimits{} },
		options: func(_ *config.Config, ro *relay.Options) {
			var err error
			h.q, err = queue.Open(h.dir, queue.Options{Limits: o.limits, Logger: log, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.q.Close() })
			ro.Logger, ro.Now, ro.Queue = log, now, h.q
		},
		built: func(cfg *config.Config, srv *relay.Server, sender relay.Sender) {
			limiter := sender.(*relay.RateLimiter)
			workers := cmp.Or(o.workers, 2)
			h.runner = h.q.NewRunner(queue.RunnerOptions{
				Deliverer: srv.QueueDeliverer(limiter.Next()), Classify: relay.QueueClassify, Limiter: limiter,
				Workers: workers, MinBackoff: cfg.Queue.MinBackoff, MaxBackoff: cfg.Queue.MaxBackoff, MaxAge: cfg.Queue.MaxAge,
				OnDead: srv.QueueDSN(h.q),
			})
			if !o.norun {
				h.runner.Start()
				t.Cleanup(func() { h.runner.Stop(context.Background()) })
			}
		},
	})
	h.base, h.srv, h.ses, h.addr = base, base.srv, base.ses, base.plain
	h.ses.Respond = o.respond
	return h
}

func (h *qHarness) client(user string) *smtp.Client {
	h.t.Helper()
	return h.base.dialPlain(user, testPassword)
}

// queuedID is the queue id of a "2.0.0 Ok: queued as ID" reply text.
func queuedID(t *testing.T, text string) string {
	t.Helper()
	id, ok := strings.CutPrefix(text, "2.0.0 Ok: queued as ")
	if !ok || len(id) < 10 {
		t.Fatalf("reply %q does not name a queue id", text)
	}
	id, _, _ = strings.Cut(id, " ")
	return id
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueueModeStoresThenSends: 250 comes from the queue (no SES call
// before the workers run), the message is stored once for several
// recipients, and what SES receives is what a direct send would have
// sent, with every SES parameter.
func TestQueueModeStoresThenSends(t *testing.T) {
	h := startQueued(t, qOpts{mode: "queue", norun: true})
	c := h.client("billing-app")
	text, err := send(c, "bounces@billing.example.com", []string{"a@example.org", "b@example.net"}, simpleMsg)
	if err != nil {
		t.Fatal(err)
	}
	id := queuedID(t, text)
	if strings.Contains(text, "SES unavailable") {
		t.Fatalf("reply %q", text)
	}
	if h.ses.Calls() != 0 {
		t.Fatalf("SES called %d times before the workers ran", h.ses.Calls())
	}
	e, err := h.q.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if e.Tenant != "billing" || e.Sender != "bounces@billing.example.com" || len(e.Requests) != 1 ||
		strings.Join(e.Requests[0].Recipients, ",") != "a@example.org,b@example.net" || e.SES.ConfigurationSet != "billing-tx" {
		t.Fatalf("entry %+v", e)
	}
	if data, _ := os.ReadFile(filepath.Join(h.dir, "active", id+".data")); bytes.Count(data, []byte("Hello.")) != 1 {
		t.Fatalf("body stored %d times", bytes.Count(data, []byte("Hello.")))
	}
	h.runner.Start()
	t.Cleanup(func() { h.runner.Stop(context.Background()) })
	waitFor(t, "delivery", func() bool { n, _ := h.q.Usage(""); return n == 0 && len(h.ses.Requests()) == 1 })
	r := h.ses.Requests()[0]
	if !bytes.HasSuffix(r.Raw, []byte(simpleMsg)) || !bytes.Contains(r.Raw, []byte("Message-ID: <")) {
		t.Fatalf("raw %q", r.Raw)
	}
	if strings.Join(r.To, ",") != "a@example.org,b@example.net" || r.ConfigurationSetName != "billing-tx" ||
		r.Tags["stream"] != "transactional" || r.Tags["tenant"] != "billing" ||
		r.IdentityARN != "arn:aws:ses:us-east-1:123456789012:identity/billing.example.com" {
		t.Fatalf("SES request %+v", r)
	}
	// Direct tenants are unchanged: 250 carries the SES message id.
	m := h.client("marketing-app")
	text, err = send(m, "news@marketing.example.com", []string{"x@example.org"},
		"From: news@marketing.example.com\r\nTo: x@example.org\r\nSubject: hi\r\n\r\nHi.\r\n")
	if err != nil || !strings.Contains(text, "0100018c-test-") {
		t.Fatalf("direct tenant: %q %v", text, err)
	}
}

// TestQueueModePolicyStillRefuses: a policy refusal is an immediate 5xx
// in queue mode; nothing is stored.
func TestQueueModePolicyStillRefuses(t *testing.T) {
	h := startQueued(t, qOpts{mode: "queue", norun: true})
	c := h.client("billing-app")
	_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"},
		"From: ceo@other.example\r\nTo: a@example.org\r\nSubject: x\r\n\r\nx\r\n")
	expectCode(t, err, 550, "5.7.1")
	if n, _ := h.q.Usage(""); n != 0 {
		t.Fatalf("%d queued", n)
	}
}

// TestFallbackThrottledThenRecovers: SES throttles (and fails with 5xx)
// for a while; every message gets 250 "queued ... will retry", none is
// lost, and each reaches SES exactly once after it recovers.
func TestFallbackThrottledThenRecovers(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	h := startQueued(t, qOpts{mode: "fallback", respond: func(n int, r *sestest.Request) sestest.Reply {
		if failing.Load() {
			if n%2 == 0 {
				return sestest.Reply{Status: 503, ErrorType: "ServiceUnavailable", Message: "down"}
			}
			return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException", Message: "Maximum sending rate exceeded."}
		}
		return sestest.Reply{}
	}})
	c := h.client("billing-app")
	const n = 10
	for i := range n {
		msg := strings.Replace(simpleMsg, "Hello.", fmt.Sprintf("Hello %d.", i), 1)
		text, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, msg)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !strings.HasSuffix(text, "(SES unavailable, will retry)") {
			t.Fatalf("reply %q", text)
		}
	}
	if len(h.ses.Requests()) != 0 {
		t.Fatal("SES accepted while failing")
	}
	failing.Store(false)
	waitFor(t, "all delivered", func() bool { q, _ := h.q.Usage(""); return q == 0 && len(h.ses.Requests()) >= n })
	seen := map[string]int{}
	for _, r := range h.ses.Requests() {
		i := bytes.Index(r.Raw, []byte("Hello "))
		seen[string(r.Raw[i:i+8])]++
	}
	for i := range n {
		if k := fmt.Sprintf("Hello %d.", i); seen[k] != 1 {
			t.Errorf("%s delivered %d times", k, seen[k])
		}
	}
	// Once SES works, fallback is a direct send again.
	text, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg)
	if err != nil || !strings.Contains(text, "0100018c-test-") {
		t.Fatalf("after recovery: %q %v", text, err)
	}
}

// TestFallbackPermanentRefusal: a permanent SES refusal is a 5xx at once
// in fallback mode, and nothing is queued.
func TestFallbackPermanentRefusal(t *testing.T) {
	h := startQueued(t, qOpts{mode: "fallback", respond: func(int, *sestest.Request) sestest.Reply {
		return sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Email address is not verified."}
	}})
	c := h.client("billing-app")
	_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg)
	expectCode(t, err, 550, "5.7.1")
	if n, _ := h.q.Usage(""); n != 0 {
		t.Fatalf("%d queued", n)
	}
}

// TestQueueFull: beyond queue.max_messages queue mode answers 452 4.3.1
// and fallback passes the original 451 through; direct tenants keep
// working and what was queued is intact.
func TestQueueFull(t *testing.T) {
	for _, mode := range []string{"queue", "fallback"} {
		t.Run(mode, func(t *testing.T) {
			h := startQueued(t, qOpts{mode: mode, norun: true, limits: queue.Limits{MaxMessages: 1},
				respond: func(int, *sestest.Request) sestest.Reply {
					return sestest.Reply{Status: 429, ErrorType: "TooManyRequestsException", Message: "slow down"}
				}})
			c := h.client("billing-app")
			if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
				t.Fatal(err)
			}
			c.Reset()
			_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg)
			if mode == "queue" {
				expectCode(t, err, 452, "4.3.1")
			} else {
				expectCode(t, err, 451, "4.3.2")
			}
			if n, _ := h.q.Usage(""); n != 1 {
				t.Fatalf("%d queued", n)
			}
		})
	}
}

// TestQueueDiskError: when the queue directory cannot be written, queue
// mode answers 452 4.3.1, nothing half-written stays, and a direct
// tenant is still served.
func TestQueueDiskError(t *testing.T) {
	h := startQueued(t, qOpts{mode: "queue", norun: true})
	// incoming/ replaced by a file: every temporary file fails, as on a
	// full or failing disk (and whatever the test's user may write).
	inc := filepath.Join(h.dir, "incoming")
	if err := os.RemoveAll(inc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inc, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := h.client("billing-app")
	_, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg)
	expectCode(t, err, 452, "4.3.1")
	if names, _ := os.ReadDir(filepath.Join(h.dir, "active")); len(names) != 0 {
		t.Fatalf("active/ holds %d files after a failed write", len(names))
	}
	if err := h.q.Check(); err == nil {
		t.Fatal("Check passes on an unwritable queue")
	}
	m := h.client("marketing-app")
	if _, err := send(m, "news@marketing.example.com", []string{"x@example.org"},
		"From: news@marketing.example.com\r\nTo: x@example.org\r\nSubject: hi\r\n\r\nHi.\r\n"); err != nil {
		t.Fatalf("direct tenant: %v", err)
	}
}

// TestQueueDKIMSignedAtSendTime: the signature SES gets is made when the
// message leaves the queue, with the key in force then: an x= that
// expired while the message waited, or a rotated key, still verifies.
func TestQueueDKIMSignedAtSendTime(t *testing.T) {
	dir := t.TempDir()
	key1, pub1 := writeEd25519(t, dir, "k1.pem")
	key2, pub2 := writeEd25519(t, dir, "k2.pem")
	withKey := func(sel, key string) string {
		return strings.Replace(queueYAML, "    identity_arn:", fmt.Sprintf("    dkim: [{domain: billing.example.com, selector: %s, key_file: %q, expiration: 1h}]\n    identity_arn:", sel, key), 1)
	}
	h := startQueued(t, qOpts{mode: "queue", norun: true, yaml: withKey("s1", key1)})
	h.clock.Store(int64(-3 * time.Hour)) // accepted 3 h ago: its accept-time x= is 2 h past
	c := h.client("billing-app")
	text, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := h.q.Show(queuedID(t, text))
	if err != nil {
		t.Fatal(err)
	}
	if e.DKIMDomain != "billing.example.com" {
		t.Fatalf("dkim domain %q", e.DKIMDomain)
	}
	stored := e.Message(0)
	if vs, err := verifyWith(stored, pub1); err == nil && vs[0].Err == nil {
		t.Fatal("the accept-time signature should have expired for this test to mean anything")
	}
	// The key rotates (s1 -> s2) while the message waits.
	y := strings.ReplaceAll(strings.ReplaceAll(withKey("s2", key2), "MODE", "queue"), "QDIR", fmt.Sprintf("%q", h.dir))
	if err := h.srv.Reload(testConfig(t, y)); err != nil {
		t.Fatal(err)
	}
	h.clock.Store(0)
	h.runner.Start()
	t.Cleanup(func() { h.runner.Stop(context.Background()) })
	waitFor(t, "delivery", func() bool { return len(h.ses.Requests()) == 1 })
	raw := h.ses.Requests()[0].Raw
	if n := bytes.Count(bytes.ToLower(raw), []byte("dkim-signature:")); n != 1 {
		t.Fatalf("%d DKIM-Signature fields", n)
	}
	if s := dkimSelector(t, raw, pub2); s != "s2" {
		t.Fatalf("selector %q", s)
	}
}

func verifyWith(raw []byte, pub any) ([]*dkim.Verification, error) {
	txt, err := headers.DNSRecord(pub)
	if err != nil {
		return nil, err
	}
	return dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(string) ([]string, error) { return []string{txt}, nil },
	})
}

// TestQueueDeadSendsDSN: a queued message SES refuses permanently moves
// to dead/ and one RFC 3464 report goes to its envelope sender (from
// queue.bounce_from, itself of the null sender); none for <>.
func TestQueueDeadSendsDSN(t *testing.T) {
	var mu sync.Mutex
	h := startQueued(t, qOpts{mode: "queue", respond: func(_ int, r *sestest.Request) sestest.Reply {
		mu.Lock()
		defer mu.Unlock()
		if bytes.Contains(r.Raw, []byte("multipart/report")) {
			return sestest.Reply{}
		}
		return sestest.Reply{Status: 400, ErrorType: "MessageRejected", Message: "Email address is not verified."}
	}})
	c := h.client("billing-app")
	if _, err := send(c, "bounces@billing.example.com", []string{"a@example.org"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
	c.Reset()
	if _, err := send(c, "", []string{"b@example.org"}, simpleMsg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two dead, one report", func() bool {
		dead := 0
		for _, e := range h.q.List("") {
			if e.Dead {
				dead++
			}
		}
		n, _ := h.q.Usage("")
		return dead == 2 && n == 0 && len(h.ses.Requests()) == 1
	})
	time.Sleep(100 * time.Millisecond)
	reqs := h.ses.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d reports", len(reqs))
	}
	r := reqs[0]
	if strings.Join(r.To, ",") != "bounces@billing.example.com" || !bytes.Contains(r.Raw, []byte("<postmaster@relay.example.com>")) ||
		!bytes.Contains(r.Raw, []byte("Final-Recipient: rfc822; a@example.org")) {
		t.Fatalf("report to %v:\n%s", r.To, r.Raw)
	}
	_ = config.ModeQueue
}

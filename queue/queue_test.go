package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func openTest(t *testing.T, dir string, o Options) *Queue {
	t.Helper()
	if o.Logger == nil {
		o.Logger = zaptest.NewLogger(t)
	}
	q, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// testMessage is a per-recipient message: one request per recipient,
// each with its own header block, over one body.
func testMessage(tenant string, rcpts ...string) *Message {
	m := &Message{
		Tenant: tenant,
		Sender: "app@" + tenant + ".example",
		SES: SES{ConfigurationSet: "cs1", Tags: []Tag{{"k", "v"}}, IdentityARN: "arn:aws:ses:eu-west-1:123456789012:identity/example.com",
			Region: "eu-west-1", SESTenant: "t1", DisableTracking: true},
		Body: []byte("Hello.\r\n"),
	}
	for _, r := range rcpts {
		m.Requests = append(m.Requests, Request{
			Recipients: []string{r},
			Header:     []byte("From: app@" + tenant + ".example\r\nTo: " + r + "\r\nSubject: hi\r\n\r\n"),
		})
	}
	return m
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	n, err := readDirNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(n)
	return n
}

func TestEnqueueStoresBodyOnceAndShowReadsIt(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	m := testMessage("acme", "a@x.example", "b@x.example")
	e, err := q.Enqueue(m)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, activeDir, e.ID+dataSuffix))
	if err != nil {
		t.Fatal(err)
	}
	line, payload, _ := bytes.Cut(data, []byte("\n"))
	var lm Entry
	if err := json.Unmarshal(line, &lm); err != nil || lm.ID != e.ID || lm.Seq != 1 || lm.Version != metaVersion || len(lm.Requests) != 2 {
		t.Fatalf("data file's meta line %q: %+v, %v", line, lm, err)
	}
	want := slices.Concat(m.Requests[0].Header, m.Requests[1].Header, m.Body)
	if !bytes.Equal(payload, want) {
		t.Fatalf("data file after the meta line = %q, want both header blocks then the body once: %q", payload, want)
	}
	if got := dirNames(t, filepath.Join(dir, activeDir)); !slices.Equal(got, []string{e.ID + dataSuffix}) {
		t.Fatalf("active/ = %v", got)
	}
	if got := dirNames(t, filepath.Join(dir, incomingDir)); len(got) != 0 {
		t.Fatalf("incoming/ not empty: %v", got)
	}
	s, err := q.Show(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Requests {
		if got, want := s.Message(i), slices.Concat(m.Requests[i].Header, m.Body); !bytes.Equal(got, want) {
			t.Errorf("Message(%d) = %q, want %q", i, got, want)
		}
		if s.Requests[i].State != Pending {
			t.Errorf("request %d state %q", i, s.Requests[i].State)
		}
	}
	if s.SES.ConfigurationSet != "cs1" || s.SES.Tags[0] != (Tag{"k", "v"}) || !s.SES.DisableTracking || s.SES.SESTenant != "t1" ||
		s.SES.Region != "eu-west-1" || s.SES.IdentityARN == "" || s.Sender != m.Sender || s.Tenant != "acme" {
		t.Errorf("metadata not kept: %+v", s)
	}
	if got := s.Recipients(); !slices.Equal(got, []string{"a@x.example", "b@x.example"}) {
		t.Errorf("Recipients = %v", got)
	}
	if msgs, size := q.Usage("acme"); msgs != 1 || size != int64(len(want)) {
		t.Errorf("Usage = %d, %d", msgs, size)
	}
}

func TestEnqueueRefusesMalformedMessages(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	for name, m := range map[string]*Message{
		"no tenant":     {Requests: []Request{{Recipients: []string{"a@x"}}}},
		"no requests":   {Tenant: "a"},
		"no recipients": {Tenant: "a", Requests: []Request{{Header: []byte("X: y\r\n\r\n")}}},
	} {
		if _, err := q.Enqueue(m); err == nil || errors.Is(err, ErrWrite) || errors.Is(err, ErrFull) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if n, _ := q.Usage(""); n != 0 {
		t.Errorf("usage %d after refusals", n)
	}
}

func TestReopenKeepsEntries(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	q := openTest(t, dir, Options{Now: clock.Now})
	var ids []string
	for i := range 3 {
		clock.Advance(time.Second)
		e, err := q.Enqueue(testMessage("acme", fmt.Sprintf("r%d@x.example", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	before := q.List("")
	q.Close()
	q2 := openTest(t, dir, Options{})
	after := q2.List("")
	if len(after) != 3 {
		t.Fatalf("%d entries after reopen", len(after))
	}
	for i, e := range after {
		if e.ID != ids[i] || !e.Created.Equal(before[i].Created) || e.SHA256 != before[i].SHA256 {
			t.Errorf("entry %d after reopen: %+v, before %+v", i, e, before[i])
		}
	}
	if n, _ := q2.Usage("acme"); n != 3 {
		t.Errorf("usage after reopen %d", n)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir, Options{})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "locked by another process (process ") {
		t.Errorf("error does not say who holds it: %v", err)
	}
}

func TestCloseReleasesLock(t *testing.T) {
	dir := t.TempDir()
	q, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if _, err := q.Enqueue(testMessage("a", "r@x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close: %v", err)
	}
	openTest(t, dir, Options{})
}

// TestOpenRemovesHalfWrittenEntries: what a crash before Enqueue returned
// can leave is removed, and never listed.
func TestOpenRemovesHalfWrittenEntries(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	keep, err := q.Enqueue(testMessage("acme", "r@x.example"))
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	act := filepath.Join(dir, activeDir)
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, incomingDir, "tmp-123"), "partial")
	// A move to dead/ cut after the link: the active copy stays.
	if err := os.Link(filepath.Join(act, keep.ID+dataSuffix), filepath.Join(dir, deadDir, keep.ID+dataSuffix)); err != nil {
		t.Fatal(err)
	}
	// A removal cut after the data file went: the meta file is a leftover.
	line, _, _ := strings.Cut(string(must(os.ReadFile(filepath.Join(act, keep.ID+dataSuffix)))), "\n")
	write(filepath.Join(act, "bbbb"+metaSuffix), strings.ReplaceAll(line, keep.ID, "bbbb"))

	q2 := openTest(t, dir, Options{})
	if l := q2.List(""); len(l) != 1 || l[0].ID != keep.ID {
		t.Fatalf("List = %v", l)
	}
	if got := dirNames(t, act); !slices.Equal(got, []string{keep.ID + dataSuffix}) {
		t.Errorf("active/ = %v", got)
	}
	for _, d := range []string{incomingDir, deadDir} {
		if got := dirNames(t, filepath.Join(dir, d)); len(got) != 0 {
			t.Errorf("%s/ = %v", d, got)
		}
	}
}

// TestOpenSkipsCorruptEntries: a meta file that does not parse or whose
// data has the wrong size is neither listed nor deleted.
func TestOpenSkipsCorruptEntries(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	a, _ := q.Enqueue(testMessage("acme", "a@x.example"))
	b, _ := q.Enqueue(testMessage("acme", "b@x.example"))
	q.Close()
	os.WriteFile(filepath.Join(dir, activeDir, a.ID+metaSuffix), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, activeDir, b.ID+dataSuffix), []byte("short"), 0o600)
	q2 := openTest(t, dir, Options{})
	if l := q2.List(""); len(l) != 0 {
		t.Fatalf("corrupt entries listed: %v", l)
	}
	if got := dirNames(t, filepath.Join(dir, activeDir)); len(got) != 3 {
		t.Errorf("corrupt files deleted: %v", got)
	}
}

// TestShowDetectsChangedData: a data file altered in place (same size)
// fails its checksum.
func TestShowDetectsChangedData(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example"))
	p := filepath.Join(dir, activeDir, e.ID+dataSuffix)
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o600)
	if _, err := q.Show(e.ID); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("Show of altered data: %v", err)
	}
}

// TestInterruptedMoveKeepsNewestCopy: a crash in the middle of a move to
// dead/ leaves complete copies in both places; the later one wins.
func TestInterruptedMoveKeepsNewestCopy(t *testing.T) {
	for _, deadWins := range []bool{true, false} {
		t.Run(fmt.Sprint("deadWins=", deadWins), func(t *testing.T) {
			dir := t.TempDir()
			q := openTest(t, dir, Options{})
			e, _ := q.Enqueue(testMessage("acme", "a@x.example"))
			d := e.clone()
			d.Dead, d.DeadReason = true, DeadRefused
			if !deadWins {
				// The active copy was written after the dead one.
				for range 3 {
					if err := q.update(e); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := q.link(q.path(false, e.ID, dataSuffix), q.path(true, e.ID, dataSuffix)); err != nil {
				t.Fatal(err)
			}
			if err := q.writeMeta(d); err != nil {
				t.Fatal(err)
			}
			q.Close()
			q2 := openTest(t, dir, Options{})
			l := q2.List("")
			if len(l) != 1 || l[0].Dead != deadWins {
				t.Fatalf("List = %+v", l)
			}
			loser := activeDir
			if !deadWins {
				loser = deadDir
			}
			if got := dirNames(t, filepath.Join(dir, loser)); len(got) != 0 {
				t.Errorf("%s/ still has %v", loser, got)
			}
			if _, err := q2.Show(e.ID); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{
		Limits:       Limits{MaxMessages: 3},
		TenantLimits: map[string]Limits{"small": {MaxMessages: 1}, "tiny": {MaxBytes: 10}},
	})
	if _, err := q.Enqueue(testMessage("tiny", "a@x")); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "tenant tiny max_bytes 10") {
		t.Errorf("tiny: %v", err)
	}
	if _, err := q.Enqueue(testMessage("small", "a@x")); err != nil {
		t.Fatal(err)
	}
	_, err := q.Enqueue(testMessage("small", "b@x"))
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "tenant small max_messages 1") {
		t.Errorf("small second: %v", err)
	}
	a, err := q.Enqueue(testMessage("big", "a@x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(testMessage("big", "b@x")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(testMessage("big", "c@x")); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "queue max_messages 3") {
		t.Errorf("global: %v", err)
	}
	if err := q.Delete(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(testMessage("big", "c@x")); err != nil {
		t.Errorf("after a delete: %v", err)
	}
	q.SetLimits(Limits{MaxBytes: 1}, nil)
	if _, err := q.Enqueue(testMessage("big", "d@x")); !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "queue max_bytes 1") {
		t.Errorf("after SetLimits: %v", err)
	}
	if got := testutil.ToFloat64(q.m.full.WithLabelValues("small", "tenant")); got != 1 {
		t.Errorf("full{small,tenant} = %v", got)
	}
}

// TestWriteFailureLeavesNothing injects ENOSPC or EIO at every
// file-system step of Enqueue: the error wraps ErrWrite, no file is left
// in active/ or incoming/, the counts are unchanged, and the next Enqueue
// works.
func TestWriteFailureLeavesNothing(t *testing.T) {
	steps := []struct {
		op     writeOp
		suffix string
	}{
		{opCreate, dataSuffix}, {opWrite, dataSuffix}, {opSync, dataSuffix}, {opRename, dataSuffix},
		{opSyncDir, ""},
	}
	for _, s := range steps {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
			t.Run(fmt.Sprintf("%s%s/%v", s.op, s.suffix, errno), func(t *testing.T) {
				dir := t.TempDir()
				armed := false
				q := openTest(t, dir, Options{fault: func(op writeOp, path string) error {
					if armed && op == s.op && strings.HasSuffix(path, s.suffix) {
						return errno
					}
					return nil
				}})
				armed = true
				_, err := q.Enqueue(testMessage("acme", "a@x.example"))
				if !errors.Is(err, ErrWrite) || !errors.Is(err, errno) {
					t.Fatalf("Enqueue: %v, want ErrWrite wrapping %v", err, errno)
				}
				for _, d := range []string{activeDir, incomingDir, deadDir} {
					if got := dirNames(t, filepath.Join(dir, d)); len(got) != 0 {
						t.Errorf("%s/ after the failure: %v", d, got)
					}
				}
				if n, b := q.Usage(""); n != 0 || b != 0 || len(q.List("")) != 0 {
					t.Errorf("counted after the failure: %d messages, %d bytes", n, b)
				}
				if got := testutil.ToFloat64(q.m.writeErrors); got != 1 {
					t.Errorf("write errors metric = %v", got)
				}
				armed = false
				if _, err := q.Enqueue(testMessage("acme", "a@x.example")); err != nil {
					t.Errorf("Enqueue after the fault cleared: %v", err)
				}
			})
		}
	}
}

// TestUnwritableDirectory: a queue directory the process cannot write
// (incoming/ replaced by a file, which refuses even root) gives ErrWrite
// and a failing Check, and nothing is counted.
func TestUnwritableDirectory(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	inc := filepath.Join(dir, incomingDir)
	os.Remove(inc)
	if err := os.WriteFile(inc, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(testMessage("acme", "a@x.example")); !errors.Is(err, ErrWrite) {
		t.Fatalf("Enqueue: %v", err)
	}
	if err := q.Check(); !errors.Is(err, ErrWrite) {
		t.Errorf("Check: %v", err)
	}
	if n, _ := q.Usage(""); n != 0 {
		t.Errorf("usage %d", n)
	}
	if got := dirNames(t, filepath.Join(dir, activeDir)); len(got) != 0 {
		t.Errorf("active/ = %v", got)
	}
}

func TestUnwritableDirectoryPermissions(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	os.Chmod(filepath.Join(dir, activeDir), 0o500)
	defer os.Chmod(filepath.Join(dir, activeDir), 0o700)
	if _, err := q.Enqueue(testMessage("acme", "a@x.example")); !errors.Is(err, ErrWrite) {
		t.Fatalf("Enqueue: %v", err)
	}
	if got := dirNames(t, filepath.Join(dir, incomingDir)); len(got) != 0 {
		t.Errorf("incoming/ = %v", got)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	for range 3 {
		if err := q.Check(); err != nil {
			t.Fatal(err)
		}
	}
	// The probe's file is kept as the one spare, reused by each probe.
	if got := dirNames(t, filepath.Join(dir, incomingDir)); len(got) != 1 || !strings.HasPrefix(got[0], sparePrefix) || len(q.spares) != 1 {
		t.Errorf("incoming/ = %v, %d spares in the pool", got, len(q.spares))
	}
}

func TestDeleteAndNotFound(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example"))
	if err := q.Delete(e.ID); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(dir, activeDir)); len(got) != 0 {
		t.Errorf("active/ = %v", got)
	}
	for name, err := range map[string]error{
		"Delete":  q.Delete(e.ID),
		"Retry":   q.Retry(e.ID),
		"Requeue": q.Requeue(e.ID),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a deleted entry: %v", name, err)
		}
	}
	if _, err := q.Show("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Show of a path: %v", err)
	}
}

func TestDeleteRefusesBusyEntry(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example"))
	if !q.claimDue(e.ID, time.Now()) {
		t.Fatal("not claimed")
	}
	if err := q.Delete(e.ID); !errors.Is(err, ErrBusy) {
		t.Errorf("Delete of a busy entry: %v", err)
	}
}

func TestRetryMakesEntryDueAndPersists(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	q := openTest(t, dir, Options{Now: clock.Now})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example"))
	f, _ := q.Enqueue(testMessage("acme", "b@x.example"))
	for _, x := range []*Entry{e, f} {
		x.NextAttempt = clock.t.Add(time.Hour)
		if err := q.update(x); err != nil {
			t.Fatal(err)
		}
	}
	if ids, _ := q.due(clock.t, 10); len(ids) != 0 {
		t.Fatalf("due before Retry: %v", ids)
	}
	clock.Advance(time.Minute)
	if err := q.Retry(e.ID); err != nil {
		t.Fatal(err)
	}
	if ids, _ := q.due(clock.t, 10); !slices.Equal(ids, []string{e.ID}) {
		t.Fatalf("due after Retry: %v", ids)
	}
	if n, err := q.RetryAll(); err != nil || n != 2 {
		t.Fatalf("RetryAll = %d, %v", n, err)
	}
	q.Close()
	q2 := openTest(t, dir, Options{Now: clock.Now})
	if ids, _ := q2.due(clock.t, 10); len(ids) != 2 {
		t.Errorf("due after reopen: %v", ids)
	}
}

func TestRequeueFromDead(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	q := openTest(t, dir, Options{Now: clock.Now, Registerer: reg})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example", "b@x.example"))
	e.Requests[0].State, e.Requests[0].SESMessageID = Accepted, "ses-1"
	e.Requests[1].State, e.Requests[1].Status, e.Requests[1].Error = Failed, "5.6.0", "rejected"
	e.Attempts, e.Dead, e.DeadReason = 3, true, DeadRefused
	if err := q.move(e); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(q.m.deadEntries.WithLabelValues("acme")); got != 1 {
		t.Errorf("dead gauge %v", got)
	}
	if n, _ := q.Usage("acme"); n != 0 {
		t.Errorf("a dead entry counts in usage: %d", n)
	}
	if err := q.Retry(e.ID); err == nil {
		t.Error("Retry of a dead entry succeeded")
	}
	if got := dirNames(t, filepath.Join(dir, deadDir)); len(got) != 2 {
		t.Fatalf("dead/ = %v", got)
	}
	clock.Advance(time.Hour)
	if err := q.Requeue(e.ID); err != nil {
		t.Fatal(err)
	}
	if err := q.Requeue(e.ID); err == nil {
		t.Error("Requeue of an active entry succeeded")
	}
	if got := dirNames(t, filepath.Join(dir, deadDir)); len(got) != 0 {
		t.Errorf("dead/ after requeue = %v", got)
	}
	q.Close()
	q2 := openTest(t, dir, Options{Now: clock.Now, Registerer: reg})
	s, err := q2.Show(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Dead || s.Attempts != 0 || !s.Queued.Equal(clock.t) || !s.NextAttempt.Equal(clock.t) {
		t.Errorf("requeued entry: %+v", s)
	}
	if s.Requests[0].State != Accepted || s.Requests[0].SESMessageID != "ses-1" || s.Requests[1].State != Pending || s.Requests[1].Error != "" {
		t.Errorf("requests after requeue: %+v", s.Requests)
	}
	if got := testutil.ToFloat64(q2.m.messages.WithLabelValues("acme")); got != 1 {
		t.Errorf("messages gauge %v", got)
	}
}

func TestListFiltersByTenant(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{})
	q.Enqueue(testMessage("a", "r@x"))
	q.Enqueue(testMessage("b", "r@x"))
	q.Enqueue(testMessage("a", "s@x"))
	if l := q.List("a"); len(l) != 2 || l[0].Tenant != "a" || l[1].Tenant != "a" {
		t.Errorf("List(a) = %v", l)
	}
	if l := q.List(""); len(l) != 3 {
		t.Errorf("List() = %v", l)
	}
	if l := q.List("a"); l[0].Body() != nil || l[0].Requests[0].Header != nil {
		t.Error("List returns data")
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	clock := &fakeClock{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	q := openTest(t, t.TempDir(), Options{Registerer: reg, Now: clock.Now})
	e, _ := q.Enqueue(testMessage("acme", "a@x.example"))
	clock.Advance(90 * time.Second)
	want := fmt.Sprintf(`
# HELP sesrelay_queue_bytes Bytes of the messages waiting for delivery.
# TYPE sesrelay_queue_bytes gauge
sesrelay_queue_bytes{tenant="acme"} %d
# HELP sesrelay_queue_messages Messages in the queue waiting for delivery (active, not dead).
# TYPE sesrelay_queue_messages gauge
sesrelay_queue_messages{tenant="acme"} 1
# HELP sesrelay_queue_oldest_message_age_seconds Age of the oldest message waiting for delivery, 0 when none waits.
# TYPE sesrelay_queue_oldest_message_age_seconds gauge
sesrelay_queue_oldest_message_age_seconds 90
`, e.Size)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sesrelay_queue_bytes", "sesrelay_queue_messages", "sesrelay_queue_oldest_message_age_seconds"); err != nil {
		t.Error(err)
	}
	if _, err := Open(t.TempDir(), Options{Registerer: reg}); err == nil {
		t.Error("a second queue registered the same metrics")
	}
	q.Close()
	q2 := openTest(t, q.Dir(), Options{Registerer: reg})
	if n, _ := q2.Usage(""); n != 1 {
		t.Error("reopen after Close failed")
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a := newID()
	time.Sleep(2 * time.Millisecond)
	b := newID()
	if len(a) != 22 || !idRE.MatchString(a) || a >= b {
		t.Errorf("ids %q then %q", a, b)
	}
}

// TestEnqueueNeverReusesAnID: an id generator that repeats itself must
// not make an Enqueue replace an entry.
func TestEnqueueNeverReusesAnID(t *testing.T) {
	q := openTest(t, t.TempDir(), Options{NewID: func() string { return "same" }})
	a, err := q.Enqueue(testMessage("acme", "a@x.example"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Enqueue(testMessage("acme", "b@x.example")); err == nil {
		t.Fatal("second Enqueue with the same id succeeded")
	}
	s, err := q.Show(a.ID)
	if err != nil || s.Recipients()[0] != "a@x.example" {
		t.Errorf("first entry after the collision: %v %v", s, err)
	}
	if n, _ := q.Usage(""); n != 1 {
		t.Errorf("usage %d", n)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestGroupCommitShares: Enqueue calls running together share the
// directory fsyncs of active/ and the syncfs calls that make their files
// durable (fewer of each than messages), and a failing shared sync
// fails every Enqueue of its batch and leaves none of their files.
func TestGroupCommitShares(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   writeOp
	}{{"directory fsync", opSyncDir}, {"syncfs", opSyncFS}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 16
			var mu sync.Mutex
			syncs, fail := 0, false
			dir := t.TempDir()
			q := openTest(t, dir, Options{fault: func(op writeOp, path string) error {
				if op != tc.op || (op == opSyncDir && !strings.HasSuffix(path, activeDir)) {
					return nil
				}
				mu.Lock()
				syncs++
				f := fail
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // a slow disk: the next callers queue up
				if f {
					return syscall.EIO
				}
				return nil
			}})
			mu.Lock()
			syncs = 0
			mu.Unlock()
			run := func() []error {
				errs := make([]error, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() {
						_, errs[i] = q.Enqueue(testMessage("acme", "a@x.example"))
					})
				}
				wg.Wait()
				return errs
			}
			for _, err := range run() {
				if err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			got := syncs
			mu.Unlock()
			if got < 1 || got >= n {
				t.Errorf("%d syncs for %d concurrent Enqueue calls, want shared (1..%d)", got, n, n-1)
			}
			if l := q.List(""); len(l) != n {
				t.Fatalf("%d entries listed", len(l))
			}

			mu.Lock()
			fail = true
			mu.Unlock()
			for i, err := range run() {
				if !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.EIO) {
					t.Errorf("Enqueue %d with a failing sync: %v", i, err)
				}
			}
			if got := dirNames(t, filepath.Join(dir, activeDir)); len(got) != n {
				t.Errorf("active/ has %d files after the failed batch, want the %d of the first", len(got), n)
			}
			if got := dirNames(t, filepath.Join(dir, incomingDir)); len(got) != 0 {
				t.Errorf("incoming/ after the failed batch: %v", got)
			}
			if m, _ := q.Usage(""); m != n {
				t.Errorf("%d messages counted", m)
			}
		})
	}
}

// TestRenameOnlyAfterASyncfsOfItsWrite: with SyncFileSystem, a file is
// renamed into active/ only after a syncfs that started after the file
// was written has returned; with SyncFile there is no syncfs (each file
// has its own fsync) and entries survive a reopen the same.
func TestRenameOnlyAfterASyncfsOfItsWrite(t *testing.T) {
	var mu sync.Mutex
	started, finished := 0, 0 // syncfs calls
	writtenAt := map[string]int{}
	var bad []string
	dir := t.TempDir()
	q := openTest(t, dir, Options{fault: func(op writeOp, path string) error {
		mu.Lock()
		defer mu.Unlock()
		switch op {
		case opWrite:
			writtenAt[path] = started
		case opSyncFS:
			started++
			mu.Unlock()
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
			mu.Lock()
			finished++
		case opRename:
			if w, ok := writtenAt[path]; ok && (started <= w || finished <= w) {
				bad = append(bad, path)
			}
		}
		return nil
	}})
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if _, err := q.Enqueue(testMessage("acme", "a@x.example")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 || started == 0 || started >= 32 {
		t.Errorf("renamed before a syncfs covering the write: %v (%d syncfs for 32 messages)", bad, started)
	}

	fileDir := t.TempDir()
	var syncfs atomic.Int32
	qf := openTest(t, fileDir, Options{Sync: SyncFile, fault: func(op writeOp, _ string) error {
		if op == opSyncFS {
			syncfs.Add(1)
		}
		return nil
	}})
	e, err := qf.Enqueue(testMessage("acme", "a@x.example"))
	if err != nil {
		t.Fatal(err)
	}
	if syncfs.Load() != 0 {
		t.Errorf("SyncFile called syncfs %d times", syncfs.Load())
	}
	qf.Close()
	qf = openTest(t, fileDir, Options{Sync: SyncFile})
	if _, err := qf.Show(e.ID); err != nil {
		t.Errorf("entry after reopen: %v", err)
	}
	if _, err := Open(t.TempDir(), Options{Sync: "sometimes"}); err == nil || !strings.Contains(err.Error(), `"sometimes"`) {
		t.Errorf("unknown sync mode: %v", err)
	}
}

// TestRemovalCutAfterDataFile: a delivered entry whose removal stopped
// after its data file went is gone at the next start (its meta file, with
// the accepted requests, is never taken for a pending entry).
func TestRemovalCutAfterDataFile(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	e, err := q.Enqueue(testMessage("acme", "a@x.example", "b@x.example"))
	if err != nil {
		t.Fatal(err)
	}
	e.Requests[0].State = Accepted
	if err := q.update(e); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := os.Remove(filepath.Join(dir, activeDir, e.ID+dataSuffix)); err != nil {
		t.Fatal(err)
	}
	q2 := openTest(t, dir, Options{})
	if l := q2.List(""); len(l) != 0 {
		t.Fatalf("List = %+v", l)
	}
	if got := dirNames(t, filepath.Join(dir, activeDir)); len(got) != 0 {
		t.Errorf("active/ = %v", got)
	}
}

// TestMetaFileSupersedesMetaLine: after a state change the meta file, not
// the data file's initial line, is what a restart loads.
func TestMetaFileSupersedesMetaLine(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	e, err := q.Enqueue(testMessage("acme", "a@x.example", "b@x.example"))
	if err != nil {
		t.Fatal(err)
	}
	e.Requests[0].State, e.Requests[0].SESMessageID = Accepted, "ses-1"
	if err := q.update(e); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q2 := openTest(t, dir, Options{})
	s, err := q2.Show(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Requests[0].State != Accepted || s.Requests[0].SESMessageID != "ses-1" || s.Requests[1].State != Pending {
		t.Fatalf("loaded %+v", s.Requests)
	}
	if !bytes.Equal(s.Message(1), slices.Concat(e.Requests[1].Header, e.Body())) {
		t.Errorf("Message(1) = %q", s.Message(1))
	}
}

// TestReadsFormat1: an entry written before the meta line existed (data
// file with the header blocks and body only, meta file version 1) is
// still loaded and its message read back intact.
func TestReadsFormat1(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	m := testMessage("acme", "a@x.example")
	e, err := q.Enqueue(m)
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	act := filepath.Join(dir, activeDir)
	old := e.withoutData()
	old.Version = 1
	meta, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(act, e.ID+metaSuffix), meta, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(act, e.ID+dataSuffix), slices.Concat(m.Requests[0].Header, m.Body), 0o600); err != nil {
		t.Fatal(err)
	}
	q2 := openTest(t, dir, Options{})
	s, err := q2.Show(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Message(0), slices.Concat(m.Requests[0].Header, m.Body)) {
		t.Errorf("Message(0) = %q", s.Message(0))
	}
}

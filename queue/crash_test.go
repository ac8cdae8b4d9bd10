package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The crash tests run this test binary again as a child process
// (TestCrashHelper with QUEUE_CRASH_CHILD set) and kill it with SIGKILL at
// random moments, then check on the same directory what survived.

const crashKills = 20

// crashMessage is the deterministic content of the message tagged tag:
// 1 to 3 requests, a body of up to 64 KiB, so that kills land in the
// middle of writes as well as between them.
func crashMessage(tag string) *Message {
	h := fnv.New32a()
	h.Write([]byte(tag))
	v := h.Sum32()
	m := &Message{Tenant: "t" + fmt.Sprint(v%3), Sender: "s@example.com"}
	line := "body of " + tag + "\r\n"
	m.Body = bytes.Repeat([]byte(line), int(v%65536)/len(line)+1)
	for i := range int(v%3) + 1 {
		m.Requests = append(m.Requests, Request{
			Recipients: []string{fmt.Sprintf("r%d@example.com", i)},
			Header:     fmt.Appendf(nil, "X-Tag: %s\r\nTo: r%d@example.com\r\n\r\n", tag, i),
		})
	}
	return m
}

// tagOf reads the X-Tag of a loaded entry.
func tagOf(e *Entry) string {
	h := string(e.Requests[0].Header)
	tag, _, _ := strings.Cut(strings.TrimPrefix(h, "X-Tag: "), "\r\n")
	return tag
}

func sameMessage(e *Entry, m *Message) bool {
	if e.Tenant != m.Tenant || !bytes.Equal(e.Body(), m.Body) || len(e.Requests) != len(m.Requests) {
		return false
	}
	for i := range m.Requests {
		if !bytes.Equal(e.Requests[i].Header, m.Requests[i].Header) || e.Requests[i].Recipients[0] != m.Requests[i].Recipients[0] {
			return false
		}
	}
	return true
}

// TestCrashHelper is the child process; it does nothing in a normal run.
func TestCrashHelper(t *testing.T) {
	mode := os.Getenv("QUEUE_CRASH_CHILD")
	if mode == "" {
		return
	}
	dir := os.Getenv("QUEUE_CRASH_DIR")
	var q *Queue
	var err error
	for range 200 { // the killed predecessor's lock goes with its process
		if q, err = Open(dir, Options{}); !errors.Is(err, ErrLocked) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Stdout.WriteString("ready\n")
	switch mode {
	case "enqueue":
		for k := 0; ; k++ {
			tag := fmt.Sprintf("%d-%d", os.Getpid(), k)
			e, err := q.Enqueue(crashMessage(tag))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
			// Only now would the relay answer 250.
			os.Stdout.WriteString("queued " + e.ID + " " + tag + "\n")
		}
	case "deliver":
		rec, err := os.OpenFile(os.Getenv("QUEUE_CRASH_RECORD"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			os.Exit(4)
		}
		// The SES stand-in: "call" when a request starts, "ok" once SES
		// has it, fsynced before Deliver returns.
		r := q.NewRunner(RunnerOptions{Workers: 4, MinBackoff: time.Millisecond, Deliverer: DelivererFunc(
			func(ctx context.Context, e *Entry, req int) (string, error) {
				rec.WriteString(fmt.Sprintf("call %s/%d\n", e.ID, req))
				time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
				rec.WriteString(fmt.Sprintf("ok %s/%d\n", e.ID, req))
				if err := rec.Sync(); err != nil {
					return "", err
				}
				return "ses-" + e.ID, nil
			})})
		r.Start()
		for {
			if n, _ := q.Usage(""); n == 0 {
				r.Stop(context.Background())
				os.Exit(0)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	os.Exit(5)
}

// crashChild starts the helper, waits for "ready" and returns the child
// and a function that returns its complete stdout lines after it ended.
func crashChild(t *testing.T, env ...string) (*exec.Cmd, func() []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	ready := make(chan struct{})
	done := make(chan []string)
	go func() {
		var lines []string
		for {
			l, err := br.ReadString('\n')
			if err != nil { // a line cut by the kill is not counted
				io.Copy(io.Discard, br)
				done <- lines
				return
			}
			if l == "ready\n" {
				close(ready)
			}
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child not ready")
	}
	return cmd, func() []string { return <-done }
}

// TestCrashDuringEnqueue: a child enqueues in a loop and prints each id
// once Enqueue returned; it is killed with SIGKILL at random moments and
// restarted on the same directory. Every printed id must then be present
// and intact, and no entry may be partial.
func TestCrashDuringEnqueue(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	printed := map[string]string{} // id -> tag
	for round := range crashKills + 2 {
		cmd, lines := crashChild(t, "QUEUE_CRASH_CHILD=enqueue", "QUEUE_CRASH_DIR="+dir)
		time.Sleep(time.Duration(rand.IntN(40000)+500*round) * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()
		for _, l := range lines() {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "queued" {
				printed[f[1]] = f[2]
			}
		}
	}
	if len(printed) < crashKills {
		t.Fatalf("only %d messages queued in %d rounds", len(printed), crashKills+2)
	}
	q := openTest(t, dir, Options{})
	listed := map[string]bool{}
	for _, e := range q.List("") {
		s, err := q.Show(e.ID)
		if err != nil {
			t.Errorf("entry %s is not intact: %v", e.ID, err)
			continue
		}
		if !sameMessage(s, crashMessage(tagOf(s))) {
			t.Errorf("entry %s differs from message %q", e.ID, tagOf(s))
		}
		listed[e.ID] = true
	}
	for id, tag := range printed {
		if !listed[id] {
			t.Errorf("message %s (%s) was acknowledged and is lost", id, tag)
		}
	}
	if n := dirNames(t, filepath.Join(dir, activeDir)); len(n) != len(listed) {
		t.Errorf("active/ has %d files for %d entries (one data file each)", len(n), len(listed))
	}
	if n := dirNames(t, filepath.Join(dir, incomingDir)); len(n) != 0 {
		t.Errorf("incoming/ after Open: %v", n)
	}
	t.Logf("%d kills, %d acknowledged, %d on disk", crashKills+2, len(printed), len(listed))
}

// TestCrashDuringDelivery: a child delivers to an SES stand-in that logs
// every call to a file; it is killed at random moments and restarted.
// After each kill the requests marked accepted on disk are noted: none may
// be called again. In the end every request reached SES, and duplicates
// are at most the calls in flight at the kills.
func TestCrashDuringDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	dir := t.TempDir()
	record := filepath.Join(t.TempDir(), "ses.log")
	all := map[string]bool{} // "id/req"
	enqueue := func(n int) {
		q := openTest(t, dir, Options{})
		for range n {
			e, err := q.Enqueue(crashMessage(fmt.Sprint(rand.Int64())))
			if err != nil {
				t.Fatal(err)
			}
			for i := range e.Requests {
				all[fmt.Sprintf("%s/%d", e.ID, i)] = true
			}
		}
		q.Close()
	}
	enqueue(150)

	readLog := func() []string {
		b, _ := os.ReadFile(record)
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	done := map[string]bool{}      // accepted on disk, or entry delivered
	mayRepeat := map[string]bool{} // accepted by SES, not on disk at a kill
	kills, bound, offset := 0, 0, 0
	for round := 0; ; round++ {
		if round > 200 {
			t.Fatal("no end")
		}
		env := []string{"QUEUE_CRASH_CHILD=deliver", "QUEUE_CRASH_DIR=" + dir, "QUEUE_CRASH_RECORD=" + record}
		cmd, lines := crashChild(t, env...)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		killed := false
		if kills < crashKills {
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("child: %v", err)
				}
			case <-time.After(time.Duration(rand.IntN(30000)+2000) * time.Microsecond):
				cmd.Process.Kill()
				<-exited
				killed = true
			}
		} else if err := <-exited; err != nil {
			t.Fatalf("last child: %v", err)
		}
		lines()
		log := readLog()
		calls := 0
		okInRound := map[string]bool{}
		for _, l := range log[offset:] {
			if r, ok := strings.CutPrefix(l, "call "); ok {
				calls++
				if done[r] {
					t.Errorf("round %d: request %s called again after it was accepted on disk", round, r)
				}
			}
			if r, ok := strings.CutPrefix(l, "ok "); ok {
				okInRound[r] = true
			}
		}
		offset = len(log)
		if !killed {
			if kills >= crashKills {
				break
			}
			enqueue(100) // emptied too soon: more work for the next kills
			continue
		}
		kills++
		bound += min(calls, 4)
		q := openTest(t, dir, Options{})
		present := map[string]bool{}
		for _, e := range q.List("") {
			for i, r := range e.Requests {
				k := fmt.Sprintf("%s/%d", e.ID, i)
				present[k] = true
				if r.State == Accepted {
					done[k] = true
				}
			}
		}
		q.Close()
		for k := range all {
			if !present[k] {
				done[k] = true
			}
		}
		// SES has these but the disk does not say so: the only requests
		// that may be sent again, at most one per worker.
		unsaved := 0
		for k := range okInRound {
			if !done[k] {
				unsaved++
				mayRepeat[k] = true
			}
		}
		if unsaved > 4 {
			t.Errorf("kill %d: %d requests accepted by SES but not marked on disk, more than the 4 workers", kills, unsaved)
		}
	}
	oks := map[string]int{}
	for _, l := range readLog() {
		if r, ok := strings.CutPrefix(l, "ok "); ok {
			oks[r]++
		}
	}
	dups := 0
	for k := range all {
		if oks[k] == 0 {
			t.Errorf("request %s never reached SES", k)
		}
		dups += max(0, oks[k]-1)
		if oks[k] > 1 && !mayRepeat[k] {
			t.Errorf("request %s sent %d times though it was never in flight at a kill", k, oks[k])
		}
	}
	if dups > bound {
		t.Errorf("%d duplicate sends, more than the %d calls in flight at the %d kills", dups, bound, kills)
	}
	t.Logf("%d kills, %d requests, %d duplicates (bound %d)", kills, len(all), dups, bound)
}

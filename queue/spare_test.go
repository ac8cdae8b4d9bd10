package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestDeliveredFileIsReusedWhole: a delivered entry's file becomes a
// spare in incoming/ and the next entry is written over it, the same
// inode: its content is exactly the new entry (a shorter message over a
// longer spare leaves nothing of the old one), and it reads and delivers
// like any other. Spares never count as entries, and Open drops them.
func TestDeliveredFileIsReusedWhole(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	long := testMessage("acme", "a@x.example")
	long.Body = bytes.Repeat([]byte("old message line\r\n"), 200)
	a, err := q.Enqueue(long)
	if err != nil {
		t.Fatal(err)
	}
	ino := inode(t, q.path(false, a.ID, dataSuffix))
	ses := &fakeSES{}
	r := startRunner(t, q, RunnerOptions{Deliverer: ses, Workers: 1})
	waitFor(t, "first delivery", func() bool { n, _ := q.Usage(""); return n == 0 })
	inc := dirNames(t, filepath.Join(dir, incomingDir))
	if len(inc) != 1 || !strings.HasPrefix(inc[0], "spare-") {
		t.Fatalf("incoming/ after delivery: %v, want one spare", inc)
	}
	if names := dirNames(t, filepath.Join(dir, activeDir)); len(names) != 0 {
		t.Fatalf("active/ after delivery: %v", names)
	}
	r.Stop(t.Context())

	short := testMessage("acme", "b@x.example")
	b, err := q.Enqueue(short)
	if err != nil {
		t.Fatal(err)
	}
	path := q.path(false, b.ID, dataSuffix)
	if got := inode(t, path); got != ino {
		t.Errorf("second entry in inode %d, want the spare %d", got, ino)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("old message")) || int64(len(data)) != b.off+b.Size {
		t.Errorf("reused file has %d bytes (want %d) or old content:\n%q", len(data), b.off+b.Size, data)
	}
	s, err := q.Show(b.ID)
	if err != nil || !bytes.Equal(s.Body(), short.Body) || s.Recipients()[0] != "b@x.example" {
		t.Fatalf("Show of the entry in a reused file: %v, %v", s, err)
	}
	if len(dirNames(t, filepath.Join(dir, incomingDir))) != 0 {
		t.Error("spare still in incoming/ after it was taken")
	}

	// A spare left behind is not an entry after a restart.
	q.Close()
	os.WriteFile(filepath.Join(dir, incomingDir, "spare-99"), []byte("junk"), 0o600)
	q2 := openTest(t, dir, Options{})
	if n, _ := q2.Usage(""); n != 1 || len(dirNames(t, filepath.Join(dir, incomingDir))) != 0 {
		t.Errorf("after reopen: %d entries, incoming/ %v", n, dirNames(t, filepath.Join(dir, incomingDir)))
	}
}

// TestSparesAreBounded: large files are deleted, not kept, and the pool
// never holds more than maxSpares files.
func TestSparesAreBounded(t *testing.T) {
	dir := t.TempDir()
	q := openTest(t, dir, Options{})
	big := filepath.Join(dir, activeDir, "big")
	os.WriteFile(big, make([]byte, spareMaxSize+1), 0o600)
	if err := q.discard(big); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(big); !os.IsNotExist(err) || len(q.spares) != 0 {
		t.Fatalf("a file over spareMaxSize: %v, spares %d", err, len(q.spares))
	}
	for i := range maxSpares + 5 {
		p := filepath.Join(dir, activeDir, "f"+string(rune('a'+i%26))+strings.Repeat("x", i/26))
		os.WriteFile(p, []byte("x"), 0o600)
		if err := q.discard(p); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(dirNames(t, filepath.Join(dir, incomingDir))); n != maxSpares || len(q.spares) != maxSpares {
		t.Errorf("%d spare files, %d in the pool; want %d", n, len(q.spares), maxSpares)
	}
	if n := len(dirNames(t, filepath.Join(dir, activeDir))); n != 0 {
		t.Errorf("%d files left in active/", n)
	}
}

// TestEnqueueNeverReplacesAFile: an id whose data file exists on disk
// without being indexed (an unreadable entry left for the operator) is
// not overwritten; Enqueue takes another id.
func TestEnqueueNeverReplacesAFile(t *testing.T) {
	dir := t.TempDir()
	ids := []string{"taken", "free"}
	q := openTest(t, dir, Options{NewID: func() string { id := ids[0]; ids = ids[1:]; return id }})
	taken := q.path(false, "taken", dataSuffix)
	if err := os.WriteFile(taken, []byte("operator's evidence"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := q.Enqueue(testMessage("acme", "a@x.example"))
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != "free" {
		t.Errorf("id %q, want free", e.ID)
	}
	if b, _ := os.ReadFile(taken); string(b) != "operator's evidence" {
		t.Errorf("the existing file was replaced: %q", b)
	}
	if len(dirNames(t, filepath.Join(dir, incomingDir))) != 0 {
		t.Error("temporary file left in incoming/")
	}
}

// TestRemovalSyncJoinsOthersOrRunsSoon: the directory fsync after a
// removal (syncLater) is skipped when another fsync of the directory
// started after it, runs on its own within laterDelay otherwise, and
// runs at once when the queue closes.
func TestRemovalSyncJoinsOthersOrRunsSoon(t *testing.T) {
	var syncs atomic.Int32
	q := openTest(t, t.TempDir(), Options{fault: func(op writeOp, path string) error {
		if op == opSyncDir && strings.HasSuffix(path, activeDir) {
			syncs.Add(1)
		}
		return nil
	}})
	c := q.commits[0]
	syncs.Store(0) // Open's own

	c.syncLater()
	if err := c.sync(); err != nil { // an Enqueue's fsync, after the removal
		t.Fatal(err)
	}
	time.Sleep(3 * laterDelay)
	if n := syncs.Load(); n != 1 {
		t.Errorf("removal then another fsync: %d fsyncs, want 1 (shared)", n)
	}

	syncs.Store(0)
	c.syncLater()
	c.syncLater()
	for deadline := time.Now().Add(5 * time.Second); syncs.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(3 * laterDelay) // and no second one
	if n := syncs.Load(); n != 1 {
		t.Errorf("removals alone: %d fsyncs after %v, want 1", n, 3*laterDelay)
	}

	syncs.Store(0)
	c.syncLater()
	t0 := time.Now()
	q.Close()
	if n, d := syncs.Load(), time.Since(t0); n != 1 || d >= laterDelay {
		t.Errorf("Close with a pending removal: %d fsyncs in %v, want 1 at once", n, d)
	}
}

package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Names inside the queue directory.
const (
	incomingDir = "incoming"
	activeDir   = "active"
	deadDir     = "dead"
	lockName    = "lock"
	metaSuffix  = ".meta"
	dataSuffix  = ".data"
)

// writeOp names a file-system step that can fail; tests inject failures
// (ENOSPC, EIO) at each of them through Options.fault.
type writeOp string

const (
	opCreate  writeOp = "create"
	opWrite   writeOp = "write"
	opSync    writeOp = "sync"
	opRename  writeOp = "rename"
	opLink    writeOp = "link"
	opSyncDir writeOp = "syncdir"
)

func (q *Queue) fail(op writeOp, path string) error {
	if q.fault == nil {
		return nil
	}
	if err := q.fault(op, path); err != nil {
		return &os.PathError{Op: string(op), Path: path, Err: err}
	}
	return nil
}

// writeDurable writes chunks to a temporary file in incoming/, fsyncs it
// and renames it to final. The caller fsyncs final's directory. On error
// nothing is left under either name's directory by this call.
func (q *Queue) writeDurable(final string, chunks ...[]byte) (err error) {
	if err := q.fail(opCreate, final); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Join(q.dir, incomingDir), "tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	for _, c := range chunks {
		if err := q.fail(opWrite, final); err != nil {
			return err
		}
		if _, err := f.Write(c); err != nil {
			return err
		}
	}
	if err := q.fail(opSync, final); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := q.fail(opRename, final); err != nil {
		return err
	}
	return os.Rename(tmp, final)
}

// syncDir makes the renames and removals in dir durable.
func (q *Queue) syncDir(dir string) error {
	if err := q.fail(opSyncDir, dir); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// link makes a hard link, replacing a leftover newname.
func (q *Queue) link(oldname, newname string) error {
	if err := q.fail(opLink, newname); err != nil {
		return err
	}
	err := os.Link(oldname, newname)
	if errors.Is(err, os.ErrExist) {
		if err := os.Remove(newname); err != nil {
			return err
		}
		err = os.Link(oldname, newname)
	}
	return err
}

// lockDir takes an exclusive, non-blocking flock on dir/lock and writes
// the process id into it, so that a second process gets a clear error.
// The kernel drops the lock when the process dies, however it dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := ""
			if b, rerr := os.ReadFile(path); rerr == nil && len(b) > 0 {
				holder = " (process " + string(trimNL(b)) + ")"
			}
			return nil, fmt.Errorf("%w: %s is locked by another process%s; two processes must never use one queue directory", ErrLocked, dir, holder)
		}
		return nil, fmt.Errorf("queue: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// dirCommit shares one directory fsync among concurrent callers (group
// commit). A caller's rename or removal is done before it calls sync; it
// joins the batch that has not started its fsync yet, and returns when an
// fsync that started after its call has finished. So every caller still
// waits for a directory fsync that covers its own change, but N callers
// arriving together pay for one or two fsyncs instead of N.
type dirCommit struct {
	q   *Queue
	dir string

	mu      sync.Mutex
	cond    *sync.Cond
	running bool         // an fsync is in progress
	next    *commitBatch // callers waiting for the next fsync
}

type commitBatch struct {
	done bool
	err  error
}

func newDirCommit(q *Queue, dir string) *dirCommit {
	c := &dirCommit{q: q, dir: dir}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// sync returns once an fsync of the directory that started after this
// call has completed, with that fsync's error.
func (c *dirCommit) sync() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next == nil {
		c.next = &commitBatch{}
	}
	b := c.next
	for !b.done {
		if c.running {
			c.cond.Wait()
			continue
		}
		// Lead the batch: everyone who joined it so far is covered by
		// the fsync about to start; later callers form the next batch.
		c.running, c.next = true, nil
		c.mu.Unlock()
		err := c.q.syncDir(c.dir)
		c.mu.Lock()
		b.done, b.err, c.running = true, err, false
		c.cond.Broadcast()
	}
	return b.err
}

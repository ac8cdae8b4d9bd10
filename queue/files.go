package queue

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
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
	tmpPrefix   = "tmp-"   // in incoming/: a file being written
	sparePrefix = "spare-" // in incoming/: a spare (below)
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
	opSyncFS  writeOp = "syncfs"
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

// writeDurable writes chunks to a file in incoming/ (writeFile), makes
// it durable, and renames it to final. The caller fsyncs final's
// directory. On error nothing is left under either name's directory by
// this call. With noReplace the rename fails with an error wrapping
// os.ErrExist when final exists.
func (q *Queue) writeDurable(final string, noReplace bool, chunks ...[]byte) error {
	tmp, err := q.writeFile(final, chunks)
	if err != nil {
		return err
	}
	if q.fsCommit != nil {
		// One syncfs for every file written meanwhile (SyncFileSystem).
		err = q.fsCommit.sync()
	}
	if err == nil {
		err = q.fail(opRename, final)
	}
	if err == nil {
		if noReplace {
			err = renameNoReplace(tmp, final)
		} else {
			err = os.Rename(tmp, final)
		}
	}
	if err != nil {
		unix.Unlink(tmp)
	}
	return err
}

// writeFile writes chunks to a file in incoming/ (a spare when one is
// free, else a new temporary file) that is to become final, and returns
// its name. With SyncFile it is fsynced; with SyncFileSystem the caller
// waits for a syncfs before renaming it. On error it leaves no file.
//
// The file is handled through its descriptor alone (no os.File, whose
// poller registration costs two system calls on a regular file) and
// written with one writev: open, writev, close, plus ftruncate when a
// spare was longer, and fsync with SyncFile.
func (q *Queue) writeFile(final string, chunks [][]byte) (_ string, err error) {
	if err := q.fail(opCreate, final); err != nil {
		return "", err
	}
	fd, tmp, oldSize, err := q.openSpare()
	if err != nil {
		return "", err
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			unix.Unlink(tmp)
		}
	}()
	var n int64
	for _, c := range chunks {
		n += int64(len(c))
	}
	if err := q.fail(opWrite, final); err != nil {
		return "", err
	}
	if err := writeAll(fd, chunks); err != nil {
		return "", &os.PathError{Op: "write", Path: tmp, Err: err}
	}
	if oldSize > n {
		if err := unix.Ftruncate(fd, n); err != nil {
			return "", &os.PathError{Op: "truncate", Path: tmp, Err: err}
		}
	}
	if err := q.fail(opSync, final); err != nil {
		return "", err
	}
	if q.fsCommit == nil {
		if err := ignoringEINTR(func() error { return unix.Fsync(fd) }); err != nil {
			return "", &os.PathError{Op: "fsync", Path: tmp, Err: err}
		}
	}
	err = unix.Close(fd)
	fd = -1
	if err != nil {
		return "", &os.PathError{Op: "close", Path: tmp, Err: err}
	}
	return tmp, nil
}

// writeAll writes chunks from the file's current offset with writev,
// going on after short writes.
func writeAll(fd int, chunks [][]byte) error {
	iov := make([][]byte, 0, len(chunks))
	for _, c := range chunks {
		if len(c) > 0 {
			iov = append(iov, c)
		}
	}
	for len(iov) > 0 {
		var w int
		err := ignoringEINTR(func() (err error) {
			w, err = unix.Writev(fd, iov)
			return err
		})
		if err != nil {
			return err
		}
		if w == 0 {
			return io.ErrShortWrite
		}
		for w > 0 {
			if w >= len(iov[0]) {
				w -= len(iov[0])
				iov = iov[1:]
			} else {
				iov[0] = iov[0][w:]
				w = 0
			}
		}
	}
	return nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

// renameNoReplace renames oldpath to newpath unless newpath exists
// (renameat2 with RENAME_NOREPLACE: no window between a check and the
// rename). On a file system without it, a check then a rename.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if _, err := os.Lstat(newpath); err == nil {
			return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: os.ErrExist}
		}
		return os.Rename(oldpath, newpath)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// Spare files. A delivered entry's file is not deleted but renamed into
// incoming/ as a spare, and the next write takes it instead of creating
// a file: the same durable write (every byte written over it, then
// truncated, fsynced and renamed), without allocating and freeing an
// inode per message. On some file systems that allocation is the
// queue's main cost: ext4 without a journal scans past every inode freed
// in the last minutes on each create, and a file system mounted with
// discard trims the freed blocks at once. A spare is never read: it
// lives in incoming/, which Open empties. Only files of at most
// spareMaxSize bytes with one link are kept, at most maxSpares of them,
// so spares hold at most 16 MiB of disk.
const (
	maxSpares    = 256
	spareMaxSize = 64 << 10
)

type spare struct {
	path string
	size int64
}

// openSpare opens a spare for writing from its first byte, or creates a
// temporary file in incoming/. size is the spare's current length.
func (q *Queue) openSpare() (fd int, path string, size int64, err error) {
	q.spareMu.Lock()
	var sp spare
	if k := len(q.spares); k > 0 {
		sp, q.spares = q.spares[k-1], q.spares[:k-1]
	}
	q.spareMu.Unlock()
	if sp.path != "" {
		fd, err := unix.Open(sp.path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			return fd, sp.path, sp.size, nil
		}
		unix.Unlink(sp.path)
	}
	inc := filepath.Join(q.dir, incomingDir)
	for range 10 {
		path := filepath.Join(inc, tmpPrefix+strconv.FormatUint(q.tmpSeq.Add(1), 10))
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return fd, path, 0, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return -1, "", 0, &os.PathError{Op: "create", Path: path, Err: err}
		}
	}
	return -1, "", 0, fmt.Errorf("queue: no free temporary name in %s", inc)
}

// discard takes path out of its directory: renamed into incoming/ as a
// spare when it qualifies and the pool has room, else deleted. Either
// way path no longer exists when it returns nil.
func (q *Queue) discard(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Nlink == 1 && st.Mode&unix.S_IFMT == unix.S_IFREG {
		return q.recycle(path, st.Size)
	}
	return removeIfExists(path)
}

// recycle takes path, a regular file of size bytes with one link, out of
// its directory: renamed into incoming/ as a spare when it is small
// enough and the pool has room, else deleted.
func (q *Queue) recycle(path string, size int64) error {
	if size <= spareMaxSize {
		q.spareMu.Lock()
		if len(q.spares) < maxSpares {
			name := filepath.Join(q.dir, incomingDir, sparePrefix+strconv.FormatUint(q.tmpSeq.Add(1), 10))
			// unix.Rename: os.Rename would lstat name first.
			if err := unix.Rename(path, name); err == nil {
				q.spares = append(q.spares, spare{name, size})
				q.spareMu.Unlock()
				return nil
			}
		}
		q.spareMu.Unlock()
	}
	return removeIfExists(path)
}

func removeIfExists(path string) error {
	err := unix.Unlink(path)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return &os.PathError{Op: "remove", Path: path, Err: err}
}

// syncFS writes out everything written to the queue's file system
// (syncfs(2): data and metadata of every file, then the device cache
// flush, as fsync does for one file).
func (q *Queue) syncFS() error {
	if err := q.fail(opSyncFS, q.dir); err != nil {
		return err
	}
	if err := ignoringEINTR(func() error { return unix.Syncfs(q.fsfd) }); err != nil {
		return &os.PathError{Op: "syncfs", Path: q.dir, Err: err}
	}
	return nil
}

// syncDir makes the renames and removals in dir durable.
func (q *Queue) syncDir(dir string) error {
	if err := q.fail(opSyncDir, dir); err != nil {
		return err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := ignoringEINTR(func() error { return unix.Fsync(fd) }); err != nil {
		return &os.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
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

// groupCommit shares one sync (a directory fsync, or a syncfs of the
// queue's file system) among concurrent callers. A caller's write,
// rename or removal is done before it calls sync; it joins the batch
// that has not started its sync yet, and returns when a sync that
// started after its call has finished. So every caller still waits for a
// sync that covers its own change, but N callers arriving together pay
// for one or two syncs instead of N.
type groupCommit struct {
	q    *Queue
	what string       // for logs: the directory, or "file system"
	do   func() error // the sync

	mu      sync.Mutex
	cond    *sync.Cond
	running bool         // a sync is in progress
	next    *commitBatch // callers waiting for the next sync

	// Syncs are numbered from 1 as they start; completed is the number
	// of the last one that finished (they run one at a time).
	started, completed uint64
	later              bool   // syncLater has a goroutine waiting
	laterGen           uint64 // started when syncLater was last called
}

type commitBatch struct {
	done bool
	err  error
}

// newDirCommit shares fsyncs of dir.
func newDirCommit(q *Queue, dir string) *groupCommit {
	return newGroupCommit(q, dir, func() error { return q.syncDir(dir) })
}

func newGroupCommit(q *Queue, what string, do func() error) *groupCommit {
	c := &groupCommit{q: q, what: what, do: do}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// sync returns once a sync that started after this call has completed,
// with that sync's error.
func (c *groupCommit) sync() error {
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
		// the sync about to start; later callers form the next batch.
		c.running, c.next = true, nil
		c.started++
		n := c.started
		c.mu.Unlock()
		err := c.do()
		c.mu.Lock()
		if err == nil {
			c.completed = n
		}
		b.done, b.err, c.running = true, err, false
		c.cond.Broadcast()
	}
	return b.err
}

// syncLater makes the changes done before the call durable soon,
// without waiting: within laterDelay a sync that started after the call
// has run, either one that other callers needed anyway (Enqueue calls
// share the directory fsyncs of active/ with the removals) or, if none
// did, one of its own. Used for removals of delivered entries, where
// waiting would only delay the worker: if the fsync is lost to a power
// failure, the entry is sent again (at least once), and a process crash
// cannot lose it (the kernel has the change). Close runs the pending
// sync at once.
func (c *groupCommit) syncLater() {
	c.mu.Lock()
	c.laterGen = c.started // a sync numbered above this one covers the change
	pending := c.later
	c.later = true
	c.mu.Unlock()
	if pending {
		return
	}
	c.q.bg.Go(func() {
		t := time.NewTimer(laterDelay)
		select {
		case <-t.C:
		case <-c.q.closing:
			t.Stop()
		}
		c.mu.Lock()
		c.later = false
		covered := c.completed > c.laterGen
		c.mu.Unlock()
		if covered {
			return
		}
		if err := c.sync(); err != nil {
			c.q.m.writeErrors.Inc()
			c.q.log.Error("queue: directory fsync after removals failed; delivered entries may be sent again after a power loss",
				zap.String("dir", c.what), zap.Error(err))
		}
	})
}

// laterDelay bounds how long a removal waits for a directory fsync.
const laterDelay = 100 * time.Millisecond

// entryCommit is the commit of new entries, one batch at a time: the
// callers of the moment hand over their written files; the first of them
// leads the batch: one syncfs for all the files (SyncFileSystem), every
// rename into active/ (never replacing a file), then one fsync of
// active/ (shared with other writers of active/), and wakes them all.
// The next batch's syncfs may start while this one's directory fsync
// runs. Compared with each caller renaming its own file after the
// syncfs, the whole batch is in one directory fsync: no caller that woke
// a little late waits for a second one.
type entryCommit struct {
	q *Queue

	mu      sync.Mutex
	cond    *sync.Cond
	running bool // a leader is syncing and renaming
	next    *entryBatch
}

type entryBatch struct {
	files []*pendingFile
	done  bool
}

type pendingFile struct {
	tmp, final string
	err        error
}

func newEntryCommit(q *Queue) *entryCommit {
	c := &entryCommit{q: q}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// commit makes tmp durable, renames it to final (in active/) without
// replacing a file, and fsyncs active/; it returns when all of that is
// done for its file, by itself or by the leader of its batch. On error
// tmp is gone, and final too unless the error wraps os.ErrExist (then
// final is another file, left alone).
func (c *entryCommit) commit(tmp, final string) error {
	p := &pendingFile{tmp: tmp, final: final}
	c.mu.Lock()
	if c.next == nil {
		c.next = &entryBatch{}
	}
	b := c.next
	b.files = append(b.files, p)
	for !b.done {
		if c.running || c.next != b {
			c.cond.Wait()
			continue
		}
		c.running, c.next = true, nil
		c.mu.Unlock()
		c.lead(b)
		c.mu.Lock()
		b.done = true
		c.cond.Broadcast()
	}
	c.mu.Unlock()
	return p.err
}

// lead commits batch b; it is called without c.mu and clears running
// once the renames are done, so that the next batch can start.
func (c *entryCommit) lead(b *entryBatch) {
	q := c.q
	var err error
	if q.fsCommit != nil {
		err = q.fsCommit.sync()
	}
	renamed := 0
	for _, p := range b.files {
		p.err = err
		if p.err == nil {
			p.err = q.fail(opRename, p.final)
		}
		if p.err == nil {
			p.err = renameNoReplace(p.tmp, p.final)
		}
		if p.err != nil {
			unix.Unlink(p.tmp)
			continue
		}
		renamed++
	}
	c.mu.Lock()
	c.running = false
	c.cond.Broadcast()
	c.mu.Unlock()
	if renamed == 0 {
		return
	}
	if err := q.commitDir(false); err != nil {
		for _, p := range b.files {
			if p.err == nil {
				p.err = err
				unix.Unlink(p.final)
			}
		}
	}
}

package queue

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrFull: a global or per-tenant limit would be exceeded; the
	// message was not queued (SMTP 452 4.3.1).
	ErrFull = errors.New("queue full")
	// ErrWrite: the file system refused a write (ENOSPC, EIO, read-only,
	// permissions); the message was not queued and nothing of it is left
	// visible (SMTP 452 4.3.1).
	ErrWrite = errors.New("queue write failed")
	// ErrLocked: another process holds the queue directory.
	ErrLocked = errors.New("queue directory in use")
	// ErrNotFound: no entry has this id.
	ErrNotFound = errors.New("no such queue entry")
	// ErrBusy: the entry is being delivered right now.
	ErrBusy = errors.New("queue entry is being delivered")
	// ErrClosed: the queue was closed.
	ErrClosed = errors.New("queue closed")
)

// Limits bound the active entries (dead ones are not counted). Zero means
// no limit.
type Limits struct {
	MaxBytes    int64
	MaxMessages int
}

// Options configure a Queue. The zero value is usable.
type Options struct {
	// Limits apply to all tenants together, TenantLimits to each named
	// tenant alone (a tenant not named has no limit of its own).
	Limits       Limits
	TenantLimits map[string]Limits

	// Registerer receives the queue metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	Logger     *zap.Logger

	// Now and NewID default to time.Now and a time-ordered random id.
	Now   func() time.Time
	NewID func() string

	// Sync is how a new file is made durable before its rename:
	// SyncFileSystem (the default) or SyncFile.
	Sync SyncMode

	// fault, in tests, makes a file-system step fail.
	fault func(op writeOp, path string) error
}

// SyncMode chooses how Enqueue makes a written file durable.
type SyncMode string

const (
	// SyncFileSystem: the files written by concurrent callers are made
	// durable by one syncfs(2) of the queue's file system, shared by all
	// of them (group commit), instead of one fsync each. On a file
	// system of its own (a volume per replica) that is the queue's
	// files alone; on a shared one the syncfs also writes out what other
	// programs wrote, which can make it slower than SyncFile.
	SyncFileSystem SyncMode = "filesystem"
	// SyncFile: fsync each file (Postfix's way), cost independent of
	// what else uses the file system.
	SyncFile SyncMode = "file"
)

// Message is what Enqueue stores: one accepted message, its body once,
// and per SES request its recipients and header block.
type Message struct {
	Tenant string
	Sender string // envelope sender, "" for <>
	SES    SES
	// DKIMDomain: see Entry.DKIMDomain.
	DKIMDomain string
	Requests   []Request // Recipients and Header; the state fields are ignored
	Body       []byte
	// Created defaults to now.
	Created time.Time
}

// Queue is a directory of entries that survives crashes. Only one
// process may open a directory at a time (an flock on dir/lock). All
// methods are safe for concurrent use.
type Queue struct {
	dir   string
	log   *zap.Logger
	now   func() time.Time
	newID func() string
	fault func(op writeOp, path string) error
	m     *metrics
	lock  *os.File

	mu           sync.Mutex
	closed       bool
	limits       Limits
	tenantLimits map[string]Limits
	items        map[string]*item
	usage        map[string]*usage // active entries per tenant
	total        usage
	dead         map[string]int // dead entries per tenant
	wake         chan struct{}

	// commits share directory fsyncs among concurrent writers:
	// [0] active/, [1] dead/.
	commits [2]*groupCommit
	// fsCommit shares syncfs calls among writers (SyncFileSystem); nil
	// with SyncFile. fsfd is the queue directory, the handle of syncfs.
	fsCommit *groupCommit
	fsfd     int
	// entries commits new entries in batches (files.go).
	entries *entryCommit

	// bg: background directory fsyncs (groupCommit.syncLater), waited
	// for by Close; closing is closed by Close to run them at once.
	bg      sync.WaitGroup
	closing chan struct{}

	// spares: files in incoming/ ready to be written over (files.go).
	spareMu sync.Mutex
	spares  []spare
	tmpSeq  atomic.Uint64 // names in incoming/
}

type item struct {
	e    *Entry // without data; replaced, never modified, after each write
	busy bool   // claimed by a delivery worker
}

type usage struct {
	messages int
	bytes    int64
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

// Open opens (creating it if needed) the queue in dir, takes its lock,
// deletes the temporary files a crash left in incoming/ and loads the
// entries of active/ and dead/. A half-written entry is removed.
func Open(dir string, o Options) (*Queue, error) {
	if dir == "" {
		return nil, errors.New("queue: no directory")
	}
	for _, d := range []string{dir, filepath.Join(dir, incomingDir), filepath.Join(dir, activeDir), filepath.Join(dir, deadDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("queue: %w", err)
		}
	}
	switch o.Sync {
	case "", SyncFileSystem, SyncFile:
	default:
		return nil, fmt.Errorf("queue: unknown sync mode %q", o.Sync)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	fsfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("queue: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer func() {
		if err != nil {
			unix.Close(fsfd)
		}
	}()
	q := &Queue{
		dir:          dir,
		log:          o.Logger,
		now:          o.Now,
		newID:        o.NewID,
		fault:        o.fault,
		lock:         lock,
		fsfd:         fsfd,
		limits:       o.Limits,
		tenantLimits: o.TenantLimits,
		items:        map[string]*item{},
		usage:        map[string]*usage{},
		dead:         map[string]int{},
		wake:         make(chan struct{}, 1),
		closing:      make(chan struct{}),
	}
	if q.log == nil {
		q.log = zap.NewNop()
	}
	if q.now == nil {
		q.now = time.Now
	}
	if q.newID == nil {
		q.newID = newID
	}
	q.commits[0] = newDirCommit(q, q.dirOf(false))
	q.commits[1] = newDirCommit(q, q.dirOf(true))
	if o.Sync != SyncFile {
		q.fsCommit = newGroupCommit(q, "file system", q.syncFS)
	}
	q.entries = newEntryCommit(q)
	if q.m, err = newMetrics(q, o.Registerer); err != nil {
		lock.Close()
		return nil, fmt.Errorf("queue: metrics: %w", err)
	}
	if err = q.load(); err != nil {
		q.m.unregister()
		lock.Close()
		return nil, err
	}
	return q, nil
}

// Close releases the lock. Stop the Runner first.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	close(q.closing)
	q.mu.Unlock()
	q.bg.Wait()
	q.mu.Lock()
	q.m.unregister()
	unix.Close(q.fsfd)
	return q.lock.Close()
}

// Dir is the queue directory.
func (q *Queue) Dir() string { return q.dir }

// SetLimits replaces the limits (a configuration reload). Entries already
// queued stay even when they exceed the new limits.
func (q *Queue) SetLimits(global Limits, tenants map[string]Limits) {
	q.mu.Lock()
	q.limits, q.tenantLimits = global, tenants
	q.mu.Unlock()
}

// newID is 12 hex digits of milliseconds since the epoch then 10 random
// hex digits: ids sort by arrival, and two ids of one millisecond collide
// with odds of one in 2^40.
func newID() string {
	var b [11]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

func (q *Queue) path(dead bool, id, suffix string) string {
	d := activeDir
	if dead {
		d = deadDir
	}
	return filepath.Join(q.dir, d, id+suffix)
}

// commitDir makes the renames and removals done so far in active/ or
// dead/ durable, sharing the fsync with concurrent callers.
func (q *Queue) commitDir(dead bool) error {
	if dead {
		return q.commits[1].sync()
	}
	return q.commits[0].sync()
}

func (q *Queue) dirOf(dead bool) string {
	if dead {
		return filepath.Join(q.dir, deadDir)
	}
	return filepath.Join(q.dir, activeDir)
}

// Enqueue stores m durably: when it returns nil, its data file (the
// initial meta line, the header blocks and the body) is written, fsynced,
// renamed into active/ and active/ is fsynced (an fsync shared with the
// Enqueue calls running at the same time), so the message survives a
// crash or a power loss and the caller may answer 250. The error wraps ErrFull or ErrWrite (nothing was stored) or
// describes a malformed Message. The returned entry has its data.
func (q *Queue) Enqueue(m *Message) (*Entry, error) {
	if m.Tenant == "" {
		return nil, errors.New("queue: message without tenant")
	}
	if len(m.Requests) == 0 {
		return nil, errors.New("queue: message without requests")
	}
	now := q.now()
	e := &Entry{
		Tenant:      m.Tenant,
		Sender:      m.Sender,
		SES:         m.SES,
		DKIMDomain:  m.DKIMDomain,
		Created:     m.Created,
		Queued:      now,
		NextAttempt: now,
		Version:     metaVersion,
		Seq:         1,
		BodySize:    int64(len(m.Body)),
	}
	e.SES.Tags = slices.Clone(m.SES.Tags)
	if e.Created.IsZero() {
		e.Created = now
	}
	h := sha256.New()
	chunks := make([][]byte, 1, len(m.Requests)+2) // [0]: the meta line
	for i, r := range m.Requests {
		if len(r.Recipients) == 0 {
			return nil, fmt.Errorf("queue: request %d has no recipients", i)
		}
		e.Requests = append(e.Requests, Request{
			Recipients: slices.Clone(r.Recipients),
			Header:     r.Header,
			State:      Pending,
			HeaderSize: int64(len(r.Header)),
		})
		chunks = append(chunks, r.Header)
		h.Write(r.Header)
		e.Size += int64(len(r.Header))
	}
	chunks = append(chunks, m.Body)
	h.Write(m.Body)
	e.Size += int64(len(m.Body))
	e.SHA256 = hex.EncodeToString(h.Sum(nil))
	e.body = m.Body
	if e.body == nil {
		e.body = []byte{}
	}

	err := q.reserve(e.Tenant, e.Size)
	if err != nil {
		return nil, err
	}
	// The rename into active/ never replaces a file (writeEntry): an id
	// that turns out to be taken on disk costs another try.
	for try := 1; ; try++ {
		if e.ID, err = q.freshID(); err != nil {
			q.unreserve(e.Tenant, e.Size)
			return nil, err
		}
		var meta []byte
		if meta, err = json.Marshal(e); err != nil {
			break
		}
		// JSON has no raw newline: the first newline ends the meta line.
		chunks[0] = append(meta, '\n')
		e.off = int64(len(chunks[0]))
		err = q.writeEntry(e, chunks)
		if !errors.Is(err, os.ErrExist) || try == 10 {
			break
		}
	}
	if err != nil {
		q.unreserve(e.Tenant, e.Size)
		q.m.writeErrors.Inc()
		q.log.Error("queue write failed", zap.String("tenant", e.Tenant), zap.Error(err))
		return nil, fmt.Errorf("%w: %w", ErrWrite, err)
	}
	q.mu.Lock()
	q.items[e.ID] = &item{e: e.withoutData()}
	q.mu.Unlock()
	q.m.enqueued.WithLabelValues(e.Tenant).Inc()
	q.poke()
	return e.clone(), nil
}

// freshID returns a well-formed id no indexed entry has. A file the
// index does not know (an unreadable entry left for the operator) is
// protected by the rename that never replaces (writeEntry).
func (q *Queue) freshID() (string, error) {
	for range 10 {
		id := q.newID()
		if !idRE.MatchString(id) {
			return "", fmt.Errorf("queue: bad generated id %q", id)
		}
		q.mu.Lock()
		_, taken := q.items[id]
		q.mu.Unlock()
		if !taken {
			return id, nil
		}
	}
	return "", errors.New("queue: no unused id after 10 tries")
}

// writeEntry writes the data file, whose first line is the entry's
// initial meta (its presence in active/ makes the entry exist), and
// commits it with the writers of the moment (entryCommit): a share of
// one syncfs (or its own fsync with SyncFile) and of one directory fsync
// per message. On failure it removes the file; when a file of that name exists already, it fails with an error
// wrapping os.ErrExist and leaves that file alone.
func (q *Queue) writeEntry(e *Entry, chunks [][]byte) error {
	data := q.path(false, e.ID, dataSuffix)
	tmp, err := q.writeFile(data, chunks)
	if err != nil {
		return err
	}
	return q.entries.commit(tmp, data)
}

// reserve counts size bytes and one message for tenant, or returns an
// ErrFull error naming the limit.
func (q *Queue) reserve(tenant string, size int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	u := q.usage[tenant]
	if u == nil {
		u = &usage{}
		q.usage[tenant] = u
	}
	check := func(scope string, l Limits, u *usage) error {
		if l.MaxMessages > 0 && u.messages+1 > l.MaxMessages {
			return fmt.Errorf("%w: %s max_messages %d reached", ErrFull, scope, l.MaxMessages)
		}
		if l.MaxBytes > 0 && u.bytes+size > l.MaxBytes {
			return fmt.Errorf("%w: %s max_bytes %d would be exceeded (%d queued, message %d)", ErrFull, scope, l.MaxBytes, u.bytes, size)
		}
		return nil
	}
	if err := check("queue", q.limits, &q.total); err != nil {
		q.m.full.WithLabelValues(tenant, "global").Inc()
		return err
	}
	if err := check("tenant "+tenant, q.tenantLimits[tenant], u); err != nil {
		q.m.full.WithLabelValues(tenant, "tenant").Inc()
		return err
	}
	q.addUsageLocked(tenant, 1, size)
	return nil
}

func (q *Queue) unreserve(tenant string, size int64) {
	q.mu.Lock()
	q.addUsageLocked(tenant, -1, -size)
	q.mu.Unlock()
}

func (q *Queue) addUsageLocked(tenant string, n int, size int64) {
	u := q.usage[tenant]
	if u == nil {
		u = &usage{}
		q.usage[tenant] = u
	}
	u.messages += n
	u.bytes += size
	q.total.messages += n
	q.total.bytes += size
	q.m.messages.WithLabelValues(tenant).Set(float64(u.messages))
	q.m.bytes.WithLabelValues(tenant).Set(float64(u.bytes))
}

func (q *Queue) addDeadLocked(tenant string, n int) {
	q.dead[tenant] += n
	q.m.deadEntries.WithLabelValues(tenant).Set(float64(q.dead[tenant]))
}

// poke wakes the Runner's dispatcher.
func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// load rebuilds the index from the directory. An entry is its data file,
// whose first line is its meta as Enqueue wrote it; a meta file next to
// it, written by every later change, supersedes that line. Rules:
//   - incoming/ holds only temporary files (an Enqueue that never
//     returned): all are removed;
//   - a data file in active/ without a meta file is an entry in its
//     initial state;
//   - a meta file without its data file is the rest of a removal (the data
//     file goes first): removed; so is a data file in dead/ without a
//     meta file (a move to dead/ interrupted before its meta file was
//     written, the active copy is complete);
//   - an entry complete in both active/ and dead/ is an interrupted move:
//     the copy with the higher Seq wins, the other is removed;
//   - a meta file that does not parse, or whose data file has the wrong
//     size, is left in place, logged and skipped (never sent, never
//     deleted: an operator looks at it).
func (q *Queue) load() error {
	inc := filepath.Join(q.dir, incomingDir)
	names, err := readDirNames(inc)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	for _, n := range names {
		os.Remove(filepath.Join(inc, n))
	}
	found := map[string][2]*Entry{}
	for _, dead := range []bool{false, true} {
		dir := q.dirOf(dead)
		names, err := readDirNames(dir)
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		metas, datas := map[string]bool{}, map[string]bool{}
		for _, n := range names {
			if id, ok := strings.CutSuffix(n, metaSuffix); ok && idRE.MatchString(id) {
				metas[id] = true
			} else if id, ok := strings.CutSuffix(n, dataSuffix); ok && idRE.MatchString(id) {
				datas[id] = true
			}
		}
		for id := range metas {
			if !datas[id] {
				os.Remove(filepath.Join(dir, id+metaSuffix))
			}
		}
		for id := range datas {
			if dead && !metas[id] {
				os.Remove(filepath.Join(dir, id+dataSuffix))
				continue
			}
			e, err := q.readMeta(dead, id, metas[id])
			if err != nil {
				q.log.Error("queue entry unreadable, skipped", zap.String("id", id), zap.Error(err))
				continue
			}
			pair := found[id]
			if dead {
				pair[1] = e
			} else {
				pair[0] = e
			}
			found[id] = pair
		}
	}
	for id, pair := range found {
		e := pair[0]
		if pair[0] != nil && pair[1] != nil {
			loser := pair[0]
			e = pair[1]
			if pair[0].Seq > pair[1].Seq {
				loser, e = pair[1], pair[0]
			}
			os.Remove(q.path(loser.Dead, id, metaSuffix))
			os.Remove(q.path(loser.Dead, id, dataSuffix))
		}
		q.items[id] = &item{e: e}
		if e.Dead {
			q.addDeadLocked(e.Tenant, 1)
		} else {
			q.addUsageLocked(e.Tenant, 1, e.Size)
		}
	}
	for _, dead := range []bool{false, true} {
		if err := q.syncDir(q.dirOf(dead)); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

// readMeta reads entry id: its meta file when hasMeta, else the meta line
// of its data file; and where the payload starts in the data file.
func (q *Queue) readMeta(dead bool, id string, hasMeta bool) (*Entry, error) {
	f, err := os.Open(q.path(dead, id, dataSuffix))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	e := &Entry{}
	what := "meta file"
	if hasMeta {
		b, err := os.ReadFile(q.path(dead, id, metaSuffix))
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, e); err != nil {
			return nil, fmt.Errorf("meta file: %w", err)
		}
	}
	if !hasMeta || e.Version >= metaVersion {
		// Format 2: the data file starts with the initial meta line.
		line, err := bufio.NewReader(f).ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("data file: no meta line: %w", err)
		}
		if !hasMeta {
			what = "data file's meta line"
			if err := json.Unmarshal(line, e); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
		}
		e.off = int64(len(line))
	}
	if e.ID != id || e.Dead != dead || (e.Version != metaVersion && e.Version != 1) {
		return nil, fmt.Errorf("%s: id %q, dead %v, version %d do not match its place", what, e.ID, e.Dead, e.Version)
	}
	if st.Size() != e.off+e.Size {
		return nil, fmt.Errorf("data file has %d bytes, meta says %d after a %d-byte meta line", st.Size(), e.Size, e.off)
	}
	return e, nil
}

// readData loads e's data file into e and checks its digest.
func (q *Queue) readData(e *Entry) error {
	path := q.path(e.Dead, e.ID, dataSuffix)
	if e.off < 0 || e.Size < 0 {
		return fmt.Errorf("data file of %s: bad offsets in its meta", e.ID)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	// One byte more than the meta says: a longer file is as wrong as a
	// shorter one.
	b := make([]byte, e.Size+1)
	n := 0
	for n < len(b) {
		var k int
		err := ignoringEINTR(func() (err error) {
			k, err = unix.Pread(fd, b[n:], e.off+int64(n))
			return err
		})
		if err != nil {
			return &os.PathError{Op: "read", Path: path, Err: err}
		}
		if k == 0 {
			break
		}
		n += k
	}
	if int64(n) != e.Size {
		return fmt.Errorf("data file of %s has %d bytes after its meta line, its meta says %d", e.ID, n, e.Size)
	}
	b = b[:n]
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != e.SHA256 {
		return fmt.Errorf("data file of %s does not match its sha256", e.ID)
	}
	if !e.splitData(b) {
		return fmt.Errorf("data file of %s does not match its header and body sizes", e.ID)
	}
	return nil
}

// writeMeta replaces e's meta file in its directory (Seq grows) and
// fsyncs the directory.
func (q *Queue) writeMeta(e *Entry) error {
	e.Seq++
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := q.writeDurable(q.path(e.Dead, e.ID, metaSuffix), false, b); err != nil {
		return err
	}
	return q.commitDir(e.Dead)
}

// update persists e (a clone of an active or dead entry) and makes it the
// indexed version, even when the write fails: the index holds what is
// true (a request SES accepted is never resent by this process), the
// disk catches up with the next successful write.
func (q *Queue) update(e *Entry) error {
	err := q.writeMeta(e)
	q.mu.Lock()
	if it := q.items[e.ID]; it != nil {
		it.e = e.withoutData()
	}
	q.mu.Unlock()
	if err != nil {
		q.m.writeErrors.Inc()
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}

// move puts e (a clone, Dead already set to the destination) into the
// other directory: link the data file, write the meta file there, then
// remove the old pair. Interrupted at any point, load keeps exactly one
// complete copy.
func (q *Queue) move(e *Entry) error {
	from := !e.Dead
	err := q.link(q.path(from, e.ID, dataSuffix), q.path(e.Dead, e.ID, dataSuffix))
	if err == nil {
		err = q.writeMeta(e)
	}
	if err != nil {
		os.Remove(q.path(e.Dead, e.ID, dataSuffix))
		q.m.writeErrors.Inc()
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	q.removeFiles(from, e.ID)
	q.mu.Lock()
	if it := q.items[e.ID]; it != nil {
		it.e = e.withoutData()
	}
	if e.Dead {
		q.addUsageLocked(e.Tenant, -1, -e.Size)
		q.addDeadLocked(e.Tenant, 1)
	} else {
		q.addDeadLocked(e.Tenant, -1)
		q.addUsageLocked(e.Tenant, 1, e.Size)
	}
	q.mu.Unlock()
	return nil
}

// removeFiles takes an entry's data file out of its directory (deleted,
// or kept as a spare: discard; the entry is gone from then on), then its
// meta file, then fsyncs the directory (shared with
// concurrent writers). The data file goes first: alone, it would be the
// entry in its initial state, with requests SES already accepted pending
// again. A failure leaves at worst a meta file without data, which load
// removes.
func (q *Queue) removeFiles(dead bool, id string) error {
	if err := q.discard(q.path(dead, id, dataSuffix)); err != nil {
		return err
	}
	q.discard(q.path(dead, id, metaSuffix))
	return q.commitDir(dead)
}

// removeDelivered takes a delivered entry's files out of active/ like
// removeFiles but does not wait for the directory fsync (syncLater):
// every request of the entry was accepted, so the removal only prevents
// a resend after a power loss, and the next shared fsync covers it.
//
// e was claimed by the caller, so its data file has one link (only a
// move, done under a claim, links it twice) and the size load checked.
func (q *Queue) removeDelivered(e *Entry) error {
	if err := q.recycle(q.path(false, e.ID, dataSuffix), e.off+e.Size); err != nil {
		return err
	}
	// A meta file exists only once one was written (Seq grows with each
	// try) or in format 1. Were one left behind, Open would remove it: a
	// meta file without its data file is an interrupted removal.
	if e.Seq > 1 || e.Version < metaVersion {
		removeIfExists(q.path(false, e.ID, metaSuffix))
	}
	q.commits[0].syncLater()
	return nil
}

// forget drops a removed entry from the index and the counts.
func (q *Queue) forget(e *Entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.items[e.ID]; !ok {
		return
	}
	delete(q.items, e.ID)
	if e.Dead {
		q.addDeadLocked(e.Tenant, -1)
	} else {
		q.addUsageLocked(e.Tenant, -1, -e.Size)
	}
}

// List returns the entries of tenant ("" for all), active and dead,
// oldest first, without their data.
func (q *Queue) List(tenant string) []*Entry {
	q.mu.Lock()
	out := make([]*Entry, 0, len(q.items))
	for _, it := range q.items {
		if tenant == "" || it.e.Tenant == tenant {
			out = append(out, it.e.clone())
		}
	}
	q.mu.Unlock()
	slices.SortFunc(out, func(a, b *Entry) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Show returns entry id with its header blocks and body.
func (q *Queue) Show(id string) (*Entry, error) {
	q.mu.Lock()
	it := q.items[id]
	var e *Entry
	if it != nil {
		e = it.e.clone()
	}
	q.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err := q.readData(e); err != nil {
		return e, fmt.Errorf("queue: %w", err)
	}
	return e, nil
}

// Retry makes an active entry due now ("send now"). An entry being
// delivered is left alone.
func (q *Queue) Retry(id string) error {
	q.mu.Lock()
	it := q.items[id]
	if it == nil {
		q.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if it.e.Dead {
		q.mu.Unlock()
		return fmt.Errorf("queue: %s is dead: requeue it", id)
	}
	if it.busy {
		q.mu.Unlock()
		return nil
	}
	e := it.e.clone()
	it.busy = true // keeps workers off while the meta file is written
	q.mu.Unlock()
	e.NextAttempt = q.now()
	err := q.update(e)
	q.release(id)
	q.poke()
	return err
}

// RetryAll makes every active entry due now and returns how many.
func (q *Queue) RetryAll() (int, error) {
	q.mu.Lock()
	var ids []string
	for id, it := range q.items {
		if !it.e.Dead {
			ids = append(ids, id)
		}
	}
	q.mu.Unlock()
	n := 0
	for _, id := range ids {
		err := q.Retry(id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Delete removes an active or dead entry for good, without a DSN.
func (q *Queue) Delete(id string) error {
	e, err := q.claim(id)
	if err != nil {
		return err
	}
	if err := q.removeFiles(e.Dead, id); err != nil {
		q.release(id)
		q.m.writeErrors.Inc()
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	q.forget(e)
	return nil
}

// Requeue moves a dead entry back to active/, due now: its failed
// requests become pending again (accepted ones are never resent), its
// attempts restart from zero and max_age counts from now.
func (q *Queue) Requeue(id string) error {
	e, err := q.claim(id)
	if err != nil {
		return err
	}
	if !e.Dead {
		q.release(id)
		return fmt.Errorf("queue: %s is not dead", id)
	}
	now := q.now()
	e.Dead, e.DeadReason, e.DeadAt = false, "", time.Time{}
	e.Attempts, e.Queued, e.NextAttempt = 0, now, now
	for i := range e.Requests {
		if e.Requests[i].State == Failed {
			e.Requests[i].State, e.Requests[i].Status, e.Requests[i].Error = Pending, "", ""
		}
	}
	err = q.move(e)
	// Released before the poke: a dispatcher woken while the entry is
	// still claimed skips it and may sleep past it.
	q.release(id)
	if err != nil {
		return err
	}
	q.poke()
	return nil
}

// claim marks id busy and returns a clone of its entry.
func (q *Queue) claim(id string) (*Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	it := q.items[id]
	if it == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if it.busy {
		return nil, fmt.Errorf("%w: %s", ErrBusy, id)
	}
	it.busy = true
	return it.e.clone(), nil
}

func (q *Queue) release(id string) {
	q.mu.Lock()
	if it := q.items[id]; it != nil {
		it.busy = false
	}
	q.mu.Unlock()
}

// Check writes a small file in incoming/ and makes it durable, then keeps
// it as a spare: the readiness probe of a relay that queues.
func (q *Queue) Check() error {
	p := filepath.Join(q.dir, incomingDir, "check")
	err := q.writeDurable(p, false, []byte("ok\n"))
	q.discard(p) // kept as a spare: probes allocate no inode either
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return nil
}

// Usage returns the active messages and bytes of tenant ("" for all).
func (q *Queue) Usage(tenant string) (messages int, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if tenant == "" {
		return q.total.messages, q.total.bytes
	}
	if u := q.usage[tenant]; u != nil {
		return u.messages, u.bytes
	}
	return 0, 0
}

// oldest is the Created time of the oldest active entry (zero if none).
func (q *Queue) oldest() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	var t time.Time
	for _, it := range q.items {
		if !it.e.Dead && (t.IsZero() || it.e.Created.Before(t)) {
			t = it.e.Created
		}
	}
	return t
}

// Package queue is the relay's crash-safe store-and-forward queue: the
// durable write of Postfix and chasquid (temporary file, fsync, rename,
// directory fsync) before the 250 reply, delivery workers with Postfix's
// exponential backoff, and RFC 3464 delivery status notifications for the
// messages it finally cannot deliver (RFC 3463 status codes, RFC 3834
// Auto-Submitted, never to the RFC 5321 null sender).
//
// # Entries
//
// An entry is one accepted message, stored once whatever its number of
// recipients: a shared body and, per SES request, that request's
// recipients and header block (a per-recipient send has one request per
// recipient, each with its own unsubscribe token and DKIM signature, over
// one body). On disk an entry is one or two files named by its id:
//
//	dir/lock             flock held by the one process using dir
//	dir/incoming/        files being written, spares; all removed by Open
//	dir/active/ID.data   a meta line (JSON: tenant, sender, SES parameters,
//	                     sizes, sha256 of the rest, per-request state, as
//	                     accepted), then every header block, then the body
//	                     (immutable)
//	dir/active/ID.meta   the current meta, once it changed after acceptance
//	dir/dead/ID.{data,meta}  entries given up, until requeued or deleted
//
// Enqueue writes the data file in incoming/, makes it durable (by
// default it waits for a syncfs of the file system that started after
// its write, shared with concurrent writers; with SyncFile an fsync of
// the file), renames it into active/ without replacing any file, then
// waits for an fsync of active/ that started after its rename; only then
// does it return, and only then may the caller answer 250. Concurrent
// Enqueue calls share those syncs: the first of a batch makes all its
// files durable, renames them and fsyncs active/ once (entryCommit;
// groupCommit shares the syncs with the other writers). A
// delivered entry's file becomes a spare that a later write overwrites
// (files.go), so the steady state allocates no inode per message. The
// data file's presence in active/ is the commit
// point: it is complete before its rename, so there is no half entry. Every
// later change of an entry (attempts, a request accepted by SES, the next
// attempt) writes the meta file the same way, so a reader sees the old or
// the new state, never a mix; a meta file supersedes the data file's meta
// line. A removal takes the data file out first, then the meta file, so an
// interrupted removal leaves a meta file without data (removed by Open),
// never the acceptance state alone.
//
// Moving an entry between active/ and dead/ hard-links the data file into
// the destination, writes the meta file there, then removes the source
// pair; if a crash leaves a complete copy in both, the one with the higher
// Seq wins, and a data file in dead/ without its meta file is a move cut
// short (removed by Open: the active copy is complete).
//
// # Delivery and the at-least-once guarantee
//
// A Runner's workers take due entries and call the Deliverer once per
// pending request. When SES accepts a request its state (accepted, with
// the SES message id) is written at once, so a restart never resends it.
// A duplicate remains possible in one window only: SES accepted a request
// and the process died (or the disk failed) before that state was
// written; then the request is sent again after the restart. Duplicates
// are therefore at most the number of SES calls in flight at a crash.
//
// A transient failure (Classifier) reschedules the entry after
// min_backoff doubled per attempt plus up to half of that at random,
// capped at max_backoff. A permanent failure marks the request failed and
// the others are still tried; an entry with a failed request and none
// pending, or one older than max_age after a transient failure, moves to
// dead/ and OnDead is called (the relay sends BuildDSN's report). Workers
// wait on the same Limiter as direct sends. Runner.Stop lets in-flight
// deliveries finish until its context ends, then cancels them; the rest
// stays on disk for the next Open.
//
// Limits (max_bytes, max_messages, globally and per tenant) count active
// entries; Enqueue refuses with ErrFull beyond them and with ErrWrite when
// the file system fails, in both cases leaving nothing behind: the relay
// answers 452 4.3.1.
package queue

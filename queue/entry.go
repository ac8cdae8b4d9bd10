package queue

import (
	"bytes"
	"slices"
	"time"
)

// Tag is one SES message tag.
type Tag struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SES holds the SendEmail parameters every request of an entry carries,
// fixed when the message was accepted.
type SES struct {
	ConfigurationSet string `json:"configuration_set,omitempty"`
	Tags             []Tag  `json:"tags,omitempty"`
	IdentityARN      string `json:"identity_arn,omitempty"`
	Region           string `json:"region,omitempty"`
	EndpointID       string `json:"endpoint_id,omitempty"`
	SESTenant        string `json:"ses_tenant,omitempty"`
	DisableTracking  bool   `json:"disable_tracking,omitempty"`
}

// RequestState is where one SES request of an entry stands.
type RequestState string

// Request states. Accepted and Failed are final.
const (
	Pending  RequestState = "pending"
	Accepted RequestState = "accepted"
	Failed   RequestState = "failed"
)

// Request is one SES SendEmail call of an entry: its recipients and its
// own header block, sent followed by the entry's shared body.
type Request struct {
	Recipients []string `json:"recipients"`
	// Header is the complete header block of this request, ending with
	// the empty line that separates it from the body. It is held on disk
	// in the entry's data file: in memory it is set only on entries
	// returned by Enqueue, Show and given to a Deliverer or OnDead.
	Header []byte `json:"-"`

	State        RequestState `json:"state"`
	SESMessageID string       `json:"ses_message_id,omitempty"`
	// Status (RFC 3463) and Error describe a Failed request.
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`

	HeaderSize int64 `json:"header_size"`
}

// Entry is one accepted message and its delivery state.
type Entry struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
	// Sender is the envelope sender (MAIL FROM), "" for the null sender.
	Sender string `json:"sender"`
	SES    SES    `json:"ses"`
	// DKIMDomain is the d= of the relay's DKIM signature in the stored
	// header blocks ("" when the relay did not sign): the relay signs
	// again at send time with the tenant's key for that domain in force
	// then, so that neither an x= expiry nor a key rotation during the
	// wait breaks verification.
	DKIMDomain string `json:"dkim_domain,omitempty"`

	// Created is when the message was accepted (the DSN Arrival-Date).
	Created time.Time `json:"created"`
	// Queued starts the max_age clock: Created, or the last requeue.
	Queued      time.Time `json:"queued"`
	Attempts    int       `json:"attempts"`
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`

	// Dead is set for entries in the dead area, with the reason
	// (DeadRefused or DeadExpired) and when.
	Dead       bool      `json:"dead,omitempty"`
	DeadReason string    `json:"dead_reason,omitempty"`
	DeadAt     time.Time `json:"dead_at,omitzero"`

	Requests []Request `json:"requests"`

	BodySize int64 `json:"body_size"`
	// Size is the payload of the data file: every header block and the
	// body (without the meta line).
	Size int64 `json:"size"`
	// SHA256 is the hex digest of that payload, checked before sending.
	SHA256 string `json:"sha256"`

	// Version is the meta file format; Seq grows with every write of the
	// meta file and settles which copy wins when a move between active/
	// and dead/ was interrupted.
	Version int    `json:"version"`
	Seq     uint64 `json:"seq"`

	body []byte
	// off is where the header blocks start in the data file: after the
	// meta line (format 2), 0 in format 1.
	off int64
}

// Reasons an entry is dead.
const (
	DeadRefused    = "refused"    // SES refused a request permanently
	DeadExpired    = "expired"    // older than max_age after a transient failure
	DeadUnreadable = "unreadable" // the data file does not match its checksum
)

// metaVersion 2: the data file starts with the entry's initial meta on
// one line. Format 1 entries (data file without it, meta file always
// present) are still read.
const metaVersion = 2

// Body is the shared body, or nil when the data was not loaded.
func (e *Entry) Body() []byte { return e.body }

// Message returns the raw message of request i (its header block then the
// body) in a new slice, or nil when the data was not loaded.
func (e *Entry) Message(i int) []byte {
	if e.body == nil || i < 0 || i >= len(e.Requests) {
		return nil
	}
	h := e.Requests[i].Header
	out := make([]byte, 0, len(h)+len(e.body))
	return append(append(out, h...), e.body...)
}

// Recipients returns every recipient of the entry, in request order.
func (e *Entry) Recipients() []string {
	var out []string
	for _, r := range e.Requests {
		out = append(out, r.Recipients...)
	}
	return out
}

// clone copies e deeply enough that the caller may change it; the header
// and body bytes are shared (they are never modified).
func (e *Entry) clone() *Entry {
	c := *e
	c.SES.Tags = slices.Clone(e.SES.Tags)
	c.Requests = slices.Clone(e.Requests)
	for i := range c.Requests {
		c.Requests[i].Recipients = slices.Clone(c.Requests[i].Recipients)
	}
	return &c
}

// withoutData returns a clone of e without header and body bytes.
func (e *Entry) withoutData() *Entry {
	c := e.clone()
	c.body = nil
	for i := range c.Requests {
		c.Requests[i].Header = nil
	}
	return c
}

// splitData fills the header blocks and the body of e from its data file.
func (e *Entry) splitData(data []byte) bool {
	off := int64(0)
	for i := range e.Requests {
		n := e.Requests[i].HeaderSize
		if n < 0 || off+n > int64(len(data)) {
			return false
		}
		e.Requests[i].Header = data[off : off+n : off+n]
		off += n
	}
	if int64(len(data))-off != e.BodySize {
		return false
	}
	e.body = data[off:]
	if e.body == nil {
		e.body = []byte{}
	}
	return true
}

// pendingRecipients counts the recipients still to be sent.
func (e *Entry) pendingRecipients() int {
	n := 0
	for _, r := range e.Requests {
		if r.State == Pending {
			n += len(r.Recipients)
		}
	}
	return n
}

// OriginalHeader returns the header block of the first request, for a
// DSN's text/rfc822-headers part, or nil when the data was not loaded.
func (e *Entry) OriginalHeader() []byte {
	if len(e.Requests) == 0 {
		return nil
	}
	return bytes.Clone(e.Requests[0].Header)
}

package relay

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/policy"
)

// Session is one SMTP session (a connection has a new one after
// STARTTLS). go-smtp calls its methods from the connection's goroutine;
// only busy() is called from elsewhere (shutdown).
type Session struct {
	srv      *Server
	conn     *smtp.Conn
	tc       *trackedConn
	listener config.Listener
	log      *zap.Logger

	// Set by a successful AUTH: the snapshot and tenant the session
	// keeps until it ends, even across a reload.
	st       *state
	tenant   *policy.Tenant
	username string

	authFailures int

	mu   sync.Mutex
	inTx bool

	from     string
	rcpts    []string
	sizeHint int64

	tx txBudget // the transaction's share of the memory budget (budget.go)
}

var _ smtp.AuthSession = (*Session)(nil)

func (s *Server) newSession(c *smtp.Conn, lc config.Listener) *Session {
	tc := tracked(c.Conn())
	sess := &Session{srv: s, conn: c, tc: tc, listener: lc}
	log := s.log
	if tc != nil {
		log = tc.log
		tc.session.Store(sess)
	}
	_, isTLS := c.TLSConnectionState()
	sess.log = log.WithLazy(zap.Bool("tls", isTLS))
	return sess
}

func (sess *Session) busy() bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.inTx
}

func (sess *Session) setTx(v bool) {
	sess.mu.Lock()
	sess.inTx = v
	sess.mu.Unlock()
}

// AuthMechanisms lists PLAIN and LOGIN. go-smtp offers them only over TLS
// unless the listener allows insecure auth (then AUTH before STARTTLS
// gets 523 5.7.10).
func (sess *Session) AuthMechanisms() []string { return []string{mechPlain, mechLogin} }

// Auth starts a SASL exchange.
func (sess *Session) Auth(mech string) (sasl.Server, error) {
	if sess.tenant != nil {
		return nil, reply(503, smtp.EnhancedCode{5, 5, 1}, "Already authenticated")
	}
	switch strings.ToUpper(mech) {
	case mechPlain:
		return &plainServer{check: sess.checkCredentials}, nil
	case mechLogin:
		return &loginServer{check: sess.checkCredentials}, nil
	}
	return nil, errAuthMechanism
}

func (sess *Session) checkCredentials(identity, username, password string) error {
	st := sess.srv.snapshot()
	ac := st.cfg.Auth
	ip := sess.remoteIP()
	// A locked-out address (or an address that failed before, for a
	// username under attack) is refused before the KDF and the cache.
	ticket, locked, why, delay := sess.srv.authLimit.check(ip, username, ac.MaxFailures, ac.Lockout) // authlockout.go
	if locked {
		sess.authFailures++
		sess.srv.metrics.auth("", "locked_out")
		sess.log.Warn("auth locked out", zap.String("user", username), zap.String("lockout", why),
			zap.Int("failures", sess.authFailures), zap.Duration("delay", delay))
		time.Sleep(delay)
		return sess.authRefused(st, errAuthThrottled)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tenant, u := st.rules.TenantForUser(username)
	known := u != nil
	start := time.Now()
	ok, err := sess.srv.auth.verifyWithDummy(ctx, st, u, username, password)
	if err != nil {
		sess.srv.authLimit.abandon(ticket)
		sess.srv.metrics.auth("", "throttled")
		sess.log.Warn("auth throttled", zap.String("user", username), zap.Error(err))
		return errAuthThrottled
	}
	// An authorization identity other than the user itself would mean
	// acting for someone else: refuse it like a wrong password.
	if ok && identity != "" && identity != username {
		ok = false
	}
	if !ok {
		sess.authFailures++
		delay := sess.srv.authLimit.fail(ticket, ac.Lockout)
		sess.srv.metrics.auth("", "failure")
		sess.log.Info("auth failed", zap.String("user", username), zap.Bool("known_user", known),
			zap.Int("failures", sess.authFailures), zap.Duration("duration", time.Since(start)), zap.Duration("delay", delay))
		time.Sleep(delay)
		return sess.authRefused(st, errAuthFailed)
	}
	sess.srv.authLimit.succeed(ticket)
	if !sess.srv.tenantConns.acquire(sess, tenant.Name, tenant.Config.MaxConnections) {
		sess.srv.metrics.auth(tenant.Name, "too_many_connections")
		sess.log.Warn("auth refused", zap.String("user", username), zap.String("tenant", tenant.Name),
			zap.String("reason", "tenant_max_connections"), zap.Int("max_connections", tenant.Config.MaxConnections))
		if sess.tc != nil {
			sess.tc.closeAfter.Store(true)
		}
		return errTenantConns
	}
	sess.st = st
	sess.tenant = tenant
	sess.username = username
	if sess.tc != nil {
		sess.tc.setIdentity(username, tenant.Name)
	}
	sess.log = sess.log.WithLazy(zap.String("tenant", tenant.Name), zap.String("user", username))
	sess.srv.metrics.auth(tenant.Name, "success")
	sess.log.Debug("auth ok", zap.Duration("duration", time.Since(start)))
	return nil
}

// authRefused is the reply to a failed or refused AUTH: refusal, or 421
// and close after auth.max_failures_per_connection of them.
func (sess *Session) authRefused(st *state, refusal error) error {
	if sess.authFailures >= st.cfg.Auth.MaxFailuresPerConnection && sess.tc != nil {
		sess.tc.closeAfter.Store(true)
		return errAuthTooMany
	}
	return refusal
}

func (sess *Session) remoteIP() netip.Addr {
	if sess.tc != nil {
		return sess.tc.ip
	}
	return remoteIP(sess.conn.Conn().RemoteAddr())
}

// Mail checks the envelope sender. MAIL, RCPT and DATA need AUTH first:
// go-smtp does not enforce that.
func (sess *Session) Mail(from string, opts *smtp.MailOptions) error {
	if sess.tenant == nil {
		return errAuthRequired
	}
	if sess.srv.draining.Load() {
		if sess.tc != nil {
			sess.tc.closeAfter.Store(true)
		}
		return errShuttingDown
	}
	if err := sess.recheck(); err != nil { // revoke.go
		return err
	}
	sender, r := sess.st.pipe.CheckMail(sess.tenant, from)
	if r != nil {
		sess.log.Info("mail from refused", zap.String("mail_from", from), zap.String("reason", r.Reason))
		sess.srv.metrics.message(sess.tenant.Name, "rejected", r.Reason, 0)
		return r.Reply
	}
	sess.from = sender
	sess.rcpts = sess.rcpts[:0]
	sess.sizeHint = 0
	if opts != nil {
		sess.sizeHint = opts.Size
	}
	if err := sess.beginTx(sess.sizeHint); err != nil {
		return err
	}
	sess.setTx(true)
	return nil
}

// Rcpt adds a recipient. go-smtp enforces server.max_recipients with
// 452 4.5.3, so one transaction is one SES call.
func (sess *Session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if sess.tenant == nil {
		return errAuthRequired
	}
	addr, dup, r := sess.st.pipe.CheckRcpt(sess.rcpts, to)
	if r != nil {
		return r.Reply
	}
	if !dup {
		sess.rcpts = append(sess.rcpts, addr)
	}
	return nil
}

// Data reads the message, runs the pipeline and sends. It replies 250
// only after the sender accepted every request.
func (sess *Session) Data(r io.Reader) error {
	defer sess.setTx(false)
	if sess.tenant == nil {
		return errAuthRequired
	}
	defer sess.tx.end()
	start := time.Now()
	ref := sess.srv.newID()
	// Lazy: the fields are encoded only if this message logs at an enabled
	// level (1.6% of the CPU per message otherwise), and only within Data.
	log := sess.log.WithLazy(zap.String("ref", ref), zap.String("mail_from", sess.from), zap.Strings("rcpt", sess.rcpts))
	buf := readBuffer(sess.sizeHint, sess.st.cfg.Server.MaxMessageBytes)
	defer releaseBuffer(buf)
	if sess.tc != nil {
		sess.tc.startData(sess.st.cfg.Server.DataTimeout)
	}
	raw, err := sess.readMessage(r, buf) // dataread.go
	if sess.tc != nil && err == nil {
		// On an error the cap stays: go-smtp's drain of the rest of the
		// upload and the next command then fail fast and the connection
		// closes, so a trickling client cannot hold it.
		sess.tc.endData()
	}
	if err == nil && sess.tx.over {
		return sess.overBudget(log) // budget.go
	}
	if err != nil {
		return sess.refuseData(err, log, start) // dataread.go
	}
	res := sess.srv.deliver(context.Background(), sess.st, sess.tenant, Envelope{From: sess.from, To: sess.rcpts}, raw, ref, log)
	if sess.srv.draining.Load() && sess.tc != nil {
		// The reply is the last thing this connection carries.
		sess.tc.closeAfter.Store(true)
	}
	if sess.tc != nil && res.Code == 250 {
		sess.tc.messages.Add(1)
	}
	return res
}

// Reset ends the transaction.
func (sess *Session) Reset() {
	sess.from = ""
	sess.rcpts = sess.rcpts[:0]
	sess.tx.end()
	sess.setTx(false)
}

// Logout ends the session.
func (sess *Session) Logout() error {
	sess.setTx(false)
	sess.tx.end()
	sess.srv.tenantConns.release(sess)
	return nil
}

// Buffers for DATA. Typical messages reuse pooled buffers (a new 64 KiB
// buffer per message was the largest source of garbage); a buffer that grew
// past pooledBufferMax is left to the garbage collector. go-smtp's reader
// stops at server.max_message_bytes with a 552 error.
const pooledBufferMax = 1 << 20

var bufferPool = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 64<<10)) }}

// readBuffer returns an empty buffer for one message; with a SIZE= hint
// over the pooled size it is allocated at that size at once, so a large
// message is not copied through every doubling.
func readBuffer(sizeHint, max int64) *bytes.Buffer {
	if sizeHint > pooledBufferMax && sizeHint <= max {
		return bytes.NewBuffer(make([]byte, 0, sizeHint+4096))
	}
	b := bufferPool.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

// releaseBuffer returns b to the pool. Nothing may refer to its bytes
// afterwards: Data calls it after the pipeline and the sends are done
// (a request's Raw may be built in this buffer: headers.Message.Assemble).
func releaseBuffer(b *bytes.Buffer) {
	if b.Cap() <= pooledBufferMax {
		bufferPool.Put(b)
	}
}

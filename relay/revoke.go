package relay

import (
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
)

// Revocation and the session time limit.
//
// A session authenticates against one configuration snapshot. After a
// reload, its next MAIL checks its credential against the snapshot in
// force: if the user is gone, moved to another tenant or has another
// password hash, the credential was revoked and the session ends with
// 421 4.7.0 (go-smtp allows one AUTH per connection, so a 530 could not be
// answered with a new AUTH: the client must reconnect). Otherwise the
// session goes on under the new snapshot, so a tenant's shrunk domains,
// limits and keys apply to it from that MAIL on.
//
// server.max_session_duration bounds every session: past it, the next
// MAIL gets 421 4.7.0, and a session that is not in a transaction is cut
// when it next waits for a command (go-smtp answers 421 4.4.2 to the read
// deadline), so NOOP cannot keep it alive. A transaction in progress at
// the limit finishes first.

// recheck runs at MAIL, for an authenticated session.
func (sess *Session) recheck() error {
	if sess.tc != nil && sess.tc.pastSessionEnd() {
		sess.srv.metrics.sessionEnded("max_session_duration")
		sess.log.Info("session ended", zap.String("reason", "max_session_duration"),
			zap.Duration("age", time.Since(sess.tc.start)))
		sess.tc.closeAfter.Store(true)
		return errSessionTooLong
	}
	cur := sess.srv.snapshot()
	if cur == sess.st {
		return nil
	}
	_, old := sess.st.rules.TenantForUser(sess.username)
	tenant, u := cur.rules.TenantForUser(sess.username)
	why := ""
	switch {
	case u == nil:
		why = "user_removed"
	case tenant.Name != sess.tenant.Name:
		why = "tenant_changed"
	case old == nil || u.PasswordHash != old.PasswordHash:
		why = "password_changed"
	}
	if why != "" {
		sess.srv.metrics.sessionEnded("revoked")
		sess.log.Warn("session ended", zap.String("reason", "credential_revoked"), zap.String("detail", why))
		if sess.tc != nil {
			sess.tc.closeAfter.Store(true)
		}
		return errRevoked
	}
	// The credential holds: the session follows the new rules.
	sess.st, sess.tenant = cur, tenant
	return nil
}

// sessionLimit sets when the connection's session must end.
func (c *trackedConn) sessionLimit(cfg *config.Config) {
	if d := cfg.Server.MaxSessionDuration; d > 0 {
		c.sessionEnd.Store(c.start.Add(d).UnixNano())
	}
}

func (c *trackedConn) pastSessionEnd() bool {
	end := c.sessionEnd.Load()
	return end != 0 && time.Now().UnixNano() >= end
}

// capSession lowers the read deadline dl to the end of the session when no
// transaction is in progress.
func (c *trackedConn) capSession(dl time.Time) time.Time {
	end := c.sessionEnd.Load()
	if end == 0 || !time.Unix(0, end).Before(dl) {
		return dl
	}
	if sess := c.session.Load(); sess != nil && sess.busy() {
		return dl
	}
	return time.Unix(0, end)
}

// noteSessionCut logs and counts a read that failed because the session
// reached its end (once per connection).
func (c *trackedConn) noteSessionCut(err error) {
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() || !c.pastSessionEnd() || !c.sessionCut.CompareAndSwap(false, true) {
		return
	}
	if sess := c.session.Load(); sess != nil && sess.busy() {
		return
	}
	c.srv.metrics.sessionEnded("max_session_duration")
	c.log.Info("session ended", zap.String("reason", "max_session_duration"), zap.Duration("age", time.Since(c.start)))
}

// newSessionMetrics makes sesrelay_sessions_ended_total.
func newSessionMetrics() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sesrelay_sessions_ended_total", Help: "Sessions ended by the relay, by reason (revoked, max_session_duration).",
	}, []string{"reason"})
}

func (m *Metrics) sessionEnded(reason string) {
	if m != nil {
		m.SessionsEnded.WithLabelValues(reason).Inc()
	}
}

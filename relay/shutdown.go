package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// replyShuttingDown is what an idle connection is told when the relay
// shuts down (RFC 5321 §3.8: 421 and close; RFC 3463 4.3.2 "system not
// accepting network messages"): errShuttingDown, the reply MAIL gets
// during a shutdown, on the wire.
var replyShuttingDown = fmt.Sprintf("%d %d.%d.%d %s\r\n", errShuttingDown.Code,
	errShuttingDown.EnhancedCode[0], errShuttingDown.EnhancedCode[1], errShuttingDown.EnhancedCode[2], errShuttingDown.Message)

// interruptForShutdown ends an idle connection: a read deadline in the
// past interrupts go-smtp's blocked read from its own goroutine, and Read
// (through sayShutdown) writes the shutdown reply before go-smtp sees the
// error. Without this go-smtp would answer the timeout with its own
// "421 4.4.2 Idle timeout, bye bye".
func (c *trackedConn) interruptForShutdown() {
	c.shutdown.Store(true)
	_ = c.SetReadDeadline(time.Unix(1, 0))
}

// sayShutdown runs in the connection's goroutine (inside go-smtp's read,
// so go-smtp writes nothing at the same time) when a read failed after
// interruptForShutdown. It writes the shutdown reply once, on the
// connection the client reads (TLS when the session is over TLS), and
// returns net.ErrClosed, on which go-smtp closes without a reply of its
// own. On an implicit TLS connection that has no session yet the TLS
// handshake may still be running (a write would block on it): go-smtp's
// idle-timeout reply stays.
func (c *trackedConn) sayShutdown(err error) error {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return err
	}
	if c.saidBye.Load() {
		return net.ErrClosed
	}
	var w io.Writer
	if sess := c.session.Load(); sess != nil {
		// Called from go-smtp's goroutine, the only one that changes
		// the Conn's net.Conn (at STARTTLS).
		w = sess.conn.Conn()
	} else if !c.implicitTLS {
		w = c
	}
	if w == nil {
		return err
	}
	c.saidBye.Store(true)
	_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(w, replyShuttingDown)
	return net.ErrClosed
}

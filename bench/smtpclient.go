package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// client is a deliberately small SMTP submission client: no pipelining, no
// extensions beyond STARTTLS and AUTH PLAIN, one reply read per command, so
// that the generator spends as little CPU as possible (it shares the
// machine with the server it measures) and the instant the end of DATA
// leaves it is known exactly.
type client struct {
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
}

// replyError is a reply outside the class a step expects.
type replyError struct {
	Step string
	Code int
	Text string
}

func (e *replyError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Step, e.Code, e.Text)
}

// netError is a transport failure (connect, TLS, timeout, reset).
type netError struct {
	Step string
	Err  error
}

func (e *netError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *netError) Unwrap() error { return e.Err }

// errorKey names an error for the "errors by reply code" count.
func errorKey(err error) string {
	var re *replyError
	if errors.As(err, &re) {
		return strconv.Itoa(re.Code)
	}
	var ne *netError
	if errors.As(err, &ne) {
		return "net:" + ne.Step
	}
	return "other"
}

// clientTLS trusts any certificate: the generator measures, it does not
// authenticate the server. No session cache: every connection does a full
// handshake, as most submission clients do.
var clientTLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, ServerName: "localhost"} //nolint:gosec // benchmark client

// dialClient connects, reads the greeting, says EHLO, upgrades with
// STARTTLS, says EHLO again and authenticates with AUTH PLAIN.
func dialClient(ctx context.Context, addr, user, pass string, timeout time.Duration) (*client, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &netError{"connect", err}
	}
	c := &client{nc: nc, timeout: timeout}
	c.r = bufio.NewReaderSize(nc, 4096)
	c.w = bufio.NewWriterSize(nc, 4096)
	if err := c.setup(user, pass); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *client) setup(user, pass string) error {
	c.nc.SetDeadline(time.Now().Add(c.timeout)) //nolint:errcheck // a failed deadline shows as a failed read
	if err := c.expect("greeting", 220); err != nil {
		return err
	}
	if err := c.cmd("ehlo", "EHLO bench.client", 250); err != nil {
		return err
	}
	if err := c.cmd("starttls", "STARTTLS", 220); err != nil {
		return err
	}
	tc := tls.Client(c.nc, clientTLS)
	if err := tc.Handshake(); err != nil {
		return &netError{"tls", err}
	}
	c.nc = tc
	c.r.Reset(tc)
	c.w = bufio.NewWriterSize(tc, 16<<10)
	if err := c.cmd("ehlo", "EHLO bench.client", 250); err != nil {
		return err
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	return c.cmd("auth", "AUTH PLAIN "+ir, 235)
}

// send runs one MAIL/RCPT/DATA transaction. reply is the time from the
// moment the terminating CRLF.CRLF was handed to the kernel to the moment
// the final reply was read. On a reply error the transaction is reset so
// the connection stays usable; on a net error the connection is dead.
func (c *client) send(from, to string, msg []byte) (reply time.Duration, err error) {
	c.nc.SetDeadline(time.Now().Add(c.timeout)) //nolint:errcheck // a failed deadline shows as a failed read
	defer func() {
		var re *replyError
		if errors.As(err, &re) {
			c.cmd("rset", "RSET", 250) //nolint:errcheck // a dead connection shows on the next send
		}
	}()
	if err := c.cmd("mail", "MAIL FROM:<"+from+">", 250); err != nil {
		return 0, err
	}
	if err := c.cmd("rcpt", "RCPT TO:<"+to+">", 250); err != nil {
		return 0, err
	}
	if err := c.cmd("data", "DATA", 354); err != nil {
		return 0, err
	}
	if _, err := c.w.Write(msg); err != nil {
		return 0, &netError{"data", err}
	}
	if _, err := c.w.WriteString(".\r\n"); err != nil {
		return 0, &netError{"data", err}
	}
	if err := c.w.Flush(); err != nil {
		return 0, &netError{"data", err}
	}
	t0 := time.Now()
	err = c.expect("eom", 250)
	return time.Since(t0), err
}

// quit says QUIT, waits for the reply and closes.
func (c *client) quit() error {
	c.nc.SetDeadline(time.Now().Add(c.timeout)) //nolint:errcheck // a failed deadline shows as a failed read
	err := c.cmd("quit", "QUIT", 221)
	c.nc.Close()
	return err
}

// Close drops the connection without QUIT.
func (c *client) Close() error { return c.nc.Close() }

func (c *client) cmd(step, line string, want int) error {
	c.w.WriteString(line) //nolint:errcheck // bufio keeps the first error for Flush
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return &netError{step, err}
	}
	return c.expect(step, want)
}

// expect reads one (possibly multi-line) reply and checks its code.
func (c *client) expect(step string, want int) error {
	code, text, err := readReply(c.r)
	if err != nil {
		return &netError{step, err}
	}
	if code != want {
		return &replyError{Step: step, Code: code, Text: text}
	}
	return nil
}

// readReply reads an RFC 5321 reply: lines "NNN-text" continued until a
// line "NNN text" (or a bare "NNN"). It returns the code and the last line.
func readReply(r *bufio.Reader) (int, string, error) {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		line = trimCRLF(line)
		if len(line) < 3 {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		code, err := strconv.Atoi(string(line[:3]))
		if err != nil || code < 200 || code > 599 {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		if len(line) > 3 && line[3] == '-' {
			continue
		}
		text := ""
		if len(line) > 4 {
			text = string(line[4:])
		}
		return code, text, nil
	}
}

func trimCRLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

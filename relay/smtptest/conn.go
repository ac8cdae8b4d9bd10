package smtptest

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/textproto"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is the shared test message of the billing tenant: no Date, no
// Message-ID, CRLF line ends.
const Message = "From: Billing <invoices@billing.example.com>\r\n" +
	"To: customer@example.org\r\n" +
	"Subject: Your invoice\r\n" +
	"\r\n" +
	"Hello.\r\n"

// DialFrom opens a TCP connection to addr from the source address src
// ("" = any; on loopback any 127.0.0.0/8 address works). It is closed when
// the test ends.
func DialFrom(t testing.TB, addr, src string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Greeting dials addr from src and reads the greeting: its code, or -1
// when the connection closed without one.
func Greeting(t testing.TB, addr, src string) (int, net.Conn) {
	t.Helper()
	conn := DialFrom(t, addr, src)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	code, _, err := textproto.NewReader(bufio.NewReader(conn)).ReadResponse(0)
	if err != nil && code == 0 {
		return -1, conn
	}
	return code, conn
}

// Client dials addr from src ("" = any) without TLS, says EHLO and, when
// user is set, authenticates with AUTH PLAIN.
func Client(t testing.TB, addr, src, user, pass string) *smtp.Client {
	t.Helper()
	c := smtp.NewClient(DialFrom(t, addr, src))
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if user != "" {
		if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			t.Fatalf("auth %s from %s: %v", user, src, err)
		}
	}
	return c
}

// StartTLS dials addr, upgrades with STARTTLS and, when user is set,
// authenticates with AUTH PLAIN.
func StartTLS(t testing.TB, addr, user, pass string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(addr, ClientTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if user != "" {
		if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
			t.Fatalf("auth: %v", err)
		}
	}
	return c
}

// CodeOf is the SMTP reply code of err: 250 for nil, -1 for an error that
// is not an SMTP reply.
func CodeOf(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	if err == nil {
		return 250
	}
	return -1
}

// Conn speaks SMTP byte by byte, for what a client library would not
// send.
type Conn struct {
	t  testing.TB
	c  net.Conn
	tp *textproto.Reader
}

// NewConn wraps an open connection; it reads nothing.
func NewConn(t testing.TB, c net.Conn) *Conn {
	return &Conn{t: t, c: c, tp: textproto.NewReader(bufio.NewReader(c))}
}

// Raw dials addr from src and reads a 220 greeting.
func Raw(t testing.TB, addr, src string) *Conn {
	t.Helper()
	c := DialFrom(t, addr, src)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := NewConn(t, c)
	if code, msg := r.Read(); code != 220 {
		t.Fatalf("greeting %d %s", code, msg)
	}
	return r
}

// Write sends s as is.
func (r *Conn) Write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// Read reads one (possibly multi-line) reply; code -1 at EOF.
func (r *Conn) Read() (int, string) {
	code, msg, err := r.tp.ReadResponse(0)
	if err != nil {
		var pe textproto.ProtocolError
		if errors.As(err, &pe) || code == 0 {
			return -1, err.Error()
		}
	}
	return code, msg
}

// Cmd sends one command line and reads the reply.
func (r *Conn) Cmd(line string) (int, string) {
	r.Write(line + "\r\n")
	return r.Read()
}

// Login says EHLO and authenticates with AUTH PLAIN, failing the test
// unless both succeed.
func (r *Conn) Login(user, pass string) {
	r.t.Helper()
	if code, msg := r.Cmd("EHLO client.test"); code != 250 {
		r.t.Fatalf("EHLO: %d %s", code, msg)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	if code, msg := r.Cmd("AUTH PLAIN " + ir); code != 235 {
		r.t.Fatalf("AUTH: %d %s", code, msg)
	}
}

// Package smtptest holds what tests that speak SMTP to a relay share: the
// test credential and message, a client TLS configuration for self-signed
// listeners, dial helpers (a source address, STARTTLS, AUTH), a raw
// byte-level connection, a transaction helper and the reply assertion.
package smtptest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"testing"

	"github.com/emersion/go-smtp"
)

// Password is the password of test users; PasswordHash is its bcrypt
// (cost 10) hash, for the configuration.
const (
	Password     = "demo-password"
	PasswordHash = "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"
)

// ClientTLS trusts the relay's self-signed test certificate.
var ClientTLS = &tls.Config{InsecureSkipVerify: true}

// Send runs one MAIL/RCPT/DATA transaction on c and returns the text of
// the final reply.
func Send(c *smtp.Client, from string, to []string, msg string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// ExpectCode fails the test unless err is an SMTP reply with code and, if
// enh is not empty, that enhanced code; the reply's class must also match
// the enhanced code's class (RFC 3463).
func ExpectCode(t testing.TB, err error, code int, enh string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("want %d %s, got %v", code, enh, err)
	}
	got := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.Code != code || (enh != "" && got != enh) {
		t.Fatalf("want %d %s, got %d %s %q", code, enh, se.Code, got, se.Message)
	}
	if se.Code/100 != se.EnhancedCode[0] {
		t.Fatalf("reply class %d does not match enhanced code %s", se.Code, got)
	}
}

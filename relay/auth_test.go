package relay_test

// AUTH and tenant isolation: AUTH required and only over TLS (or on a
// listener that allows it), wrong passwords, authorization identities, MAIL
// FROM outside the tenant, failures per connection and brute force.

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func TestAuthRequired(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("", "")
	expectCode(t, c.Mail("invoices@billing.example.com", nil), 530, "5.7.0")
	if h.ses.Calls() != 0 {
		t.Fatal("SES called without AUTH")
	}
}

func TestAuthBeforeTLSRefused(t *testing.T) {
	h := start(t, baseYAML)
	c, err := smtp.Dial(h.starttls)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH advertised before STARTTLS")
	}
	err = c.Auth(sasl.NewPlainClient("", "billing-app", testPassword))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 != 5 || se.EnhancedCode[1] != 7 {
		t.Fatalf("AUTH before TLS: want a 5xx 5.7.x refusal, got %v", err)
	}
}

func TestWrongPassword(t *testing.T) {
	h := start(t, baseYAML)
	for _, user := range []string{"billing-app", "no-such-user"} {
		c, err := smtp.DialStartTLS(h.starttls, clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = c.Auth(sasl.NewPlainClient("", user, "wrong"))
		expectCode(t, err, 535, "5.7.8")
		t.Logf("%s: refused in %v", user, time.Since(start))
		c.Close()
	}
}

func TestAuthorizationIdentityRefused(t *testing.T) {
	h := start(t, baseYAML)
	c, err := smtp.DialStartTLS(h.starttls, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectCode(t, c.Auth(sasl.NewPlainClient("marketing-app", "billing-app", testPassword)), 535, "5.7.8")
}

func TestMailFromOutsideTenant(t *testing.T) {
	h := start(t, baseYAML)
	c := h.dial("billing-app", testPassword)
	for _, from := range []string{"x@marketing.example.com", "x@evil-billing.example.com", "x@example.com", "x@billing.example.com.evil.org"} {
		expectCode(t, c.Mail(from, nil), 550, "5.7.1")
	}
	// Subdomains through "*.billing.example.com", case and trailing dot.
	for _, from := range []string{"x@eu.billing.example.com", "x@BILLING.Example.COM", "x@billing.example.com."} {
		if err := c.Mail(from, nil); err != nil {
			t.Fatalf("%s: %v", from, err)
		}
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuthMaxFailuresPerConnection(t *testing.T) {
	h := startHard(t, strings.Replace(hardYAML, "max_failures: 3,", "max_failures: 10,", 1), hOpts{})
	c := h.client("127.0.0.2", "", "")
	for i := 1; i <= 2; i++ {
		expectCode(t, c.Auth(sasl.NewPlainClient("", "billing-app", "wrong")), 535, "5.7.8")
	}
	expectCode(t, c.Auth(sasl.NewPlainClient("", "billing-app", "wrong")), 421, "4.7.0")
	if err := c.Noop(); err == nil {
		t.Fatal("connection still open after 421")
	}
}

// TestBruteForce: a client hammering wrong passwords from 127.0.0.2 is cut
// off (421 per connection, then 454, without the KDF and even with the
// right password) and slowed, while the application on 127.0.0.3, which
// authenticated before the attack, keeps sending with the same username
// (authlockout.go).
func TestBruteForce(t *testing.T) {
	h := startHard(t, hardYAML, hOpts{})
	stop := make(chan struct{})
	var good sync.WaitGroup
	var goodSent atomic.Int32
	goodErr := make(chan error, 1)
	good.Add(1)
	go func() {
		defer good.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}).Dial("tcp", h.plain)
			if err != nil {
				goodErr <- err
				return
			}
			c := smtp.NewClient(conn)
			err = c.Auth(sasl.NewPlainClient("", "billing-app", testPassword))
			if err == nil {
				err = sendMsg(c, "invoices@billing.example.com", []string{"a@example.org"}, simpleMsg)
			}
			c.Close()
			if err != nil {
				goodErr <- fmt.Errorf("good client, after %d messages: %w", goodSent.Load(), err)
				return
			}
			goodSent.Add(1)
			time.Sleep(10 * time.Millisecond) // an application, not a flood
		}
	}()
	// The application has authenticated from its address before the attack.
	for goodSent.Load() == 0 && len(goodErr) == 0 {
		time.Sleep(5 * time.Millisecond)
	}

	type attempt struct {
		code int
		took time.Duration
	}
	var attempts []attempt
	try := func(c *smtp.Client, pass string) int {
		start := time.Now()
		code := codeOf(c.Auth(sasl.NewPlainClient("", "billing-app", pass)))
		attempts = append(attempts, attempt{code, time.Since(start)})
		return code
	}
	// Connection 1: three wrong passwords: 535, 535, then 421 and close.
	c := h.client("127.0.0.2", "", "")
	got := []int{try(c, "wrong1"), try(c, "wrong2"), try(c, "wrong3")}
	if fmt.Sprint(got) != "[535 535 421]" {
		t.Fatalf("connection 1: %v", got)
	}
	// auth.max_failures (3) reached: the address is locked out. Its
	// attempts get 454 without a verification, three per connection.
	c = h.client("127.0.0.2", "", "")
	got = []int{try(c, "wrong4"), try(c, "wrong5"), try(c, "wrong6")}
	if fmt.Sprint(got) != "[454 454 421]" {
		t.Fatalf("connection 2: %v", got)
	}
	// Even the right password is refused from there now.
	c = h.client("127.0.0.2", "", "")
	if code := try(c, testPassword); code != 454 {
		t.Fatalf("right password from a locked-out address: %d", code)
	}
	// Slowed: the delay doubles with every strike.
	if last := attempts[len(attempts)-1].took; last < 400*time.Millisecond {
		t.Fatalf("7th attempt answered after %v: not slowed", last)
	}
	for i, a := range attempts {
		t.Logf("attempt %d: %d after %v", i+1, a.code, a.took)
	}
	// The username's budget for strangers is spent: any other address
	// that never authenticated as it is refused without a check, right
	// password or not...
	c = h.client("127.0.0.4", "", "")
	if code := try(c, testPassword); code != 454 {
		t.Fatalf("username under attack, from a new address: %d", code)
	}
	// ...while the application's address is verified as usual (below),
	// and so is another username from a new address.
	h.client("127.0.0.5", "marketing-app", testPassword)

	time.Sleep(200 * time.Millisecond)
	close(stop)
	good.Wait()
	select {
	case err := <-goodErr:
		t.Fatal(err)
	default:
	}
	if goodSent.Load() < 3 {
		t.Fatalf("the good client sent only %d messages", goodSent.Load())
	}
	t.Logf("good client sent %d messages during the attack", goodSent.Load())
}

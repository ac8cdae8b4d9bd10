package relay

import (
	"testing"

	"github.com/sesrelay/sesrelay/config"
)

func testPipeline(t *testing.T) *Pipeline {
	t.Helper()
	cfg, err := config.Parse([]byte(`
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:0", tls: starttls}]
  tls: {self_signed: true}
  max_recipients: 2
tenants:
  - name: shop
    users: [{username: shop-app, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [shop.example]
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckMailKeepsQuoting: the envelope sender, like a recipient, is
// passed on naming the mailbox the client named.
func TestCheckMailKeepsQuoting(t *testing.T) {
	p := testPipeline(t)
	ten := p.Rules.Tenant("shop")
	for in, want := range map[string]string{
		"":                        "",
		"a@shop.example":          "a@shop.example",
		"a b@shop.example":        `"a b"@shop.example`,
		"x@evil.com@shop.example": `"x@evil.com"@shop.example`,
	} {
		got, r := p.CheckMail(ten, in)
		if r != nil || got != want {
			t.Errorf("CheckMail(%q) = %q, %v; want %q", in, got, r, want)
		}
	}
	if _, r := p.CheckMail(ten, "a\x01@shop.example"); r == nil || r.Reply.Code != 501 {
		t.Errorf("control character: %+v", r)
	}
	if _, r := p.CheckMail(ten, "a@evil.example"); r == nil || r.Reply.Code != 550 {
		t.Errorf("foreign sender: %+v", r)
	}
}

func TestCheckRcpt(t *testing.T) {
	p := testPipeline(t)
	var rcpts []string
	for _, c := range []struct {
		in, want string
		dup      bool
		code     int
	}{
		{"a@Example.org", "a@example.org", false, 0},
		{"a@example.org.", "a@example.org", true, 0},
		{"x@evil.com@example.org", `"x@evil.com"@example.org`, false, 0},
		{"b@example.org", "", false, 452},
		{"jürgen@example.org", "", false, 553},
		{"a@exa_mple", "", false, 501},
	} {
		got, dup, r := p.CheckRcpt(rcpts, c.in)
		code := 0
		if r != nil {
			code = r.Reply.Code
		}
		if got != c.want || dup != c.dup || code != c.code {
			t.Errorf("CheckRcpt(%q) = %q, %v, %d; want %q, %v, %d", c.in, got, dup, code, c.want, c.dup, c.code)
		}
		if r == nil && !dup {
			rcpts = append(rcpts, got)
		}
	}
}

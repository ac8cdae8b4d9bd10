package relay

import (
	"bytes"
	"testing"

	"github.com/emersion/go-smtp"
)

// FuzzSASL feeds client bytes to the PLAIN and LOGIN servers: they never
// panic, only ever return *smtp.SMTPError values (anything else would reach
// the client as internal text), and call the credential check at most once
// with what the client sent.
func FuzzSASL(f *testing.F) {
	f.Add([]byte("\x00user\x00pass"), []byte("user"), []byte("pass"))
	f.Add([]byte("authz\x00user\x00pass"), []byte(""), []byte(""))
	f.Add([]byte("\x00\x00"), []byte("\x00"), []byte("\xff"))
	f.Add([]byte{}, []byte("a"), []byte("b"))
	f.Fuzz(func(t *testing.T, plain, user, pass []byte) {
		calls := 0
		check := func(identity, username, password string) error {
			calls++
			if username == "user" && password == "pass" && identity == "" {
				return nil
			}
			return errAuthFailed
		}
		servers := []struct {
			name string
			srv  interface {
				Next([]byte) ([]byte, bool, error)
			}
			steps [][]byte
		}{
			{"plain-ir", &plainServer{check: check}, [][]byte{plain, plain}},
			{"plain", &plainServer{check: check}, [][]byte{nil, plain, plain}},
			{"login", &loginServer{check: check}, [][]byte{nil, user, pass, pass}},
			{"login-ir", &loginServer{check: check}, [][]byte{user, pass, pass}},
		}
		for _, s := range servers {
			calls = 0
			for _, step := range s.steps {
				_, done, err := s.srv.Next(step)
				if err != nil {
					if _, ok := err.(*smtp.SMTPError); !ok {
						t.Fatalf("%s: error %T %v is not an *smtp.SMTPError", s.name, err, err)
					}
					break
				}
				if done {
					break
				}
			}
			if calls > 1 {
				t.Fatalf("%s: credentials checked %d times", s.name, calls)
			}
			if s.name == "plain-ir" && calls == 1 && bytes.Count(plain, []byte{0}) != 2 {
				t.Fatalf("plain: checked a response without exactly two NULs: %q", plain)
			}
		}
	})
}

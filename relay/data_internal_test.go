package relay

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// TestReadData reads messages of many sizes, through readers that return
// a few bytes at a time, into a pooled and into a presized buffer, and
// checks the bytes and that a reader's error is returned as it is.
func TestReadData(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 511, 512, 513, 64 << 10, 64<<10 + 1, 5 << 20, 9<<20 + 3} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(r.Uint32())
		}
		readers := map[string]func() io.Reader{
			"whole": func() io.Reader { return bytes.NewReader(msg) },
			"half":  func() io.Reader { return iotest.HalfReader(bytes.NewReader(msg)) },
			"eof":   func() io.Reader { return iotest.DataErrReader(bytes.NewReader(msg)) },
		}
		for name, rd := range readers {
			for _, buf := range []*bytes.Buffer{new(bytes.Buffer), bytes.NewBuffer(make([]byte, 0, 64<<10))} {
				if err := readData(buf, rd()); err != nil {
					t.Fatalf("%d bytes, %s: %v", n, name, err)
				}
				if !bytes.Equal(buf.Bytes(), msg) {
					t.Fatalf("%d bytes, %s: read %d bytes that differ", n, name, buf.Len())
				}
			}
		}
	}
	boom := errors.New("boom")
	var buf bytes.Buffer
	if err := readData(&buf, io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(boom))); err != boom || buf.String() != "abc" {
		t.Fatalf("got %v, %q", err, buf.String())
	}
}

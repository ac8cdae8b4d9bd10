package relay

import (
	"bytes"
	"strings"
	"testing"
)

// unstuffReference is unstuffAfterBareLF written the obvious way, on a
// copy: drop a '.' whose previous byte is an LF not preceded by CR.
func unstuffReference(in []byte) []byte {
	var out []byte
	for i, c := range in {
		if c == '.' && i > 0 && in[i-1] == '\n' && (i < 2 || in[i-2] != '\r') {
			continue
		}
		out = append(out, c)
	}
	return out
}

func TestUnstuffAfterBareLF(t *testing.T) {
	for in, want := range map[string]string{
		"a\n..NET\n....\n..\nb\n": "a\n.NET\n...\n.\nb\n",
		"a\r\n.kept\r\n":          "a\r\n.kept\r\n", // go-smtp unstuffed it already
		"a\r\r\n.kept":            "a\r\r\n.kept",
		"a\n\n..x":                "a\n\n.x",
		".first":                  ".first", // go-smtp's job
		"no dots\n":               "no dots\n",
		"\n.":                     "\n",
	} {
		if got := string(unstuffAfterBareLF([]byte(in))); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func FuzzUnstuffAfterBareLF(f *testing.F) {
	for _, s := range []string{"a\n..NET\n", "\r\n.\n..\r\n", "\n.\n.\n.", strings.Repeat("\n.", 10)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		want := unstuffReference(in)
		got := unstuffAfterBareLF(append([]byte(nil), in...))
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: got %q, want %q", in, got, want)
		}
	})
}

// dataReader looks like go-smtp's DATA reader, in another package.
type dataReader struct {
	limited bool
	n       int64
}

func (*dataReader) Read([]byte) (int, error) { return 0, nil }

// TestWidenDataLimitOtherReaders: anything but go-smtp's DATA reader is
// left alone.
func TestWidenDataLimitOtherReaders(t *testing.T) {
	if widenDataLimit(bytes.NewReader(nil)) || widenDataLimit(nil) {
		t.Fatal("widened a reader that is not go-smtp's")
	}
	r := &dataReader{limited: true, n: 5}
	if widenDataLimit(r) || r.n != 5 {
		t.Fatal("widened a look-alike of go-smtp's reader")
	}
}

package relay

import (
	"errors"
	"testing"
)

// TestKindRepliesConsistent: the reply class matches the enhanced code's
// class, and transient kinds answer 4xx, permanent ones 5xx.
func TestKindRepliesConsistent(t *testing.T) {
	for k := Kind(0); k < Kind(len(kindNames)); k++ {
		r := ReplyForSendError(&SendError{Kind: k, Err: errors.New("x")}, "ref")
		if r.Code/100 != r.EnhancedCode[0] {
			t.Errorf("%v: %d with %v", k, r.Code, r.EnhancedCode)
		}
		want := 5
		if k.Transient() {
			want = 4
		}
		if r.Code/100 != want {
			t.Errorf("%v: transient=%v but %d", k, k.Transient(), r.Code)
		}
	}
}

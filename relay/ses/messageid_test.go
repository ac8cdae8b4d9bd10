package ses

import (
	"context"
	"testing"

	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/sestest"
)

// A 2xx answer without a message id, or one that carries x-amzn-ErrorType,
// is not an acceptance: whatever answered (a wrong endpoint, a proxy) may
// not have queued anything. It is an ambiguous failure (451), tried once,
// never moved to another region.
func TestSuccessNeedsMessageID(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply sestest.Reply
	}{
		{"200 without MessageId", sestest.Reply{NoMessageID: true}},
		{"200 with x-amzn-ErrorType", sestest.Reply{Status: 200, ErrorType: "InternalFailure", Message: "oops"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r1, r2 := newRegion(t), newRegion(t)
			rep := tc.reply
			r1.answer(&rep)
			s := newSender(t, "", func(o *Options) {
				o.Regions = []string{"us-east-1", "us-west-2"}
				o.RegionEndpoints = map[string]string{"us-east-1": r1.URL, "us-west-2": r2.URL}
			})
			res, err := s.Send(context.Background(), req)
			if err == nil {
				t.Fatalf("accepted with message id %q", res.MessageID)
			}
			if kindOf(t, err) != relay.KindAmbiguous {
				t.Fatalf("kind %v, want ambiguous: %v", kindOf(t, err), err)
			}
			if r := relay.ReplyForSendError(err, "x"); r.Code != 451 {
				t.Fatalf("reply %d %v", r.Code, r.EnhancedCode)
			}
			if r1.Calls() != 1 || r2.Calls() != 0 {
				t.Fatalf("calls: region 1 %d (want 1), region 2 %d (want 0)", r1.Calls(), r2.Calls())
			}
		})
	}
}

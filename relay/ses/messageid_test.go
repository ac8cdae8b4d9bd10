package ses

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

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
			if got := sendCalls(t, s); len(got) != 1 || got["us-east-1 ambiguous"] != 1 {
				t.Fatalf("sesrelay_ses_request_duration_seconds: %v", got)
			}
		})
	}
}

// sendCalls returns the observation counts of
// sesrelay_ses_request_duration_seconds by "region result".
func sendCalls(t *testing.T, s *Sender) map[string]uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "sesrelay_ses_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			out[l["region"]+" "+l["result"]] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

// One observation per Send, under the region that answered, retries
// included.
func TestSendCallMetric(t *testing.T) {
	stub := sestest.New()
	defer stub.Close()
	stub.Respond = func(n int, _ *sestest.Request) sestest.Reply {
		if n == 1 {
			return sestest.Reply{Status: 503}
		}
		if n == 3 {
			return sestest.Reply{Status: 400, ErrorType: "BadRequestException"}
		}
		return sestest.Reply{}
	}
	s := newSender(t, stub.URL, nil)
	if _, err := s.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(context.Background(), req); err == nil {
		t.Fatal("bad request accepted")
	}
	if got := sendCalls(t, s); len(got) != 2 || got["us-east-1 ok"] != 1 || got["us-east-1 bad_request"] != 1 {
		t.Fatalf("sesrelay_ses_request_duration_seconds: %v", got)
	}
}

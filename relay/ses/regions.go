package ses

import (
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/relay"
)

// Where a request goes, first rule that applies wins:
//
//  1. the tenant's SES multi-region endpoint (tenants[].ses_endpoint_id);
//  2. the tenant's region (tenants[].region);
//  3. the region of the tenant's delegated identity (tenants[].identity_arn):
//     such an identity exists in one region only, so it cannot fail over;
//  4. the global multi-region endpoint (ses.endpoint_id);
//  5. relay-side failover over ses.regions, in order, by health;
//  6. ses.region.
//
// With an endpoint id SES picks the region itself (primary and secondary)
// and the SDK signs with SigV4a; the relay sends to one place and tracks
// no region health for it.

// route is where one request goes.
type route struct {
	// regions are the candidates in the order to try them. More than one
	// means relay-side failover.
	regions []string
	// endpointID is the SES multi-region endpoint ("": none).
	endpointID string
}

func (s *Sender) route(o *Options, req *relay.Request) route {
	switch {
	case req.EndpointID != "":
		return route{regions: []string{orDefault(req.Region, o.Region)}, endpointID: req.EndpointID}
	case req.Region != "":
		return route{regions: []string{req.Region}}
	}
	if r := arnRegion(req.IdentityARN); r != "" {
		return route{regions: []string{r}}
	}
	if o.EndpointID != "" {
		return route{regions: []string{o.Region}, endpointID: o.EndpointID}
	}
	if len(o.Regions) > 0 {
		return route{regions: s.health.order(o.Regions, o.ProbeEvery)}
	}
	return route{regions: []string{o.Region}}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// arnRegion returns the region of an SES identity ARN
// (arn:PARTITION:ses:REGION:ACCOUNT:identity/NAME), "" if there is none.
func arnRegion(arn string) string {
	parts := strings.SplitN(arn, ":", 5)
	if len(parts) < 5 || parts[2] != "ses" {
		return ""
	}
	return parts[3]
}

// tryElsewhere reports whether a failed attempt certainly did not send and
// another region may take the message: throttling (a region's quota and
// rate are its own, the daily quota included), a 5xx answer, or a
// connection that failed before the request was written. An ambiguous
// failure never moves: SES may hold the message already.
func tryElsewhere(kind relay.Kind, retryable bool) bool {
	return kind == relay.KindThrottled || (kind == relay.KindTransient && retryable)
}

// regionHealth tracks the regions of ses.regions. A region is down after
// ses.failover.after consecutive failures (those tryElsewhere accepts,
// and ambiguous ones); while down, one message every
// ses.failover.probe_every tries it in its place in the order (the probe:
// a real message, whose failure moves it on to the next region like any
// other); any answer from SES that is not a failure marks it up again.
type regionHealth struct {
	now func() time.Time
	log *zap.Logger

	mu     sync.Mutex
	states map[string]*regionState
}

type regionState struct {
	failures  int // consecutive
	down      bool
	since     time.Time // of the last change; zero: up since start
	nextProbe time.Time // while down: when the next message may try it
}

func newRegionHealth(log *zap.Logger) *regionHealth {
	return &regionHealth{now: time.Now, log: log, states: map[string]*regionState{}}
}

func (h *regionHealth) state(region string) *regionState {
	st, ok := h.states[region]
	if !ok {
		st = &regionState{}
		h.states[region] = st
	}
	return st
}

// order returns the candidates for one message: the regions that are up
// and the down regions whose probe is due, in configured order, then the
// other down regions as a last resort (a message fails only when every
// region failed). Taking a due probe pushes the next one probeEvery away,
// so concurrent messages do not all probe.
func (h *regionHealth) order(regions []string, probeEvery time.Duration) []string {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	first := make([]string, 0, len(regions))
	var last []string
	for _, r := range regions {
		st := h.state(r)
		switch {
		case !st.down:
			first = append(first, r)
		case !now.Before(st.nextProbe):
			st.nextProbe = now.Add(probeEvery)
			first = append(first, r)
		default:
			last = append(last, r)
		}
	}
	return append(first, last...)
}

// record counts the outcome of one attempt in region.
func (h *regionHealth) record(region string, failed bool, after int, probeEvery time.Duration) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.state(region)
	if !failed {
		st.failures = 0
		if st.down {
			st.down, st.since = false, now
			h.log.Info("SES region up again", zap.String("region", region))
		}
		return
	}
	st.failures++
	if !st.down && st.failures >= after {
		st.down, st.since, st.nextProbe = true, now, now.Add(probeEvery)
		h.log.Warn("SES region marked down", zap.String("region", region),
			zap.Int("consecutive_failures", st.failures), zap.Duration("probe_every", probeEvery))
	}
}

// observe records an attempt's outcome when it went to a region of
// ses.regions (not to a multi-region endpoint).
func (s *Sender) observe(o *Options, rt route, region string, failed bool) {
	if rt.endpointID == "" && slices.Contains(o.Regions, region) {
		s.health.record(region, failed, o.FailoverAfter, o.ProbeEvery)
	}
}

// RegionStatus is the health of one region of ses.regions.
type RegionStatus struct {
	Region string
	Up     bool
	// Since is when the region last changed state (zero: up since start).
	Since time.Time
}

// Regions returns the health of the regions of ses.regions, in order
// (none when the list is empty).
func (s *Sender) Regions() []RegionStatus {
	o := s.opts.Load()
	h := s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]RegionStatus, 0, len(o.Regions))
	for _, r := range o.Regions {
		st := h.state(r)
		out = append(out, RegionStatus{Region: r, Up: !st.down, Since: st.since})
	}
	return out
}

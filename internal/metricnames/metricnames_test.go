package metricnames

import (
	"slices"
	"testing"
)

func TestAll(t *testing.T) {
	names, err := All()
	if err != nil {
		t.Fatal(err)
	}
	// One from each source: relay.Metrics, the SES sender, the queue.
	for _, want := range []string{"sesrelay_messages_total", "sesrelay_ses_request_duration_seconds", "sesrelay_queue_messages"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s missing from %v", want, names)
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("not sorted or not unique: %v", names)
	}
}

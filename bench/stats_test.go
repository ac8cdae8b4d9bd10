package main

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{99.9, 100 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0.1, 1 * time.Millisecond},
		{1, 1 * time.Millisecond},
	} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v, want 0", got)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile of one sample = %v, want 7", got)
	}
	// Nearest rank: with 3 samples p50 is the 2nd, p99 the 3rd.
	three := []time.Duration{1, 2, 3}
	if percentile(three, 50) != 2 || percentile(three, 99) != 3 || percentile(three, 33) != 1 {
		t.Errorf("nearest rank on 3 samples: p33 %v p50 %v p99 %v", percentile(three, 33), percentile(three, 50), percentile(three, 99))
	}
}

func TestSummarizeSortsAndConverts(t *testing.T) {
	s := summarize([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond, 1500 * time.Microsecond})
	if s.N != 4 || s.P50 != 1.5 || s.Max != 3 || s.P99 != 3 {
		t.Errorf("summarize = %+v", s)
	}
	if z := summarize(nil); z.N != 0 || z.P99 != 0 {
		t.Errorf("summarize(nil) = %+v", z)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5}, 5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median changed its input: %v", tc.in)
			}
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
	if !math.IsNaN(ratio(1, 0)) || ratio(3, 4) != 0.75 || !math.IsNaN(ratio(math.NaN(), 1)) {
		t.Error("ratio")
	}
}

package main

import (
	"context"
	"testing"
	"time"
)

func startTestBaseline(t *testing.T) *baseline {
	t.Helper()
	b, err := startBaseline("127.0.0.1:0", benchUser, benchPass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testLoad(b *baseline) loadConfig {
	return loadConfig{Addr: b.Addr(), User: benchUser, Pass: benchPass, Mode: modePersistent, Conns: 4, Size: 8192,
		From: benchFrom, To: benchTo, Timeout: 10 * time.Second}
}

func TestLoadCountAgainstBaseline(t *testing.T) {
	b := startTestBaseline(t)
	for _, mode := range []string{modePersistent, modePerMessage} {
		cfg := testLoad(b)
		cfg.Mode, cfg.Count = mode, 40
		var starts, ends int
		cfg.OnWindow = func(start bool) {
			if start {
				starts++
			} else {
				ends++
			}
		}
		res, err := runLoad(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Messages != 40 || res.Failed != 0 || len(res.Errors) != 0 {
			t.Errorf("%s: %d messages, %d failed, errors %v %v", mode, res.Messages, res.Failed, res.Errors, res.ErrorSamples)
		}
		if res.Reply.N != 40 || res.Reply.P50 <= 0 || res.Reply.P99 < res.Reply.P50 || res.PerSec <= 0 {
			t.Errorf("%s: reply %+v, %.1f msg/s", mode, res.Reply, res.PerSec)
		}
		if (mode == modePerMessage) != (res.Setup != nil) || (res.Setup != nil && res.Setup.N != 40) {
			t.Errorf("%s: setup %+v", mode, res.Setup)
		}
		if starts != 1 || ends != 1 {
			t.Errorf("%s: OnWindow called %d/%d times", mode, starts, ends)
		}
	}
}

func TestLoadDurationOpenLoop(t *testing.T) {
	b := startTestBaseline(t)
	cfg := testLoad(b)
	cfg.Duration, cfg.Warmup, cfg.Rate = 500*time.Millisecond, 200*time.Millisecond, 200
	res, err := runLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 200/s over 0.5 s: about 100 in the window.
	if res.Messages < 80 || res.Messages > 110 || res.Failed != 0 {
		t.Errorf("open loop: %d messages (%d failed, %v) in %.2fs", res.Messages, res.Failed, res.ErrorSamples, res.Seconds)
	}
	if res.Sojourn == nil || res.Sojourn.N != int(res.Messages) || res.Seconds != 0.5 {
		t.Errorf("open loop: sojourn %+v, seconds %v", res.Sojourn, res.Seconds)
	}
}

func TestLoadIdleAndBig(t *testing.T) {
	b := startTestBaseline(t)
	cfg := testLoad(b)
	cfg.Idle, cfg.MaxSetup = 30, 8
	held := false
	cfg.Hold = func() { held = true }
	res, err := runLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !held || res.Opened != 30 || res.OpenSeconds <= 0 || len(res.Errors) != 0 {
		t.Errorf("idle: held %v, %+v", held, res)
	}

	for _, conns := range []int{1, 4} {
		cfg = testLoad(b)
		cfg.Big, cfg.Conns = 3<<20, conns
		res, err = runLoad(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Messages != int64(conns) || res.Size != 3<<20 || len(res.Errors) != 0 {
			t.Errorf("big on %d connections: %+v", conns, res)
		}
	}
}

func TestLoadCountsReplyCodes(t *testing.T) {
	b := startTestBaseline(t)
	cfg := testLoad(b)
	cfg.Pass, cfg.Count, cfg.Conns = "wrong", 3, 1
	res, err := runLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 0 || res.Failed != 3 || res.Errors["535"] != 3 {
		t.Errorf("wrong password: %d ok, %d failed, %v", res.Messages, res.Failed, res.Errors)
	}
}

func TestLoadConfigCheck(t *testing.T) {
	for _, cfg := range []loadConfig{
		{Mode: modePersistent, Conns: 1, From: "a@b", Count: 1},
		{Addr: "x:1", Mode: "pipelined", Conns: 1, From: "a@b", Count: 1},
		{Addr: "x:1", Mode: modePersistent, Conns: 0, From: "a@b", Count: 1},
		{Addr: "x:1", Mode: modePersistent, Conns: 1, From: "a@b"},
		{Addr: "x:1", Mode: modePersistent, Conns: 1, From: "a@b", Count: 1, Duration: time.Second},
		{Addr: "x:1", Mode: modePersistent, Conns: 1, From: "nobody", Count: 1},
	} {
		if err := cfg.check(); err == nil {
			t.Errorf("check(%+v): no error", cfg)
		}
	}
}

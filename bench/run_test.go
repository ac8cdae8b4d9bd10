package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sesrelay/sesrelay/config"
)

// The configuration "bench run" writes must load with the relay's own
// loader, with and without DKIM, in direct and in queue mode.
func TestRelayConfigLoads(t *testing.T) {
	o := &orchestrator{runOpts: runOpts{dir: t.TempDir()}}
	if err := o.prepare(); err != nil {
		t.Fatal(err)
	}
	for i, key := range []string{"", o.keys["rsa"], o.keys["ed25519"], ""} {
		file := filepath.Join(o.dir, "relay.yaml")
		qdir := ""
		if i == 3 {
			qdir = filepath.Join(o.dir, "queue")
		}
		y := relayConfig("127.0.0.1:2525", "127.0.0.1:9099", "https://127.0.0.1:4443", o.hash, key, qdir)
		if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(file)
		if err != nil {
			t.Fatalf("key %q: %v\n%s", key, err, y)
		}
		tn := cfg.Tenants[0]
		if !tn.Users[0].Hash.Verify(benchPass) || cfg.SES.Endpoint != "https://127.0.0.1:4443" || cfg.SES.MaxAttempts != 1 ||
			cfg.Server.MaxConnectionsPerIP != 0 || (key != "") != (len(tn.DKIM) == 1) ||
			cfg.Queue.Dir != qdir || (cfg.Delivery.Mode == "queue") != (qdir != "") {
			t.Errorf("key %q: loaded %+v", key, cfg)
		}
	}
}

func TestParseScenarios(t *testing.T) {
	for in, want := range map[string][]int{"1": {1}, "1..5": {1, 2, 3, 4, 5}, "3,1": {3, 1}, "1..2,2,5": {1, 2, 5}, "6": {6}, "7": {7}, "none": nil} {
		if got, err := parseScenarios(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseScenarios(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "8", "2..1", "a", "1..8"} {
		if _, err := parseScenarios(bad); err == nil {
			t.Errorf("parseScenarios(%q): no error", bad)
		}
	}
}

func TestMachineLine(t *testing.T) {
	if l := machineLine(); !strings.Contains(l, "CPUs") || !strings.Contains(l, "go1.") {
		t.Errorf("machineLine() = %q", l)
	}
}

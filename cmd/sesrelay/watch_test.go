package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A file in the configuration directory that the configuration does not
// use (here the relay's own log with log.level: debug) does not feed the
// watcher: no event is logged, no reload runs. A watcher that logged each
// event at debug into that file would feed itself without end.
func TestWatcherIgnoresUnusedFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sesrelay.yaml")
	writeAtomic(t, path, strings.NewReplacer("OUTBOX", filepath.Join(dir, "outbox"), "BILLING_HASH", reloadHash).Replace(reloadYAML))
	h := startReloadDaemon(t, path)
	logFile := filepath.Join(dir, "sesrelay.log")
	for i := 0; i < 5; i++ {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("{\"level\":\"debug\"}\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * h.d.rs.debounce)
	if n := h.logs.FilterMessageSnippet("changed").Len(); n != 0 {
		t.Fatalf("%d watcher events logged for a file the configuration does not use", n)
	}
	select {
	case ev := <-h.events:
		t.Fatalf("reload run: %+v", ev)
	default:
	}
	// The configuration file itself still reloads.
	writeAtomic(t, path, strings.NewReplacer("OUTBOX", filepath.Join(dir, "outbox"), "BILLING_HASH", reloadHash).Replace(reloadYAML)+supportTenant)
	if ev := h.wait(); !ev.ok {
		t.Fatal("reload failed")
	}
}

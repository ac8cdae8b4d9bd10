package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
)

// Hot reload. A reload (SIGHUP, or a change of the configuration file or of
// a file it points at) loads and validates a complete new configuration —
// tenants, users and password hashes, DKIM keys, unsubscribe secrets, the
// TLS certificate — and swaps it in atomically (relay.Server.Reload);
// sessions already authenticated finish with the snapshot they started
// with. The rate limits follow (ses.max_send_rate "auto" asks SES again),
// and so do the SES retry settings. A configuration that does not load is
// logged with every problem and the one in force keeps serving.
//
// The watcher watches directories, not files: editors replace files by
// renaming, and a Kubernetes ConfigMap or Secret volume swaps a "..data"
// symlink, neither of which a watch on the file itself survives. Only events
// on the files the configuration uses count (see uses). Events are
// debounced, and a reload runs only when the content (the configuration
// file and the files it points at) hashed differently from the one in
// force.

const (
	reloadDebounce = 500 * time.Millisecond
	autoRateRetry  = time.Minute
)

// reloadState is the daemon's reload bookkeeping.
type reloadState struct {
	mu         sync.Mutex
	subs       []subscriber
	hash       string // content hash of the configuration in force
	failedHash string // content hash of the last configuration that failed to load
	autoFailed bool   // ses.max_send_rate: auto could not be resolved
	debounce   time.Duration
	watched    map[string]bool // directories
	files      map[string]bool // the configuration file and the files it points at
}

// subscriber applies a loaded configuration to one part of the relay. A
// reload hands the new configuration to each in order and stops at the
// first error: only the first two may fail (the restart keys check, then
// the relay's snapshot, which compiles everything) and neither changes
// anything when it does; the others apply what is known to be valid.
type subscriber struct {
	name  string
	apply func(ctx context.Context, cfg *config.Config) error
}

// initReload records what reloads need, subscribes the parts of the
// relay to reloads and applies the rate limits of cfg.
func (d *daemon) initReload(ctx context.Context, cfg *config.Config) {
	d.rs.debounce = reloadDebounce
	d.rs.hash = contentHash(d.path, referencedFiles(cfg))
	d.rs.subs = []subscriber{
		{"restart keys", func(_ context.Context, cfg *config.Config) error { return restartKeysUnchanged(d.srv.Config(), cfg) }},
		{"smtp", func(_ context.Context, cfg *config.Config) error { return d.srv.Reload(cfg) }},
	}
	if s := d.parts.ses; s != nil {
		// Before the rate limits: ses.max_send_rate auto asks SES with
		// the new settings.
		d.rs.subs = append(d.rs.subs, subscriber{"ses", func(_ context.Context, cfg *config.Config) error {
			s.Reconfigure(ses.OptionsFromConfig(&cfg.SES))
			return nil
		}})
	}
	d.rs.subs = append(d.rs.subs, subscriber{"rate limits", func(ctx context.Context, cfg *config.Config) error {
		d.applyLimits(ctx, cfg)
		return nil
	}})
	d.applyLimits(ctx, cfg)
}

// restartKeysUnchanged refuses a configuration that changes a key only a
// restart applies (config.RestartKeys): a reload must never say yes and
// leave a change without effect.
func restartKeysUnchanged(cur, cfg *config.Config) error {
	changed := config.RestartChanges(cur, cfg)
	if len(changed) == 0 {
		return nil
	}
	e := &config.Errors{}
	for _, k := range changed {
		e.List = append(e.List, k+": changed, takes effect only after a restart")
	}
	return e
}

// apply hands cfg to every subscriber, in order.
func (d *daemon) apply(ctx context.Context, cfg *config.Config) error {
	for _, s := range d.rs.subs {
		if err := s.apply(ctx, cfg); err != nil {
			return err
		}
	}
	return nil
}

// ConfigHash is the content hash of the configuration in force (hex
// SHA-256 of the file and of the files it points at).
func (d *daemon) ConfigHash() string {
	d.rs.mu.Lock()
	defer d.rs.mu.Unlock()
	return d.rs.hash
}

// reload reloads unconditionally (SIGHUP). It reports success.
func (d *daemon) reload() bool { return d.reloadAs(context.Background(), "SIGHUP", true) }

// reloadAs loads and applies the configuration. Without force it does
// nothing when the content is the one in force, or the one that last
// failed.
func (d *daemon) reloadAs(ctx context.Context, trigger string, force bool) bool {
	d.rs.mu.Lock()
	defer d.rs.mu.Unlock()
	if !force {
		h := contentHash(d.path, referencedFiles(d.srv.Config()))
		if h == d.rs.hash || h == d.rs.failedHash {
			return true
		}
	}
	cfg, err := config.Load(d.path)
	var hash string
	if err == nil {
		hash = contentHash(d.path, referencedFiles(cfg))
		err = d.apply(ctx, cfg)
	} else {
		hash = contentHash(d.path, referencedFiles(d.srv.Config()))
	}
	if err != nil {
		d.rs.failedHash = hash
		d.log.Error("reload failed, keeping the previous configuration", zap.String("trigger", trigger),
			zap.String("config", d.path), zap.Strings("problems", problemList(err)), zap.String("config_hash", hash))
		d.notifyReload(false, hash)
		return false
	}
	d.rs.hash, d.rs.failedHash = hash, ""
	d.log.Info("configuration reloaded", zap.String("trigger", trigger), zap.String("config", d.path),
		zap.String("config_hash", hash), zap.Int("tenants", len(cfg.Tenants)))
	d.notifyReload(true, hash)
	return true
}

func (d *daemon) notifyReload(ok bool, hash string) {
	if d.onReload != nil {
		d.onReload(ok, hash)
	}
}

// problemList is every problem of a configuration error, one per entry.
func problemList(err error) []string {
	var ce *config.Errors
	if errors.As(err, &ce) {
		return ce.List
	}
	return []string{err.Error()}
}

// applyLimits resolves ses.max_send_rate and sets the rate limits. When
// "auto" cannot be resolved, the global rate in force stays (none at
// start) and reloadLoop tries again every minute.
func (d *daemon) applyLimits(ctx context.Context, cfg *config.Config) {
	rl, q := d.parts.limiter, d.parts.sendQuota()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	global, err := relay.ResolveSendRate(cctx, &cfg.SES, q)
	d.rs.autoFailed = err != nil && q != nil
	if err != nil {
		global = rl.Limits().Global
		d.log.Error("cannot resolve ses.max_send_rate, keeping the global rate in force (0 = none)",
			zap.String("max_send_rate", cfg.SES.MaxSendRate), zap.Float64("global_rate", global), zap.Error(err))
	}
	limits := relay.RateLimitsFromConfig(cfg, global)
	rl.Update(limits)
	d.log.Info("sending rate limits", zap.Float64("global_rate", global), zap.String("max_send_rate", cfg.SES.MaxSendRate),
		zap.Int("replicas", cfg.SES.Replicas), zap.Int("tenant_limits", len(limits.Tenants)), zap.Duration("wait", limits.Wait))
}

// startReloader starts watching the configuration (before it returns, so
// no change after it is missed) and the reload loop, which runs until ctx
// ends: SIGHUP, debounced file changes, and the retry of an unresolved
// ses.max_send_rate: auto.
func (d *daemon) startReloader(ctx context.Context, hup <-chan os.Signal) {
	var w *fsnotify.Watcher
	if d.path != "" {
		var err error
		w, err = fsnotify.NewWatcher()
		if err != nil {
			d.log.Warn("configuration file watching is off (reload with SIGHUP)", zap.Error(err))
			w = nil
		} else {
			d.watch(w)
		}
	}
	go d.reloadLoop(ctx, hup, w)
}

func (d *daemon) reloadLoop(ctx context.Context, hup <-chan os.Signal, w *fsnotify.Watcher) {
	var (
		events <-chan fsnotify.Event
		errs   <-chan error
	)
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	retry := time.NewTicker(autoRateRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			d.reloadAs(ctx, "SIGHUP", true)
			d.watch(w)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !d.uses(ev.Name) {
				// Not logged either: a log file in the directory would
				// feed the watcher with its own lines.
				continue
			}
			d.log.Debug("configuration file changed", zap.String("file", ev.Name), zap.String("op", ev.Op.String()))
			debounce.Reset(d.rs.debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			d.log.Warn("configuration file watcher", zap.Error(err))
		case <-debounce.C:
			d.reloadAs(ctx, "file change", false)
			d.watch(w)
		case <-retry.C:
			d.rs.mu.Lock()
			if d.rs.autoFailed {
				d.applyLimits(ctx, d.srv.Config())
			}
			d.rs.mu.Unlock()
		}
	}
}

// watch makes w watch the directories of the configuration file and of
// every file it points at.
func (d *daemon) watch(w *fsnotify.Watcher) {
	if w == nil {
		return
	}
	want, files := map[string]bool{}, map[string]bool{}
	for _, f := range append([]string{d.path}, referencedFiles(d.srv.Config())...) {
		if abs, err := filepath.Abs(f); err == nil {
			want[filepath.Dir(abs)] = true
			files[abs] = true
		}
	}
	d.rs.mu.Lock()
	defer d.rs.mu.Unlock()
	d.rs.files = files
	if d.rs.watched == nil {
		d.rs.watched = map[string]bool{}
	}
	for dir := range d.rs.watched {
		if !want[dir] {
			_ = w.Remove(dir)
			delete(d.rs.watched, dir)
		}
	}
	for dir := range want {
		if d.rs.watched[dir] {
			continue
		}
		if err := w.Add(dir); err != nil {
			d.log.Warn("cannot watch a configuration directory (reload with SIGHUP)", zap.String("dir", dir), zap.Error(err))
			continue
		}
		d.rs.watched[dir] = true
	}
}

// uses reports whether a watcher event on name concerns the
// configuration: the configuration file or a file it points at (an editor
// or a config management tool replacing it by rename included), or the
// hidden "..data" entries through which a Kubernetes ConfigMap or Secret
// volume swaps its files. Events on other files of the same directories
// (a log file, an editor's swap file) are ignored.
func (d *daemon) uses(name string) bool {
	abs, err := filepath.Abs(name)
	if err != nil {
		return false
	}
	d.rs.mu.Lock()
	defer d.rs.mu.Unlock()
	if d.rs.files[abs] {
		return true
	}
	return strings.HasPrefix(filepath.Base(abs), "..") && d.rs.watched[filepath.Dir(abs)]
}

// referencedFiles are the files cfg was loaded from besides itself.
func referencedFiles(cfg *config.Config) []string {
	var out []string
	add := func(f string) {
		if f != "" {
			out = append(out, f)
		}
	}
	add(cfg.Server.TLS.CertFile)
	add(cfg.Server.TLS.KeyFile)
	for i := range cfg.Tenants {
		t := &cfg.Tenants[i]
		for j := range t.DKIM {
			add(t.DKIM[j].KeyFile)
		}
		for j := range t.Users {
			add(t.Users[j].PasswordHashFile)
		}
		if t.ListUnsubscribe != nil {
			add(t.ListUnsubscribe.SecretFile)
			for _, f := range t.ListUnsubscribe.PreviousSecretFiles {
				add(f)
			}
			add(t.ListUnsubscribe.Webhook.SecretFile)
		}
	}
	sort.Strings(out)
	return out
}

// contentHash hashes the configuration file and files (hex SHA-256). A
// file that cannot be read hashes as its error.
func contentHash(path string, files []string) string {
	h := sha256.New()
	for _, f := range append([]string{path}, files...) {
		fmt.Fprintf(h, "%s\x00", f)
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "error: %v\x00", err)
			continue
		}
		fmt.Fprintf(h, "%d\x00", len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

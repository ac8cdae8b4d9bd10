package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/queue"
	"github.com/sesrelay/sesrelay/relay"
)

const queueUsage = `usage: sesrelay queue <command> [flags]

commands (Postfix: mailq, postcat -q, postqueue -f, postsuper -d, postsuper -r):
  list [--tenant T] [--format text|json]   waiting and dead messages
  show ID                                  one message: state and headers
  retry ID | --all                         send now
  delete ID                                remove a message for good, without a DSN
  requeue ID                               move a dead message back to the queue

flags:
  --config FILE       the relay's configuration (queue.dir, admin.address)
  --admin HOST:PORT   the admin listener of the running relay (default: admin.address)
  --timeout D         how long a command, or a retry on a stopped relay, may take (default 2m)

On a running relay (it holds the queue directory's lock) the commands go
through its admin listener, from the same host; on a stopped one they work
on queue.dir directly, under the same lock, and retry sends through SES
with the configuration's settings.
`

// queueOps is what the commands do, on a running relay (queueRemote)
// or on the directory (queueLocal).
type queueOps interface {
	list(ctx context.Context, tenant string) ([]*queue.Entry, error)
	show(ctx context.Context, id string) (*queueShow, error)
	retry(ctx context.Context, ids []string, all bool, out io.Writer) error
	delete(ctx context.Context, id string) error
	requeue(ctx context.Context, id string) error
	close()
}

func cmdQueue(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, queueUsage)
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("queue "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file")
	admin := fs.String("admin", "", "admin listener HOST:PORT of the running relay")
	tenant := fs.String("tenant", "", "list: only this tenant")
	format := fs.String("format", "text", "list, show: text or json")
	all := fs.Bool("all", false, "retry: every waiting message")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return 2
	}
	needID := map[string]bool{"show": true, "delete": true, "requeue": true, "retry": !*all}
	if _, known := map[string]bool{"list": true, "show": true, "retry": true, "delete": true, "requeue": true}[sub]; !known {
		fmt.Fprintf(stderr, "sesrelay queue: unknown command %q\n\n%s", sub, queueUsage)
		return 2
	}
	if (needID[sub] && len(pos) != 1) || (!needID[sub] && len(pos) != 0) || (*format != "text" && *format != "json") {
		fmt.Fprint(stderr, queueUsage)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	ops, err := openQueueOps(ctx, *cfgPath, *admin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay queue: %v\n", err)
		return 1
	}
	defer ops.close()
	id := ""
	if len(pos) == 1 {
		id = pos[0]
	}
	switch sub {
	case "list":
		var es []*queue.Entry
		if es, err = ops.list(ctx, *tenant); err == nil {
			if *format == "json" {
				err = printJSON(stdout, es)
			} else {
				printQueue(stdout, es, time.Now())
			}
		}
	case "show":
		var s *queueShow
		if s, err = ops.show(ctx, id); err == nil {
			if *format == "json" {
				err = printJSON(stdout, s)
			} else {
				printEntry(stdout, s)
			}
		}
	case "retry":
		err = ops.retry(ctx, pos, *all, stdout)
	case "delete":
		if err = ops.delete(ctx, id); err == nil {
			fmt.Fprintf(stdout, "%s: deleted\n", id)
		}
	case "requeue":
		if err = ops.requeue(ctx, id); err == nil {
			fmt.Fprintf(stdout, "%s: requeued\n", id)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay queue %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// parseInterleaved parses flags placed before, between or after the
// positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// openQueueOps opens queue.dir when no relay holds it, else talks to the
// running relay's admin listener.
func openQueueOps(ctx context.Context, cfgPath, admin string, stderr io.Writer) (queueOps, error) {
	var cfg *config.Config
	if cfgPath != "" {
		var err error
		if cfg, err = config.Load(cfgPath); err != nil {
			return nil, err
		}
	}
	if admin != "" {
		return &queueRemote{base: "http://" + dialAddress(admin)}, nil
	}
	if cfg == nil {
		return nil, errors.New("give --config (the relay's configuration) or --admin HOST:PORT")
	}
	if cfg.Queue.Dir == "" {
		return nil, fmt.Errorf("%s: queue.dir is not set: this relay has no queue", cfgPath)
	}
	q, err := queue.Open(cfg.Queue.Dir, queue.Options{})
	if errors.Is(err, queue.ErrLocked) {
		if cfg.Admin.Address == "" {
			return nil, fmt.Errorf("%w; the running relay has no admin listener (admin.address) to ask", err)
		}
		return &queueRemote{base: "http://" + dialAddress(cfg.Admin.Address)}, nil
	}
	if err != nil {
		return nil, err
	}
	return &queueLocal{q: q, cfg: cfg, stderr: stderr}, nil
}

// queueRemote is the admin API of a running relay.
type queueRemote struct{ base string }

func (r *queueRemote) close() {}

func (r *queueRemote) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the relay's admin listener: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}

func (r *queueRemote) list(ctx context.Context, tenant string) ([]*queue.Entry, error) {
	var es []*queue.Entry
	err := r.do(ctx, http.MethodGet, "/queue/?tenant="+url.QueryEscape(tenant), &es)
	return es, err
}

func (r *queueRemote) show(ctx context.Context, id string) (*queueShow, error) {
	var s queueShow
	if err := r.do(ctx, http.MethodGet, "/queue/"+url.PathEscape(id), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (r *queueRemote) retry(ctx context.Context, ids []string, all bool, out io.Writer) error {
	if all {
		var res struct{ Count int }
		if err := r.do(ctx, http.MethodPost, "/queue/retry", &res); err != nil {
			return err
		}
		fmt.Fprintf(out, "%d messages due now; the relay sends them\n", res.Count)
		return nil
	}
	for _, id := range ids {
		if err := r.do(ctx, http.MethodPost, "/queue/"+url.PathEscape(id)+"/retry", nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: due now; the relay sends it\n", id)
	}
	return nil
}

func (r *queueRemote) delete(ctx context.Context, id string) error {
	return r.do(ctx, http.MethodDelete, "/queue/"+url.PathEscape(id), nil)
}

func (r *queueRemote) requeue(ctx context.Context, id string) error {
	return r.do(ctx, http.MethodPost, "/queue/"+url.PathEscape(id)+"/requeue", nil)
}

// queueLocal works on the directory of a stopped relay, holding its lock.
type queueLocal struct {
	q      *queue.Queue
	cfg    *config.Config
	stderr io.Writer
}

func (l *queueLocal) close() { l.q.Close() }

func (l *queueLocal) list(_ context.Context, tenant string) ([]*queue.Entry, error) {
	return l.q.List(tenant), nil
}

func (l *queueLocal) show(_ context.Context, id string) (*queueShow, error) {
	e, err := l.q.Show(id)
	if e == nil {
		return nil, err
	}
	s := &queueShow{Entry: e}
	for _, r := range e.Requests {
		s.Headers = append(s.Headers, string(r.Header))
	}
	if err != nil {
		s.Error = err.Error()
	}
	return s, nil
}

func (l *queueLocal) delete(_ context.Context, id string) error  { return l.q.Delete(id) }
func (l *queueLocal) requeue(_ context.Context, id string) error { return l.q.Requeue(id) }

// retry makes the entries due and sends them now, as the relay would
// (same sender, rate limits, DKIM, DSNs), until each was tried once or
// ctx ends.
func (l *queueLocal) retry(ctx context.Context, ids []string, all bool, out io.Writer) error {
	if all {
		if _, err := l.q.RetryAll(); err != nil {
			return err
		}
		ids = nil
		for _, e := range l.q.List("") {
			if !e.Dead {
				ids = append(ids, e.ID)
			}
		}
	} else {
		for _, id := range ids {
			if err := l.q.Retry(id); err != nil {
				return err
			}
		}
	}
	if len(ids) == 0 {
		fmt.Fprintln(out, "nothing waits")
		return nil
	}
	attempts := map[string]int{}
	for _, e := range l.q.List("") {
		attempts[e.ID] = e.Attempts
	}
	cfg := l.cfg
	log, err := newLogger(cfg.Log, l.stderr)
	if err != nil {
		return err
	}
	parts, err := buildDelivery(ctx, cfg, log)
	if err != nil {
		return err
	}
	global, err := relay.ResolveSendRate(ctx, &cfg.SES, parts.sendQuota())
	if err != nil {
		return err
	}
	parts.limiter.Update(relay.RateLimitsFromConfig(cfg, global))
	srv, err := relay.NewServer(cfg, relay.Options{Sender: parts.sender(), Logger: log, Queue: l.q})
	if err != nil {
		return err
	}
	runner := newQueueRunner(cfg, l.q, srv, parts.limiter)
	runner.Start()
	left := func() []string {
		byID := map[string]*queue.Entry{}
		for _, e := range l.q.List("") {
			byID[e.ID] = e
		}
		var rest []string
		for _, id := range ids {
			if e := byID[id]; e != nil && !e.Dead && e.Attempts <= attempts[id] {
				rest = append(rest, id)
			}
		}
		return rest
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for len(left()) > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	runner.Stop(sctx)
	byID := map[string]*queue.Entry{}
	for _, e := range l.q.List("") {
		byID[e.ID] = e
	}
	for _, id := range ids {
		switch e := byID[id]; {
		case e == nil:
			fmt.Fprintf(out, "%s: delivered\n", id)
		case e.Dead:
			fmt.Fprintf(out, "%s: dead (%s)\n", id, e.DeadReason)
		case e.Attempts > attempts[id]:
			fmt.Fprintf(out, "%s: deferred until %s: %s\n", id, e.NextAttempt.Format(time.RFC3339), e.LastError)
		default:
			fmt.Fprintf(out, "%s: not tried (timeout)\n", id)
		}
	}
	_ = log.Sync()
	if ctx.Err() != nil {
		return fmt.Errorf("stopped after the timeout: %w", ctx.Err())
	}
	log.Debug("queue retry done", zap.Int("messages", len(ids)))
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printQueue prints entries as mailq does: one line each, then their
// recipients and last error.
func printQueue(w io.Writer, es []*queue.Entry, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTENANT\tSTATE\tSIZE\tAGE\tATTEMPTS\tNEXT ATTEMPT\tSENDER")
	waiting, dead, size := 0, 0, int64(0)
	for _, e := range es {
		state, next := "waiting", e.NextAttempt.Format(time.RFC3339)
		if e.Dead {
			state, next = "dead:"+e.DeadReason, "-"
			dead++
		} else {
			waiting++
			size += e.Size
		}
		sender := e.Sender
		if sender == "" {
			sender = "<>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", e.ID, e.Tenant, state, e.Size,
			now.Sub(e.Created).Truncate(time.Second), e.Attempts, next, sender)
		for _, r := range e.Requests {
			fmt.Fprintf(tw, "  %s\t%s\t\t\t\t\t\t\n", r.State, strings.Join(r.Recipients, ", "))
		}
		if e.LastError != "" {
			fmt.Fprintf(tw, "  last error\t%s\t\t\t\t\t\t\n", e.LastError)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "%d messages waiting (%d bytes), %d dead\n", waiting, size, dead)
}

// printEntry prints one entry: its state as JSON-like lines, then each
// request's header block.
func printEntry(w io.Writer, s *queueShow) {
	e := s.Entry
	sender := e.Sender
	if sender == "" {
		sender = "<>"
	}
	fmt.Fprintf(w, "id: %s\ntenant: %s\nsender: %s\ncreated: %s\nqueued: %s\nattempts: %d\n",
		e.ID, e.Tenant, sender, e.Created.Format(time.RFC3339), e.Queued.Format(time.RFC3339), e.Attempts)
	if e.Dead {
		fmt.Fprintf(w, "dead: %s at %s\n", e.DeadReason, e.DeadAt.Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "next attempt: %s\n", e.NextAttempt.Format(time.RFC3339))
	}
	if e.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", e.LastError)
	}
	fmt.Fprintf(w, "size: %d (body %d)\n", e.Size, e.BodySize)
	if s.Error != "" {
		fmt.Fprintf(w, "data: %s\n", s.Error)
	}
	for i, r := range e.Requests {
		fmt.Fprintf(w, "\nrequest %d: %s %s", i, r.State, strings.Join(r.Recipients, ", "))
		if r.SESMessageID != "" {
			fmt.Fprintf(w, " (SES %s)", r.SESMessageID)
		}
		if r.Error != "" {
			fmt.Fprintf(w, " (%s %s)", r.Status, r.Error)
		}
		fmt.Fprintln(w)
		if i < len(s.Headers) {
			w.Write(bytes.ReplaceAll([]byte(s.Headers[i]), []byte("\r\n"), []byte("\n")))
		}
	}
}

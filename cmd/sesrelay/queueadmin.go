package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/queue"
)

// The queue on the admin listener: /readyz fails while the queue cannot
// be written, and /queue/ serves `sesrelay queue` on a running relay. The
// queue endpoints answer only clients on the loopback interface (the
// admin listener may bind every interface for Prometheus and probes;
// operating the queue is for whoever is on the relay's host or in its
// pod).
//
//	GET    /queue/?tenant=T   entries, active and dead, oldest first (JSON)
//	GET    /queue/ID          one entry and its header blocks (JSON)
//	POST   /queue/ID/retry    make an active entry due now
//	POST   /queue/retry       make every active entry due now
//	POST   /queue/ID/requeue  move a dead entry back
//	DELETE /queue/ID          remove an entry without a DSN

// queueShow is the JSON of GET /queue/ID.
type queueShow struct {
	Entry   *queue.Entry `json:"entry"`
	Headers []string     `json:"headers"`
	Error   string       `json:"error,omitempty"`
}

// attachQueue adds the queue to readiness and the queue endpoints.
func (a *adminServer) attachQueue(dq *daemonQueue) {
	if a == nil || dq == nil {
		return
	}
	a.ready.queue.Store(dq)
	if a.mux == nil {
		return
	}
	h := &queueAPI{q: dq.q, log: a.log}
	a.mux.HandleFunc("GET /queue/{$}", h.local(h.list))
	a.mux.HandleFunc("GET /queue/{id}", h.local(h.show))
	a.mux.HandleFunc("POST /queue/retry", h.local(h.retryAll))
	a.mux.HandleFunc("POST /queue/{id}/retry", h.local(h.retry))
	a.mux.HandleFunc("POST /queue/{id}/requeue", h.local(h.requeue))
	a.mux.HandleFunc("DELETE /queue/{id}", h.local(h.delete))
}

// queueFailing names the failing queue check, "" when the queue is
// writable or there is none.
func (r *readiness) queueFailing() string {
	dq := r.queue.Load()
	if dq == nil {
		return ""
	}
	if err := dq.q.Check(); err != nil {
		dq.log.Warn("readiness: the queue cannot be written, not ready", zap.Error(err))
		return "queue: cannot be written"
	}
	return ""
}

// queueDetail is the /readyz line of the queue.
func (r *readiness) queueDetail() []string {
	dq := r.queue.Load()
	if dq == nil {
		return nil
	}
	n, b := dq.q.Usage("")
	dead := 0
	for _, e := range dq.q.List("") {
		if e.Dead {
			dead++
		}
	}
	return []string{fmt.Sprintf("queue: %d messages (%d bytes) waiting, %d dead", n, b, dead)}
}

type queueAPI struct {
	q   *queue.Queue
	log *zap.Logger
}

// local refuses clients that are not on the loopback interface.
func (h *queueAPI) local(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "the queue endpoints answer loopback clients only", http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		next(w, r)
	}
}

func (h *queueAPI) list(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.q.List(r.URL.Query().Get("tenant")))
}

func (h *queueAPI) show(w http.ResponseWriter, r *http.Request) {
	e, err := h.q.Show(r.PathValue("id"))
	if e == nil {
		queueError(w, err)
		return
	}
	out := queueShow{Entry: e}
	for _, req := range e.Requests {
		out.Headers = append(out.Headers, string(req.Header))
	}
	if err != nil {
		out.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *queueAPI) retry(w http.ResponseWriter, r *http.Request) {
	h.done(w, r, "retry", h.q.Retry(r.PathValue("id")))
}

func (h *queueAPI) retryAll(w http.ResponseWriter, r *http.Request) {
	n, err := h.q.RetryAll()
	if err != nil {
		queueError(w, err)
		return
	}
	h.log.Info("queue: every entry made due by an operator", zap.Int("count", n))
	writeJSON(w, http.StatusOK, map[string]int{"count": n})
}

func (h *queueAPI) requeue(w http.ResponseWriter, r *http.Request) {
	h.done(w, r, "requeue", h.q.Requeue(r.PathValue("id")))
}

func (h *queueAPI) delete(w http.ResponseWriter, r *http.Request) {
	h.done(w, r, "delete", h.q.Delete(r.PathValue("id")))
}

func (h *queueAPI) done(w http.ResponseWriter, r *http.Request, op string, err error) {
	if err != nil {
		queueError(w, err)
		return
	}
	h.log.Info("queue: operator action", zap.String("op", op), zap.String("id", r.PathValue("id")))
	writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "done": op})
}

func queueError(w http.ResponseWriter, err error) {
	code := http.StatusConflict // e.g. requeue of an entry that is not dead
	switch {
	case errors.Is(err, queue.ErrClosed):
		code = http.StatusServiceUnavailable
	case errors.Is(err, queue.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, queue.ErrBusy):
		code = http.StatusConflict
	case errors.Is(err, queue.ErrWrite):
		code = http.StatusInsufficientStorage
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

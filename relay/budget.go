package relay

import (
	"io"
	"math"
	"runtime/debug"
	"sync"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
)

// The memory budget (server.max_inflight_bytes) and the per-tenant cap on
// transactions in progress (tenants[].max_concurrent_messages).
//
// A message in flight costs several times its size (the DATA buffer, the
// parsed copy, the signed request, the SDK's encoded body): a few large
// uploads at once could take the process past its memory limit and get
// it killed with every tenant's messages in flight. So all sessions share
// one budget of message bytes. A transaction reserves its SIZE= at MAIL
// (refused with 452 4.3.1 before the upload when it does not fit) and,
// without SIZE or past it, its bytes as they arrive; when the budget runs
// out during DATA the rest of the upload is read and dropped and the reply
// is 452 4.3.1. The reservation is given back when the transaction ends.

// budgetDivisor: the default budget is the memory limit divided by this,
// leaving room for the copies each message needs and everything else.
const budgetDivisor = 8

// budgetChunk is the granularity of reservations during DATA, so that
// sessions do not contend on the lock for every read.
const budgetChunk = 64 << 10

// inflightBudget is shared by all sessions of a Server.
type inflightBudget struct {
	derived int64  // default budget from the memory limit (0: unknown)
	source  string // where the memory limit came from
	metrics *Metrics

	mu      sync.Mutex
	used    int64
	tenants map[string]int
}

// memoryLimit is the memory limit the process runs under: the cgroup
// limit, or GOMEMLIMIT when set and lower; with neither, physical memory.
func memoryLimit() (int64, string) {
	var limit int64
	source := ""
	if v, err := memlimit.FromCgroup(); err == nil && v > 0 && v < math.MaxInt64/2 {
		limit, source = int64(v), "cgroup"
	}
	if g := debug.SetMemoryLimit(-1); g > 0 && g < math.MaxInt64 && (limit == 0 || g < limit) {
		limit, source = g, "GOMEMLIMIT"
	}
	if limit == 0 {
		if v, err := memlimit.FromSystem(); err == nil && v > 0 && v < math.MaxInt64/2 {
			limit, source = int64(v), "system"
		}
	}
	return limit, source
}

func newInflightBudget(m *Metrics) *inflightBudget {
	limit, source := memoryLimit()
	return &inflightBudget{derived: limit / budgetDivisor, source: source, metrics: m, tenants: map[string]int{}}
}

// limit is the budget in force for cfg: server.max_inflight_bytes, or the
// derived one, never below one message of the largest size.
func (b *inflightBudget) limit(cfg *config.Config) int64 {
	if n := cfg.Server.MaxInflightBytes; n > 0 {
		return n
	}
	n := b.derived
	if n <= 0 {
		n = 8 * cfg.Server.MaxMessageBytes
	}
	return max(n, cfg.Server.MaxMessageBytes)
}

// reserve takes n bytes if they fit under limit.
func (b *inflightBudget) reserve(n, limit int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > limit {
		return false
	}
	b.used += n
	b.metrics.inflight(b.used)
	return true
}

func (b *inflightBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.metrics.inflight(b.used)
	b.mu.Unlock()
}

// inUse reports the bytes reserved now (tests).
func (b *inflightBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// enter counts a transaction of tenant unless it already has max (0 = no
// limit).
func (b *inflightBudget) enter(tenant string, max int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if max > 0 && b.tenants[tenant] >= max {
		return false
	}
	b.tenants[tenant]++
	return true
}

func (b *inflightBudget) leave(tenant string) {
	b.mu.Lock()
	if b.tenants[tenant]--; b.tenants[tenant] <= 0 {
		delete(b.tenants, tenant)
	}
	b.mu.Unlock()
}

// txBudget is what one session's transaction holds. Only the session's
// goroutine uses it.
type txBudget struct {
	b        *inflightBudget
	limit    int64
	reserved int64
	tenant   string // counted in b.tenants; "" when not
	over     bool   // the budget ran out during DATA
}

// beginTx is called at MAIL: it ends any earlier transaction, takes the
// tenant's slot and reserves SIZE= (0: nothing yet).
func (sess *Session) beginTx(size int64) error {
	tx := &sess.tx
	tx.end()
	b := sess.srv.budget
	tenant := sess.tenant.Name
	if !b.enter(tenant, sess.tenant.Config.MaxConcurrentMessages) {
		sess.srv.metrics.budgetRefused(tenant, "tenant_concurrency")
		sess.log.Info("mail from refused", zap.String("reason", "tenant_max_concurrent_messages"),
			zap.Int("max_concurrent_messages", sess.tenant.Config.MaxConcurrentMessages))
		return errTenantBusy
	}
	*tx = txBudget{b: b, limit: b.limit(sess.srv.snapshot().cfg), tenant: tenant}
	if size > 0 {
		if !b.reserve(size, tx.limit) {
			sess.srv.metrics.budgetRefused(tenant, "budget_mail")
			sess.log.Info("mail from refused", zap.String("reason", "inflight_budget"), zap.Int64("size", size),
				zap.Int64("max_inflight_bytes", tx.limit))
			tx.end()
			return errBudget
		}
		tx.reserved = size
	}
	return nil
}

// end gives back what the transaction holds. It may be called any number
// of times.
func (tx *txBudget) end() {
	if tx.b == nil {
		return
	}
	tx.b.release(tx.reserved)
	if tx.tenant != "" {
		tx.b.leave(tx.tenant)
	}
	*tx = txBudget{}
}

// reader wraps the DATA reader: bytes past the reservation are reserved
// as they arrive. When the budget runs out, the rest of the upload is
// read and dropped (so the client reaches the final dot and reads the
// reply) and over is set; the reader then ends as if the message had.
func (tx *txBudget) reader(r io.Reader) io.Reader {
	if tx.b == nil {
		return r
	}
	return &budgetReader{r: r, tx: tx}
}

type budgetReader struct {
	r    io.Reader
	tx   *txBudget
	read int64
}

func (br *budgetReader) Read(p []byte) (int, error) {
	tx := br.tx
	if tx.over {
		return 0, io.EOF
	}
	n, err := br.r.Read(p)
	br.read += int64(n)
	if need := br.read - tx.reserved; need > 0 {
		need = (need + budgetChunk - 1) / budgetChunk * budgetChunk
		if !tx.b.reserve(need, tx.limit) {
			tx.over = true
			for err == nil {
				_, err = br.r.Read(p)
			}
			if err == io.EOF {
				return 0, io.EOF
			}
			return 0, err
		}
		tx.reserved += need
	}
	return n, err
}

// overBudget is the reply to a message whose upload ran out of budget.
func (sess *Session) overBudget(log *zap.Logger) *smtp.SMTPError {
	sess.srv.metrics.budgetRefused(sess.tenant.Name, "budget_data")
	sess.srv.metrics.message(sess.tenant.Name, "failed", "inflight_budget", 0)
	log.Warn("message refused", zap.String("reason", "inflight_budget"), zap.Int64("max_inflight_bytes", sess.tx.limit),
		zap.Int("code", 452))
	return errBudget
}

// newBudgetMetrics makes the budget's collectors (docs/operations.md).
func newBudgetMetrics() (prometheus.Gauge, *prometheus.CounterVec) {
	return prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sesrelay_inflight_bytes", Help: "Message bytes reserved by transactions in progress (server.max_inflight_bytes).",
		}), prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sesrelay_inflight_refused_total", Help: "Transactions refused with 452 4.3.1, by tenant and reason (budget_mail, budget_data, tenant_concurrency).",
		}, []string{"tenant", "reason"})
}

func (m *Metrics) inflight(n int64) {
	if m != nil {
		m.InflightBytes.Set(float64(n))
	}
}

func (m *Metrics) budgetRefused(tenant, reason string) {
	if m != nil {
		m.BudgetRefusals.WithLabelValues(tenant, reason).Inc()
	}
}

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// rssYAML: 8 MiB messages, and the budget under test (BUDGET).
const rssYAML = `
server:
  hostname: relay.test
  listeners: [{address: "ADDR", tls: none, allow_insecure_auth: true}]
  max_message_bytes: 8388608
  max_inflight_bytes: BUDGET
  shutdown_timeout: 5s
log: {level: warn}
delivery: {sender: file, file_dir: OUTBOX}
tenants:
  - name: billing
    users: [{username: billing-app, password_hash: "` + reloadHash + `"}]
    domains: ["billing.example.com"]
`

const (
	rssClients  = 16
	rssMsgBytes = 6 << 20
)

var buildOnce struct {
	sync.Once
	bin string
	err error
}

// relayBinary builds cmd/sesrelay once per test run.
func relayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sesrelay-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.bin = filepath.Join(dir, "sesrelay")
		out, err := exec.Command("go", "build", "-o", buildOnce.bin, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.bin
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// vmHWM reads the peak resident set size of pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/pid/status")
	return 0
}

// runRSS runs the relay binary with the given budget, sends rssClients
// messages of rssMsgBytes at once (half announce SIZE=, half do not) and
// returns the reply codes and the relay's peak RSS.
func runRSS(t *testing.T, budget int64) (codes map[int]int, hwm int64) {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := strings.NewReplacer("ADDR", addr, "BUDGET", strconv.FormatInt(budget, 10), "OUTBOX", filepath.Join(dir, "outbox")).Replace(rssYAML)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(relayBinary(t), "serve", "--config", path)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// The process's own memory limit must not hide the difference.
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=off", "GOGC=100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("relay output:\n%s", stderr.String())
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay did not listen on %s: %v\n%s", addr, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	body := "From: Billing <invoices@billing.example.com>\r\nTo: r@example.org\r\nSubject: big\r\n\r\n" +
		strings.Repeat(strings.Repeat("y", 76)+"\r\n", rssMsgBytes/78)
	// Every client is logged in before any uploads, so the uploads overlap.
	clients := make([]*smtp.Client, rssClients)
	for i := range clients {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", "billing-app", reloadPassword)); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	var mu sync.Mutex
	codes = map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range clients {
		wg.Go(func() {
			<-start
			code := 250
			if err := sendBig(c, i%2 == 0, body); err != nil {
				code = -1
				var se *smtp.SMTPError
				if errors.As(err, &se) {
					code = se.Code
				} else {
					t.Errorf("client %d: %v", i, err)
				}
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	// The relay is still up and serving.
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("relay down after the load: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("relay after the load: %v", err)
	}
	c.Close()
	return codes, vmHWM(t, cmd.Process.Pid)
}

func sendBig(c *smtp.Client, withSize bool, body string) error {
	var opts *smtp.MailOptions
	if withSize {
		opts = &smtp.MailOptions{Size: int64(len(body))}
	}
	if err := c.Mail("invoices@billing.example.com", opts); err != nil {
		return err
	}
	if err := c.Rcpt("r@example.org", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return err
	}
	return w.Close()
}

// TestInflightBudgetBoundsRSS runs the relay as its own process and sends
// more concurrent large messages than server.max_inflight_bytes allows:
// every client gets 250 or 452, the relay stays up, and its peak RSS
// stays under a bound. The same load without a budget (a budget far above
// it) is measured for comparison: its peak must be well above the bound,
// or the test would not show anything.
func TestInflightBudgetBoundsRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary")
	}
	const budget = 16 << 20 // two 6 MiB messages at a time
	const bound = 120 << 20
	codes, hwm := runRSS(t, budget)
	t.Logf("budget %d MiB: replies %v, peak RSS (VmHWM) %.1f MiB", budget>>20, codes, float64(hwm)/(1<<20))
	if codes[250] == 0 || codes[452] == 0 || codes[250]+codes[452] != rssClients {
		t.Errorf("replies %v: want only 250 and 452, some of each", codes)
	}
	if hwm > bound {
		t.Errorf("peak RSS %.1f MiB with a %d MiB budget, want under %d MiB", float64(hwm)/(1<<20), budget>>20, bound>>20)
	}

	codes, hwmFree := runRSS(t, 4<<30)
	t.Logf("no budget (4 GiB): replies %v, peak RSS (VmHWM) %.1f MiB", codes, float64(hwmFree)/(1<<20))
	if codes[250] != rssClients {
		t.Errorf("without a budget every message passes, got %v", codes)
	}
	if hwmFree <= bound {
		t.Errorf("without a budget the peak RSS is only %.1f MiB: the load does not test the bound", float64(hwmFree)/(1<<20))
	}
}

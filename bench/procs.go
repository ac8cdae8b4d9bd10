package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is a process the orchestrator started. It is stopped by its pid
// only: SIGTERM, then SIGKILL if it has not exited in time.
type child struct {
	name   string
	cmd    *exec.Cmd
	log    string // file holding its stdout and stderr
	exited chan struct{}
	err    error
}

// startChild starts bin with args and env, its output going to logPath.
func startChild(name, bin string, args, env []string, logPath string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so a ^C on the terminal reaches the
	// orchestrator, which then stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.exited)
	}()
	return c, nil
}

// Pid is the child's process id.
func (c *child) Pid() int { return c.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to grace before SIGKILL.
func (c *child) Stop(grace time.Duration) {
	select {
	case <-c.exited:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have just exited
	select {
	case <-c.exited:
	case <-time.After(grace):
		c.cmd.Process.Kill() //nolint:errcheck // it may have just exited
		<-c.exited
	}
}

// logTail returns the last lines of the child's output, for errors.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	for i, l := range lines {
		if len(l) > 600 {
			lines[i] = l[:600] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

func (c *child) failed(what string, err error) error {
	return fmt.Errorf("%s: %s: %w\n--- last lines of %s:\n%s", c.name, what, err, c.log, c.logTail())
}

// waitListening waits for the "listening on ADDR" line a bench
// subcommand prints first, and returns ADDR.
func (c *child) waitListening(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(c.log); err == nil {
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				if addr, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
					return addr, nil
				}
			}
		}
		select {
		case <-c.exited:
			return "", c.failed("exited before listening", errors.Join(c.err, errors.New("no listening line")))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return "", c.failed("waiting to listen", errors.New("timed out"))
}

// waitSMTP waits until addr answers with a 220 greeting.
func (c *child) waitSMTP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return c.failed("exited before accepting SMTP", errors.Join(c.err, last))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		last = greet(ctx, addr)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c.failed("waiting for SMTP on "+addr, last)
}

func greet(ctx context.Context, addr string) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(time.Second)) //nolint:errcheck // shows as a failed read
	code, text, err := readReply(bufio.NewReader(nc))
	if err != nil {
		return err
	}
	if code != 220 {
		return fmt.Errorf("greeting %d %s", code, text)
	}
	nc.Write([]byte("QUIT\r\n")) //nolint:errcheck // courtesy only
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

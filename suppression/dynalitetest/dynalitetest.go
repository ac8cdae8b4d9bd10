// Package dynalitetest runs the dynalite DynamoDB emulator (npm, pinned in
// e2e/package.json and installed by scripts/deps.sh) for tests that need a
// real DynamoDB engine behind the real aws-sdk-go-v2 client.
package dynalitetest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Start runs one dynalite on 127.0.0.1 with a free port, in memory, until
// t ends, and returns its endpoint URL. It skips t only when node is not
// installed; a missing dynalite package fails t, naming the fix.
func Start(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: DynamoDB tests need the dynalite emulator (run scripts/deps.sh)")
	}
	cli := cliPath(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		endpoint, err := start(t, node, cli)
		if err == nil {
			return endpoint
		}
		lastErr = err
	}
	t.Fatalf("dynalite: %v", lastErr)
	return ""
}

// AWSConfig is a configuration for the emulator: static test credentials
// (dynalite checks only that requests are signed) in us-east-1.
func AWSConfig() *aws.Config {
	return &aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	}
}

// cliPath finds dynalite's cli.js: $SESRELAY_DYNALITE, else
// e2e/node_modules/dynalite/cli.js at the module root.
func cliPath(t testing.TB) string {
	if p := os.Getenv("SESRELAY_DYNALITE"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("dynalite: go.mod not found above the test's directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, "e2e", "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("dynalite is not installed (%v): run scripts/deps.sh or (cd e2e && npm ci)", err)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func start(t testing.TB, node, cli string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	// Tables become active quickly: the tests wait for them.
	cmd := exec.Command(node, cli, "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--createTableMs", "10", "--deleteTableMs", "10", "--updateTableMs", "10")
	dieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening at") {
				ready <- nil
				for sc.Scan() {
				}
				return
			}
		}
		ready <- fmt.Errorf("exited before listening: %s", stderr.String())
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case err := <-ready:
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return "", err
		}
	case <-ctx.Done():
		cmd.Process.Kill()
		cmd.Wait()
		return "", fmt.Errorf("not listening on port %d after 30s: %s", port, stderr.String())
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return fmt.Sprintf("http://127.0.0.1:%d", port), nil
}

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckBadConfigs runs `sesrelay check` on every broken file under
// config/testdata/bad: exit 1 and every expected message ("# want:" lines).
func TestCheckBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../config/testdata/bad/*.yaml")
	if len(files) < 10 {
		t.Fatalf("only %d bad configs", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, _ := os.ReadFile(f)
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"check", "--config", f}, nil, &stdout, &stderr, nil); code != 1 {
				t.Fatalf("exit %d, stdout %s", code, stdout.String())
			}
			for _, line := range strings.Split(string(b), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok && !strings.Contains(stderr.String(), w) {
					t.Errorf("output %q lacks %q", stderr.String(), w)
				}
			}
		})
	}
}

func TestCheckGoodConfig(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check", "--config", "../../examples/dev.yaml"}, nil, &stdout, &stderr, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"OK", "127.0.0.1:2587  tls=starttls", "demo: 1 user(s), domains example.com, *.example.com"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
}

// TestCheckWarnings: risky settings are warned about on stderr, and the
// configuration still passes (exit 0).
func TestCheckWarnings(t *testing.T) {
	dev, err := os.ReadFile("../../examples/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	risky := strings.NewReplacer(`address: "127.0.0.1:2465"`, `address: "0.0.0.0:2465"`, `address: "127.0.0.1:9090"`, "address: \"[::]:9090\"\n  pprof: true").Replace(string(dev))
	if risky == string(dev) {
		t.Fatal("examples/dev.yaml changed: adapt the test")
	}
	f := filepath.Join(t.TempDir(), "risky.yaml")
	if err := os.WriteFile(f, []byte(risky), 0o644); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]string{
		"../../examples/dev.yaml": nil,
		f: {
			`warning: admin.pprof: on while admin.address "[::]:9090" is not a loopback address`,
			"warning: server.tls.self_signed: a self-signed certificate on server.listeners[1] (0.0.0.0:2465), not a loopback address",
		},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"check", "--config", file}, nil, &stdout, &stderr, nil); code != 0 {
			t.Fatalf("%s: exit %d: %s", file, code, stderr.String())
		}
		if got := strings.Count(stderr.String(), "warning: "); got != len(want) {
			t.Errorf("%s: %d warnings, want %d:\n%s", file, got, len(want), stderr.String())
		}
		for _, w := range want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%s: stderr lacks %q:\n%s", file, w, stderr.String())
			}
		}
	}
}

func TestHashPasswordAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"hash-password"}, strings.NewReader("s3cret\n"), &stdout, &stderr, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q", stdout.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"version"}, nil, &stdout, &stderr, nil); code != 0 || !strings.HasPrefix(stdout.String(), "sesrelay ") {
		t.Fatalf("version: %d %q", code, stdout.String())
	}
}

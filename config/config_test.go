package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDevConfigLoads(t *testing.T) {
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Delivery.Sender != SenderFile || len(cfg.Tenants) != 1 || cfg.Tenants[0].Users[0].Hash == nil {
		t.Fatalf("unexpected dev config: %+v", cfg)
	}
	if !cfg.Tenants[0].Users[0].Hash.Verify("demo-password") {
		t.Fatal("demo password does not verify")
	}
	ex, err := os.ReadFile("../examples/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ex, DevYAML()) {
		t.Fatal("examples/dev.yaml differs from config/dev.yaml; copy one over the other")
	}
}

func TestEnvOverride(t *testing.T) {
	t.Setenv("SESRELAY_SES_REGION", "eu-west-1")
	t.Setenv("SESRELAY_SERVER_MAX_RECIPIENTS", "10")
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SES.Region != "eu-west-1" || cfg.Server.MaxRecipients != 10 {
		t.Fatalf("env override not applied: region=%s max_recipients=%d", cfg.SES.Region, cfg.Server.MaxRecipients)
	}
}

func TestTagCaseKept(t *testing.T) {
	y := strings.Replace(string(DevYAML()), "stream: transactional", "Stream: transactional", 1)
	cfg, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tenants[0].Tags["Stream"] != "transactional" {
		t.Fatalf("tags = %v", cfg.Tenants[0].Tags)
	}
}

// TestBadConfigs loads every file under testdata/bad; the first lines of
// each file, as "# want: TEXT", list text each error must contain.
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) == 0 {
		t.Fatal("no bad configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for _, line := range strings.Split(string(b), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					wants = append(wants, w)
				}
			}
			if len(wants) == 0 {
				t.Fatal("no '# want:' line")
			}
			_, err = Load(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, w := range wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPasswordHashFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "hash")
	if err := os.WriteFile(f, []byte("$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(DevYAML()), `password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"`, "password_hash_file: "+f, 1)
	cfg, err := Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Tenants[0].Users[0].Hash.Verify("demo-password") {
		t.Fatal("hash from file does not verify")
	}
	if r := cfg.Redacted(); strings.Contains(r.Tenants[0].Users[0].PasswordHash, "$2a$") {
		t.Fatal("redacted config shows the hash")
	}
	_, err = Parse([]byte(strings.Replace(y, f, filepath.Join(dir, "missing"), 1)))
	if err == nil || !strings.Contains(err.Error(), "tenants[0].users[0].password_hash_file: open") {
		t.Fatalf("missing file: %v", err)
	}
}

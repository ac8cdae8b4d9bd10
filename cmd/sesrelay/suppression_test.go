package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/suppression"
	"github.com/sesrelay/sesrelay/suppression/dynalitetest"
)

const suppressionYAML = `
server:
  hostname: relay.test
  listeners: [{address: "127.0.0.1:2587"}]
  tls: {self_signed: true}
suppression:
SUPPRESSION
tenants:
  - name: acme
    users: [{username: a, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [acme.example.com]
  - name: other
    users: [{username: b, password_hash: "$2a$10$fLk/pjHAlbeiM/xrxs7rM.c4LTB14MuTZ6tjapQ/.k4ypkOY1Q3IC"}]
    domains: [other.example.com]
`

// suppressionConfig writes a configuration whose suppression section is
// section (indented YAML lines) and returns its path.
func suppressionConfig(t *testing.T, section string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sesrelay.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(suppressionYAML, "SUPPRESSION", section, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func embeddedConfig(t *testing.T) string {
	return suppressionConfig(t, "  dir: "+filepath.Join(t.TempDir(), "suppression")+"\n  timeout: 200ms")
}

func suppressionRun(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"suppression"}, args...), strings.NewReader(stdin), &out, &errOut, nil)
	return code, out.String(), errOut.String()
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	code, out, errOut := suppressionRun(t, stdin, args...)
	if code != 0 {
		t.Fatalf("suppression %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// exportRows returns the export's data rows (without the header).
func exportRows(t *testing.T, cfg, tenant string, extra ...string) []string {
	t.Helper()
	out := mustRun(t, "", append([]string{"export", "--config", cfg, "--tenant", tenant}, extra...)...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != "list,recipient,created,source" {
		t.Fatalf("export header %q", lines[0])
	}
	return lines[1:]
}

func TestSuppressionCommandsEmbedded(t *testing.T) {
	testSuppressionCommands(t, embeddedConfig(t), embeddedConfig(t))
}

func TestSuppressionCommandsDynamoDB(t *testing.T) {
	endpoint := dynalitetest.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	var cfgs []string
	for _, table := range []string{"one", "two"} {
		c := config.DynamoDBTable{Table: table, Region: "us-east-1", Endpoint: endpoint}
		s, err := suppression.NewDynamoDB(context.Background(), c, suppression.Options{AWSConfig: dynalitetest.AWSConfig()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTable(context.Background()); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, suppressionConfig(t, "  store: dynamodb\n  dynamodb: {table: "+table+", endpoint: \""+endpoint+"\"}"))
	}
	testSuppressionCommands(t, cfgs[0], cfgs[1])
}

// testSuppressionCommands runs the commands on the store of cfg, and
// imports its export into the (empty) store of cfg2.
func testSuppressionCommands(t *testing.T, cfg, cfg2 string) {
	out := mustRun(t, "", "add", "--config", cfg, "--tenant", "acme", "--list", "news", "Bob@Example.COM", "carol@example.com")
	if !strings.Contains(out, "suppressed 2 recipient(s) for tenant acme, list news") {
		t.Errorf("add said %q", out)
	}
	mustRun(t, "", "add", "--config", cfg, "--tenant", "acme", "--list", "offers", "--source", "support-ticket", "dave@example.com")
	mustRun(t, "", "add", "--config", cfg, "--tenant", "other", "--list", "news", "eve@example.com")

	out = mustRun(t, "", "list", "--config", cfg, "--tenant", "acme")
	for _, want := range []string{"news  Bob@example.com", "news  carol@example.com", "offers  dave@example.com", "support-ticket", "admin"} {
		if !strings.Contains(strings.Join(strings.Fields(out), "  "), want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "\n3 entries\n") {
		t.Errorf("list does not end with the count:\n%s", out)
	}
	if strings.Contains(out, "eve@") {
		t.Errorf("list of acme shows another tenant's entry:\n%s", out)
	}
	if out := mustRun(t, "", "list", "--config", cfg, "--tenant", "acme", "--list", "offers"); !strings.Contains(out, "1 entries") {
		t.Errorf("list --list offers:\n%s", out)
	}

	rows := exportRows(t, cfg, "acme")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "news,Bob@example.com,") || !strings.HasSuffix(rows[0], ",admin") || !strings.HasSuffix(rows[2], ",support-ticket") {
		t.Fatalf("export rows %q", rows)
	}

	// The export imports into another store unchanged, created times too.
	file := filepath.Join(t.TempDir(), "acme.csv")
	mustRun(t, "", "export", "--config", cfg, "--tenant", "acme", "--file", file)
	_, _, errOut := suppressionRun(t, "", "import", "--config", cfg2, "--tenant", "acme", "--file", file)
	if !strings.Contains(errOut, "imported 3 entries") {
		t.Errorf("import said %q", errOut)
	}
	if got := exportRows(t, cfg2, "acme"); strings.Join(got, "\n") != strings.Join(rows, "\n") {
		t.Errorf("round trip:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(rows, "\n"))
	}

	// A file with one bad line writes nothing and names the line.
	bad := "recipient,list\nok1@example.com,news\nok2@example.com,news\nnot-an-address,news\n"
	code, _, errOut := suppressionRun(t, bad, "import", "--config", cfg2, "--tenant", "other")
	if code != 1 || !strings.Contains(errOut, "standard input: line 4:") || !strings.Contains(errOut, `recipient "not-an-address" is not an address`) {
		t.Errorf("bad import: exit %d, %q", code, errOut)
	}
	if got := exportRows(t, cfg2, "other"); len(got) != 0 {
		t.Errorf("bad import wrote %q", got)
	}

	// Bare addresses with --list; a second import of the same keeps the first.
	mustRun(t, "x@example.com\ny@EXAMPLE.com\n\n", "import", "--config", cfg2, "--tenant", "other", "--list", "digest")
	mustRun(t, "recipient,source\nx@example.com,later\n", "import", "--config", cfg2, "--tenant", "other", "--list", "digest")
	got := exportRows(t, cfg2, "other", "--list", "digest")
	if len(got) != 2 || !strings.HasPrefix(got[0], "digest,x@example.com,") || !strings.HasSuffix(got[0], ",import") || !strings.HasPrefix(got[1], "digest,y@example.com,") {
		t.Errorf("bare import: %q", got)
	}

	// Remove.
	out = mustRun(t, "", "remove", "--config", cfg, "--tenant", "acme", "--list", "news", "bob@example.com", "Bob@EXAMPLE.com")
	if !strings.Contains(out, "removed 2 recipient(s)") {
		t.Errorf("remove said %q", out)
	}
	if rows := exportRows(t, cfg, "acme", "--list", "news"); len(rows) != 1 || !strings.HasPrefix(rows[0], "news,carol@example.com,") {
		t.Errorf("after remove: %q (bob@example.com is another local part than Bob@: only Bob@ goes)", rows)
	}
}

func TestSuppressionCommandErrors(t *testing.T) {
	cfg := embeddedConfig(t)
	for _, c := range []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"", []string{"list", "--config", cfg}, 2, "--tenant is required"},
		{"", []string{"add", "--config", cfg, "--tenant", "acme", "a@example.com"}, 2, "--list is required"},
		{"", []string{"add", "--config", cfg, "--tenant", "acme", "--list", "news"}, 2, "give at least one recipient"},
		{"", []string{"export", "--config", cfg, "--tenant", "acme", "extra"}, 2, `unexpected argument "extra"`},
		{"", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"", []string{"add", "--config", cfg, "--tenant", "nobody", "--list", "news", "a@example.com"}, 1, `--tenant "nobody": no such tenant`},
		{"", []string{"add", "--config", cfg, "--tenant", "acme", "--list", "news", "a@example.com", "nodomain"}, 1, `recipient "nodomain" is not an address`},
		{"tenant,list,recipient\nother,news,a@example.com\n", []string{"import", "--config", cfg, "--tenant", "acme"}, 1, "a tenant column is not accepted"},
		{"recipient\na@example.com\n", []string{"import", "--config", cfg, "--tenant", "acme"}, 1, "line 1: no list column: give one or --list"},
		{"a@example.com\n", []string{"import", "--config", cfg, "--tenant", "acme"}, 1, "a file of bare addresses needs --list"},
		{"list,recipient,when\n", []string{"import", "--config", cfg, "--tenant", "acme"}, 1, `line 1: unknown column "when"`},
		{"list,recipient,created\nnews,a@example.com,yesterday\n", []string{"import", "--config", cfg, "--tenant", "acme"}, 1, `line 2: created "yesterday" is not an RFC 3339 time`},
		{"list,recipient\nnews,a@example.com\noffers,b@example.com\n", []string{"import", "--config", cfg, "--tenant", "acme", "--list", "news"}, 1, `line 3: list "offers", but --list is "news"`},
		{"", []string{"import", "--config", cfg, "--tenant", "acme"}, 1, "empty file"},
	} {
		code, out, errOut := suppressionRun(t, c.stdin, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q (stdout %q)", strings.Join(c.args, " "), code, errOut, c.code, c.want, out)
		}
	}
	if rows := exportRows(t, cfg, "acme"); len(rows) != 0 {
		t.Errorf("failed commands wrote %q", rows)
	}
}

// TestSuppressionCommandLocked: with the embedded store held by another
// process (a running relay), the commands fail with the reason.
func TestSuppressionCommandLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "suppression")
	cfg := suppressionConfig(t, "  dir: "+dir+"\n  timeout: 200ms")
	s, err := suppression.OpenEmbedded(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, _, errOut := suppressionRun(t, "", "list", "--config", cfg, "--tenant", "acme")
	if code != 1 || !strings.Contains(errOut, "is locked by another process") {
		t.Errorf("exit %d, %q", code, errOut)
	}
}

package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated examples in docs/policy.md")

// explainExamples are the worked examples of docs/policy.md. Each block
// between <!-- explain:NAME --> and <!-- /explain --> is the output of the
// command shown above it, produced here so the docs cannot drift.
var explainExamples = []struct {
	name string
	args []string
	exit int
}{
	{"invoice", []string{"--config", "testdata/explain/policy.yaml", "--user", "billing-app", "--mail-from", "bounces@billing.example.com",
		"--rcpt", "customer@example.org", "--rcpt", "audit@billing.example.com", "testdata/explain/invoice.eml"}, 0},
	{"spoof", []string{"--config", "testdata/explain/policy.yaml", "--user", "billing-app", "--rcpt", "customer@example.org", "testdata/explain/spoof.eml"}, 1},
	{"rewrite", []string{"--config", "testdata/explain/policy.yaml", "--user", "marketing-app", "--rcpt", "customer@example.org", "testdata/explain/newsletter.eml"}, 0},
}

func TestExplainDocs(t *testing.T) {
	docPath := "../../docs/policy.md"
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	out := string(doc)
	for _, ex := range explainExamples {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"explain"}, ex.args...), nil, &stdout, &stderr, nil)
		if code != ex.exit {
			t.Fatalf("%s: exit %d, want %d; stderr: %s", ex.name, code, ex.exit, stderr.String())
		}
		cmd := "sesrelay explain " + strings.ReplaceAll(strings.Join(ex.args, " "), "testdata/explain/", "cmd/sesrelay/testdata/explain/")
		block := fmt.Sprintf("<!-- explain:%s -->\n```console\n$ %s\n%s```\n<!-- /explain -->", ex.name, cmd, stdout.String())
		re := regexp.MustCompile(`(?s)<!-- explain:` + ex.name + ` -->.*?<!-- /explain -->`)
		if !re.MatchString(out) {
			t.Fatalf("docs/policy.md has no <!-- explain:%s --> block", ex.name)
		}
		got := re.FindString(out)
		if got != block {
			if *update {
				out = re.ReplaceAllLiteralString(out, block)
				continue
			}
			t.Errorf("docs/policy.md example %q is out of date; run: go test ./cmd/sesrelay -run TestExplainDocs -update\n--- doc\n%s\n--- now\n%s", ex.name, got, block)
		}
	}
	if *update {
		if err := os.WriteFile(docPath, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExplainUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"explain", "--user", "x"}, nil, &stdout, &stderr, nil); code != 2 {
		t.Fatalf("exit %d", code)
	}
	code := run(context.Background(), []string{"explain", "--config", "testdata/explain/policy.yaml", "--user", "nobody", "--rcpt", "a@b.example", "testdata/explain/invoice.eml"}, nil, &stdout, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), `no user "nobody"`) {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

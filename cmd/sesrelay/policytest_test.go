package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sesrelay/sesrelay/config"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, nil, &stdout, &stderr, nil)
	return code, stdout.String(), stderr.String()
}

func exampleTestFiles(t *testing.T) []string {
	files, err := filepath.Glob("../../examples/tests/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example test files: %v", err)
	}
	return files
}

// TestPolicyTestExamples is what `make test` runs: the example test files
// pass against examples/dev.yaml.
func TestPolicyTestExamples(t *testing.T) {
	code, out, errOut := runCmd(t, append([]string{"test", "-v", "--config", "../../examples/dev.yaml"}, exampleTestFiles(t)...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^ok\t\d+ cases passed$`).MatchString(out) || !strings.Contains(out, "--- PASS: ") {
		t.Fatalf("output:\n%s", out)
	}
}

func writeTestFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "case_test.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyTestFailure: every kind of wrong expectation is reported with
// the difference, the summary counts the failing case, and the exit code
// is 1.
func TestPolicyTestFailure(t *testing.T) {
	f := writeTestFile(t, `cases:
  - name: right
    user: demo
    mail_from: a@example.com
    rcpt: [x@example.org]
    message: "From: a@example.com\nSubject: s\n\nbody\n"
    expect: {reply: "250 2.0.0", configuration_set: demo-transactional}
  - name: all wrong
    user: demo
    mail_from: a@example.com
    rcpt: [x@example.org]
    message: |
      From: a@example.com
      Subject: s

      body
    expect:
      reply: "550"
      headers:
        Subject: "^other$"
        From: null
        List-Unsubscribe: "."
      configuration_set: other-set
      tags: {stream: bulk, tenant: null, nosuch: null, missing: x}
      dkim_domain: example.com
  - name: refused, so nothing else is checked
    user: demo
    mail_from: a@example.com
    rcpt: [x@example.org]
    message: "From: a@example.net\n\nbody\n"
    expect: {reply: "250", configuration_set: x, headers: {From: x}}
`)
	code, out, errOut := runCmd(t, "test", "--config", "../../examples/dev.yaml", f)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"--- FAIL: all wrong (" + f + ":8)\n",
		`    reply: got "250 2.0.0 Ok: queued as <SES MessageId>", want prefix "550"`,
		`    header Subject: got ["s"], want a value matching "^other$"`,
		`    header From: got ["a@example.com"], want absent`,
		`    header List-Unsubscribe: absent, want a value matching "."`,
		`    configuration_set: got "demo-transactional", want "other-set"`,
		`    tag stream: got "transactional", want "bulk"`,
		`    tag missing: absent, want "x"`,
		`    tag tenant: got "demo", want absent`,
		`    dkim_domain: got "", want "example.com"`,
		"--- FAIL: refused, so nothing else is checked (" + f + ":26)\n",
		`    reply: got "550 5.7.1`,
		"    headers, configuration_set: not checked, the message is refused\n",
		"FAIL\t2 of 3 cases failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "right") || strings.Contains(out, "tag nosuch") {
		t.Errorf("a passing check is reported:\n%s", out)
	}
}

func TestPolicyTestJSON(t *testing.T) {
	f := writeTestFile(t, `cases:
  - {name: ok, user: demo, mail_from: a@example.com, rcpt: [x@example.org], message: "From: a@example.com\n\nb\n", expect: {reply: "250"}}
  - {name: bad, user: demo, mail_from: a@example.com, rcpt: [x@example.org], message: "From: a@example.com\n\nb\n", expect: {reply: "451"}}
`)
	code, out, _ := runCmd(t, "test", "--format", "json", "--config", "../../examples/dev.yaml", f)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var got struct {
		Passed, Failed int
		Cases          []caseResult
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Passed != 1 || got.Failed != 1 || len(got.Cases) != 2 || !got.Cases[0].Passed || got.Cases[1].Passed ||
		got.Cases[1].Line != 3 || len(got.Cases[1].Failures) != 1 || !strings.HasPrefix(got.Cases[1].Reply, "250 ") {
		t.Fatalf("%+v", got)
	}
}

// TestPolicyTestFileErrors: unknown keys and missing fields name the key
// path, as configuration errors do.
func TestPolicyTestFileErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"case: []\n", "case: unknown key (line 1)"},
		{"cases:\n  - name: n\n    user: demo\n    rcpt: [a@b.example]\n    message: x\n    expect: {replies: \"250\"}\n", "cases[0].expect.replies: unknown key (line 6)"},
		{"cases:\n  - {name: n, user: demo, rcpt: [a@b.example], message: x, mailfrom: a@example.com}\n", "cases[0].mailfrom: unknown key (line 2)"},
		{"cases:\n  - {name: n, rcpt: [a@b.example], message: x}\n", "cases[0].user: required"},
		{"cases:\n  - {name: n, user: demo, message: x}\n", "cases[0].rcpt: at least one recipient is required"},
		{"cases:\n  - {name: n, user: demo, rcpt: [a@b.example]}\n", "cases[0]: message or message_file is required"},
		{"cases:\n  - {name: n, user: demo, rcpt: [a@b.example], message_file: nope.eml}\n", "cases[0].message_file: open "},
		{"cases:\n  - {name: n, user: demo, rcpt: [a@b.example], message: x, expect: {headers: {From: \"(\"}}}\n", "cases[0].expect.headers.From: error parsing regexp"},
		{"cases: []\n", "cases: no test cases"},
	} {
		f := writeTestFile(t, tc.body)
		code, _, errOut := runCmd(t, "test", "--config", "../../examples/dev.yaml", f)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tc.body, code, errOut, tc.want)
		}
	}
	if code, _, _ := runCmd(t, "test", "--config", "../../examples/dev.yaml"); code != 2 {
		t.Errorf("no test file: exit %d, want 2", code)
	}
}

// TestPolicyTestMatchesExplain: each example case gives the same reply
// through `sesrelay explain`.
func TestPolicyTestMatchesExplain(t *testing.T) {
	cfg, err := config.Load("../../examples/dev.yaml")
	if err != nil {
		t.Fatal(err)
	}
	explain, err := newExplainer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range exampleTestFiles(t) {
		tf, err := loadPolicyTests(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range tf.Cases {
			res := runPolicyCase(explain, file, c)
			msg := filepath.Join(t.TempDir(), "m.eml")
			if err := os.WriteFile(msg, crlf(c.Message), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"explain", "--config", "../../examples/dev.yaml", "--user", c.User, "--mail-from", c.MailFrom}
			for _, r := range c.Rcpt {
				args = append(args, "--rcpt", r)
			}
			_, out, errOut := runCmd(t, append(args, msg)...)
			m := regexp.MustCompile(`(?m)^reply:\s+(.*)$`).FindStringSubmatch(out)
			if m == nil || m[1] != res.Reply {
				t.Errorf("%s: test reply %q, explain output:\n%s%s", c.Name, res.Reply, out, errOut)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no cases")
	}
}

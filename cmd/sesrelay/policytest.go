package main

// `sesrelay test`: unit tests for the policy YAML, like `promtool test
// rules`. Each case of a test file goes through the pipeline `sesrelay
// explain` uses (no SES call, no network) and is compared with what the
// case expects. docs/policy.md describes the file format.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-smtp"
	"go.yaml.in/yaml/v3"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/relay"
)

// explainFunc runs one message through the pipeline without sending it.
type explainFunc func(user string, env relay.Envelope, raw []byte) (*relay.Explanation, error)

// newExplainer is the one place `sesrelay test` reaches the pipeline: the
// same relay.Pipeline `sesrelay explain` and the live session run, so a passing test
// means explain and the live relay answer the same.
func newExplainer(cfg *config.Config) (explainFunc, error) {
	pipe, err := relay.NewPipeline(cfg, nil)
	if err != nil {
		return nil, err
	}
	return func(user string, env relay.Envelope, raw []byte) (*relay.Explanation, error) {
		return pipe.Explain(user, env, raw, "test")
	}, nil
}

// policyTestFile is one test file.
type policyTestFile struct {
	Cases []policyTestCase `yaml:"cases"`
}

type policyTestCase struct {
	Name        string            `yaml:"name"`
	User        string            `yaml:"user"`
	MailFrom    string            `yaml:"mail_from"`
	Rcpt        []string          `yaml:"rcpt"`
	Message     string            `yaml:"message"`
	MessageFile string            `yaml:"message_file"`
	Expect      policyExpectation `yaml:"expect"`

	line int // of the case in its file
}

// policyExpectation: a nil field is not checked.
type policyExpectation struct {
	Reply            *string            `yaml:"reply"`   // prefix of "CODE X.Y.Z text"
	Headers          map[string]*string `yaml:"headers"` // regexp on the value; nil: absent
	ConfigurationSet *string            `yaml:"configuration_set"`
	Tags             map[string]*string `yaml:"tags"` // value; nil: absent
	DKIMDomain       *string            `yaml:"dkim_domain"`
}

// caseResult is one case's outcome; the JSON form is --format json's.
type caseResult struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Name     string   `json:"name"`
	Passed   bool     `json:"passed"`
	Reply    string   `json:"reply,omitempty"`
	Failures []string `json:"failures,omitempty"`
}

func cmdTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the embedded development configuration)")
	format := fs.String("format", "text", "output: text (like go test) or json")
	verbose := fs.Bool("v", false, "also list the cases that pass")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sesrelay test --config FILE [--format text|json] [-v] TESTFILE.yaml...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 || (*format != "text" && *format != "json") {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	explain, err := newExplainer(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	var results []caseResult
	for _, file := range fs.Args() {
		tf, err := loadPolicyTests(file)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		for _, c := range tf.Cases {
			results = append(results, runPolicyCase(explain, file, c))
		}
	}
	failed := 0
	for _, r := range results {
		if !r.Passed {
			failed++
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Passed int          `json:"passed"`
			Failed int          `json:"failed"`
			Cases  []caseResult `json:"cases"`
		}{len(results) - failed, failed, results})
	} else {
		for _, r := range results {
			if r.Passed {
				if *verbose {
					fmt.Fprintf(stdout, "--- PASS: %s (%s:%d)\n", r.Name, r.File, r.Line)
				}
				continue
			}
			fmt.Fprintf(stdout, "--- FAIL: %s (%s:%d)\n", r.Name, r.File, r.Line)
			for _, f := range r.Failures {
				fmt.Fprintf(stdout, "    %s\n", f)
			}
		}
		if failed > 0 {
			fmt.Fprintf(stdout, "FAIL\t%d of %d cases failed\n", failed, len(results))
		} else {
			fmt.Fprintf(stdout, "ok\t%d cases passed\n", len(results))
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// loadPolicyTests reads a test file: unknown keys and missing required
// fields are errors naming the key path; message_file is relative to the
// test file.
func loadPolicyTests(file string) (*policyTestFile, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: empty test file", file)
	}
	var problems []string
	unknownKeys(root.Content[0], reflect.TypeOf(policyTestFile{}), "", &problems)
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s:\n  %s", file, strings.Join(problems, "\n  "))
	}
	var tf policyTestFile
	if err := root.Content[0].Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	var cases *yaml.Node
	for i := 0; i+1 < len(root.Content[0].Content); i += 2 {
		if root.Content[0].Content[i].Value == "cases" {
			cases = root.Content[0].Content[i+1]
		}
	}
	if len(tf.Cases) == 0 {
		problems = append(problems, "cases: no test cases")
	}
	for i := range tf.Cases {
		c := &tf.Cases[i]
		p := fmt.Sprintf("cases[%d]", i)
		if cases != nil && i < len(cases.Content) {
			c.line = cases.Content[i].Line
		}
		if c.Name == "" {
			problems = append(problems, p+".name: required")
		}
		if c.User == "" {
			problems = append(problems, p+".user: required")
		}
		if len(c.Rcpt) == 0 {
			problems = append(problems, p+".rcpt: at least one recipient is required")
		}
		switch {
		case c.Message != "" && c.MessageFile != "":
			problems = append(problems, p+": message and message_file are exclusive")
		case c.Message == "" && c.MessageFile == "":
			problems = append(problems, p+": message or message_file is required")
		case c.MessageFile != "":
			mf := c.MessageFile
			if !filepath.IsAbs(mf) {
				mf = filepath.Join(filepath.Dir(file), mf)
			}
			b, err := os.ReadFile(mf)
			if err != nil {
				problems = append(problems, p+".message_file: "+err.Error())
			}
			c.Message = string(b)
		}
		for name, re := range c.Expect.Headers {
			if re != nil {
				if _, err := regexp.Compile(*re); err != nil {
					problems = append(problems, fmt.Sprintf("%s.expect.headers.%s: %v", p, name, err))
				}
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s:\n  %s", file, strings.Join(problems, "\n  "))
	}
	return &tf, nil
}

// unknownKeys reports every mapping key of n that t (a struct with yaml
// tags, or a slice of them) does not have, with its key path and line.
// Maps take any key.
func unknownKeys(n *yaml.Node, t reflect.Type, path string, problems *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), problems)
		}
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" {
				fields[tag] = t.Field(i).Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if !ok {
				*problems = append(*problems, fmt.Sprintf("%s: unknown key (line %d)", p, k.Line))
				continue
			}
			unknownKeys(n.Content[i+1], ft, p, problems)
		}
	}
}

// runPolicyCase runs one case and lists every difference from what it
// expects.
func runPolicyCase(explain explainFunc, file string, c policyTestCase) caseResult {
	res := caseResult{File: file, Line: c.line, Name: c.Name}
	env := relay.Envelope{From: strings.Trim(c.MailFrom, "<>"), To: c.Rcpt}
	ex, err := explain(c.User, env, crlf(c.Message))
	if err != nil {
		res.Failures = []string{err.Error()}
		return res
	}
	e := c.Expect
	res.Reply = replyText(ex.Reply)
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	if e.Reply != nil && !strings.HasPrefix(res.Reply, *e.Reply) {
		fail("reply: got %q, want prefix %q", res.Reply, *e.Reply)
	}
	var req *relay.Request
	if ex.Prepared != nil && ex.Prepared.Refusal == nil && len(ex.Prepared.Requests) > 0 {
		req = ex.Prepared.Requests[0]
	}
	var unchecked []string
	sent := func(what string) bool {
		if req == nil {
			unchecked = append(unchecked, what)
		}
		return req != nil
	}
	if len(e.Headers) > 0 && sent("headers") {
		h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(req.Raw))).ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			fail("headers: cannot read the header as sent: %v", err)
		}
		for _, name := range sortedKeys(e.Headers) {
			values := h.Values(name)
			want := e.Headers[name]
			switch {
			case want == nil && len(values) > 0:
				fail("header %s: got %q, want absent", name, values)
			case want == nil:
			case len(values) == 0:
				fail("header %s: absent, want a value matching %q", name, *want)
			default:
				re := regexp.MustCompile(*want) // compiled when the file was loaded
				if !slices.ContainsFunc(values, re.MatchString) {
					fail("header %s: got %q, want a value matching %q", name, values, *want)
				}
			}
		}
	}
	if e.ConfigurationSet != nil && sent("configuration_set") && req.ConfigurationSet != *e.ConfigurationSet {
		fail("configuration_set: got %q, want %q", req.ConfigurationSet, *e.ConfigurationSet)
	}
	if len(e.Tags) > 0 && sent("tags") {
		got := map[string]string{}
		for _, t := range req.Tags {
			got[t.Name] = t.Value
		}
		for _, name := range sortedKeys(e.Tags) {
			v, ok := got[name]
			switch want := e.Tags[name]; {
			case want == nil && ok:
				fail("tag %s: got %q, want absent", name, v)
			case want == nil:
			case !ok:
				fail("tag %s: absent, want %q", name, *want)
			case v != *want:
				fail("tag %s: got %q, want %q", name, v, *want)
			}
		}
	}
	if e.DKIMDomain != nil && sent("dkim_domain") {
		got := ""
		if ex.Prepared.Decision.DKIM != nil {
			got = ex.Prepared.Decision.DKIM.Domain
		}
		if got != *e.DKIMDomain {
			fail("dkim_domain: got %q, want %q (\"\": not signed by the relay)", got, *e.DKIMDomain)
		}
	}
	if len(unchecked) > 0 {
		fail("%s: not checked, the message is refused", strings.Join(unchecked, ", "))
	}
	res.Passed = len(res.Failures) == 0
	return res
}

// replyText is the reply as `sesrelay explain` prints it.
func replyText(r *smtp.SMTPError) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
}

// crlf turns bare LF line ends (a test file written on Unix) into CRLF, as
// an SMTP client sends them.
func crlf(s string) []byte {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

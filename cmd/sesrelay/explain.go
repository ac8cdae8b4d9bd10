package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/policy"
	"github.com/sesrelay/sesrelay/relay"
)

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// cmdExplain runs the pipeline on a message without sending it and prints
// the decision, the reply, the final headers and the SES request.
func cmdExplain(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the embedded development configuration)")
	user := fs.String("user", "", "the SMTP AUTH username the application uses (required)")
	mailFrom := fs.String("mail-from", "", "envelope sender (default <>, the null sender)")
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeat for several; required)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sesrelay explain --config FILE --user USER [--mail-from ADDR] --rcpt ADDR... MESSAGE.eml|-")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *user == "" || len(rcpts) == 0 || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	var raw []byte
	var err error
	if fs.Arg(0) == "-" {
		raw, err = io.ReadAll(stdin)
	} else {
		raw, err = os.ReadFile(fs.Arg(0))
	}
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay: %v\n", err)
		return 1
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	// The same pipeline a live session runs, without listeners, TLS,
	// password hashes or a sender: explain cannot send.
	pipe, err := relay.NewPipeline(cfg, nil)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	from := strings.Trim(*mailFrom, "<>")
	ex, err := pipe.Explain(*user, relay.Envelope{From: from, To: rcpts}, raw, "explain")
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay: %v\n", err)
		return 1
	}
	printExplanation(stdout, cfg, *user, from, rcpts, ex)
	if !ex.Accepted() {
		return 1
	}
	return 0
}

func printExplanation(w io.Writer, cfg *config.Config, user, from string, rcpts []string, ex *relay.Explanation) {
	fmt.Fprintf(w, "tenant:    %s (user %s)\n", ex.Tenant, user)
	fmt.Fprintf(w, "envelope:  MAIL FROM:<%s> RCPT TO:%s\n", from, "<"+strings.Join(rcpts, ">, <")+">")
	if ex.Accepted() {
		fmt.Fprintf(w, "decision:  accept\n")
	} else {
		fmt.Fprintf(w, "decision:  reject at %s (%s)\n", ex.Stage, ex.Reason)
		if ex.Detail != "" {
			fmt.Fprintf(w, "detail:    %s\n", ex.Detail)
		}
	}
	fmt.Fprintf(w, "reply:     %d %d.%d.%d %s\n", ex.Reply.Code, ex.Reply.EnhancedCode[0], ex.Reply.EnhancedCode[1], ex.Reply.EnhancedCode[2], ex.Reply.Message)
	p := ex.Prepared
	if p == nil || p.Refusal != nil {
		return
	}
	d := p.Decision
	fmt.Fprintf(w, "from:      domain %s", d.FromDomain)
	switch {
	case d.Rewrite == nil:
	case d.Rewrite.Cause == policy.RewriteDisplayName:
		fmt.Fprintf(w, ", display name %q (display_name: strip_addresses)", d.Rewrite.DisplayName)
	default:
		fmt.Fprintf(w, ", rewritten to %s (from_policy: rewrite), original %s", d.Rewrite.NewFrom, d.Rewrite.Original.String())
	}
	fmt.Fprintln(w)
	if d.DKIM != nil {
		fmt.Fprintf(w, "dkim:      signed d=%s s=%s\n", d.DKIM.Domain, d.DKIM.Selector)
	} else {
		fmt.Fprintf(w, "dkim:      not signed by the relay\n")
	}
	for i, r := range p.Requests {
		fmt.Fprintf(w, "SES request %d of %d (SendEmail, raw content):\n", i+1, len(p.Requests))
		region := r.Region
		if region == "" {
			region = cfg.SES.Region
		}
		fmt.Fprintf(w, "  region:            %s\n", region)
		fmt.Fprintf(w, "  destination:       %s\n", strings.Join(r.Recipients, ", "))
		fmt.Fprintf(w, "  configuration set: %s\n", orNone(r.ConfigurationSet))
		tags := make([]string, len(r.Tags))
		for j, t := range r.Tags {
			tags[j] = t.Name + "=" + t.Value
		}
		fmt.Fprintf(w, "  tags:              %s\n", orNone(strings.Join(tags, ", ")))
		fmt.Fprintf(w, "  identity ARN:      %s\n", orNone(r.IdentityARN))
		fmt.Fprintf(w, "  SES tenant:        %s\n", orNone(r.SESTenant))
		fmt.Fprintf(w, "  endpoint id:       %s\n", orNone(r.EndpointID))
		if r.DisableTracking {
			fmt.Fprintf(w, "  tracking:          click and open tracking DISABLED (relay-signed)\n")
		} else {
			fmt.Fprintf(w, "  tracking:          as the configuration set says\n")
		}
		fmt.Fprintf(w, "  size:              %d bytes\n", len(r.Raw))
		if i == 0 || p.PerRecipient {
			fmt.Fprintf(w, "  header as sent:\n")
			printHeader(w, r.Raw)
		}
	}
}

func printHeader(w io.Writer, raw []byte) {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(raw)
	}
	for _, line := range strings.Split(string(raw[:end]), "\r\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/policy"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the embedded development configuration)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err == nil {
		// The compiled policy checks what spans keys (header tags against
		// reserved names, ...): a configuration check must show those too.
		_, err = policy.Compile(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 1
	}
	name := *path
	if name == "" {
		name = "(embedded development configuration)"
	}
	fmt.Fprintf(stdout, "%s: OK\n", name)
	fmt.Fprintf(stdout, "listeners:\n")
	for _, l := range cfg.Server.Listeners {
		extra := ""
		if l.AllowInsecureAuth {
			extra = ", insecure auth allowed"
		}
		fmt.Fprintf(stdout, "  %s  tls=%s%s\n", l.Address, l.TLS, extra)
	}
	if u := cfg.UnsubscribeServer; u.Address != "" {
		scheme := "http, behind a TLS-terminating proxy"
		if u.TLS.CertFile != "" {
			scheme = "https"
		}
		fmt.Fprintf(stdout, "  %s  unsubscribe endpoint (%s)\n", u.Address, scheme)
	}
	fmt.Fprintf(stdout, "delivery: %s", cfg.Delivery.Sender)
	if cfg.Delivery.Sender == config.SenderFile {
		fmt.Fprintf(stdout, " (%s)", cfg.Delivery.FileDir)
	} else {
		fmt.Fprintf(stdout, " (region %s", cfg.SES.Region)
		if cfg.SES.Endpoint != "" {
			fmt.Fprintf(stdout, ", endpoint %s", cfg.SES.Endpoint)
		}
		fmt.Fprint(stdout, ")")
	}
	fmt.Fprintf(stdout, "\ntenants:\n")
	for _, t := range cfg.Tenants {
		fmt.Fprintf(stdout, "  %s: %d user(s), domains %s", t.Name, len(t.Users), strings.Join(t.Domains, ", "))
		if t.ConfigurationSet != "" {
			fmt.Fprintf(stdout, ", configuration set %s", t.ConfigurationSet)
		}
		if len(t.DKIM) > 0 {
			fmt.Fprintf(stdout, ", %d DKIM key(s)", len(t.DKIM))
		}
		fmt.Fprintln(stdout)
	}
	// Valid but risky in production: said, not refused.
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	return 0
}

func cmdHashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(stderr, "sesrelay: reading password: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "sesrelay: empty password (pipe it on stdin: echo -n 'secret' | sesrelay hash-password)")
		return 1
	}
	h, err := config.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, h)
	return 0
}

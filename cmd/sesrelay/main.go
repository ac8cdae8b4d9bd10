// Command sesrelay is an authenticated SMTP relay in front of Amazon SES.
//
// main is thin: it parses flags, loads the configuration, builds the
// parts and runs them. It is the only place that touches signals, so the
// rest can be embedded in tests.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, hup))
}

// streams is what a command gets besides its arguments.
type streams struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	hup            <-chan os.Signal
}

// commands is every subcommand, in the order the usage lists them.
var commands = []struct {
	name, summary string
	run           func(ctx context.Context, args []string, s streams) int
}{
	{"serve", "run the relay (default config: the embedded development one)", func(ctx context.Context, args []string, s streams) int {
		return cmdServe(ctx, args, s.stdout, s.stderr, s.hup)
	}},
	{"check", "validate a configuration file and print a summary", func(_ context.Context, args []string, s streams) int {
		return cmdCheck(args, s.stdout, s.stderr)
	}},
	{"explain", "run the pipeline on a message without sending it", func(ctx context.Context, args []string, s streams) int {
		return cmdExplain(ctx, args, s.stdin, s.stdout, s.stderr)
	}},
	{"test", "run policy test cases through the pipeline without sending", func(_ context.Context, args []string, s streams) int {
		return cmdTest(args, s.stdout, s.stderr)
	}},
	{"hash-password", "read a password from stdin, print a hash for the YAML", func(_ context.Context, args []string, s streams) int {
		return cmdHashPassword(args, s.stdin, s.stdout, s.stderr)
	}},
	{"dkim", "keygen | record: manage DKIM keys", func(ctx context.Context, args []string, s streams) int {
		return cmdDKIM(ctx, args, s.stdin, s.stdout, s.stderr)
	}},
	{"doctor", "check each tenant domain's DNS and SES setup", func(ctx context.Context, args []string, s streams) int {
		return cmdDoctor(ctx, args, s.stdin, s.stdout, s.stderr)
	}},
	{"suppression", "list | add | remove | import | export: suppressed recipients", func(ctx context.Context, args []string, s streams) int {
		return cmdSuppression(ctx, args, s.stdin, s.stdout, s.stderr)
	}},
	{"queue", "list | show | retry | delete | requeue: operate the store-and-forward queue", func(ctx context.Context, args []string, s streams) int {
		return cmdQueue(ctx, args, s.stdin, s.stdout, s.stderr)
	}},
	{"healthcheck", "probe the admin listener (for container health checks)", func(ctx context.Context, args []string, s streams) int {
		return cmdHealthcheck(ctx, args, s.stdin, s.stdout, s.stderr)
	}},
	{"version", "print the version", func(_ context.Context, _ []string, s streams) int {
		fmt.Fprintf(s.stdout, "sesrelay %s\n", version)
		return 0
	}},
}

// usage lists the commands of the table.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: sesrelay <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-14s %s\n", c.name, c.summary)
	}
	return b.String()
}

// run is main without the process: exit code out, streams and signals in.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, hup <-chan os.Signal) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	name := args[0]
	switch name {
	case "--version", "-version":
		name = "version"
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage())
		return 0
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, args[1:], streams{stdin, stdout, stderr, hup})
		}
	}
	fmt.Fprintf(stderr, "sesrelay: unknown command %q\n\n%s", args[0], usage())
	return 2
}

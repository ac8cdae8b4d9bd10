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

const usage = `usage: sesrelay <command> [flags]

commands:
  serve          run the relay (default config: the embedded development one)
  check          validate a configuration file and print a summary
  explain        run the pipeline on a message without sending it
  hash-password  read a password from stdin, print a hash for the YAML
  dkim           keygen | record: manage DKIM keys
  doctor         check each tenant domain's DNS and SES setup
  suppression    list | add | remove | import | export: suppressed recipients
  healthcheck    probe the admin listener (for container health checks)
  queue          list | show | retry | delete | requeue: operate the store-and-forward queue
  version        print the version
`

// run is main without the process: exit code out, streams and signals in.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, hup <-chan os.Signal) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr, hup)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "hash-password":
		return cmdHashPassword(args[1:], stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "sesrelay %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		if c, ok := extraCommands[args[0]]; ok {
			return c(ctx, args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "sesrelay: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// extraCommands are registered by the files that implement them.
var extraCommands = map[string]func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int{}

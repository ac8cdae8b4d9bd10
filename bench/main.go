// Command bench measures sesrelay: a load generator that speaks SMTP
// (RFC 5321, STARTTLS per RFC 3207, AUTH PLAIN per RFC 4954/4616) to any
// server, a minimal go-smtp server that accepts and discards (the
// protocol's cost on this machine, the baseline every result is divided
// by), the forwarding limit (the baseline plus one SigV4-signed SendEmail
// call per message: the least any relay in front of SES does), a fast local stand-in for the SES v2 SendEmail API, and an
// orchestrator that runs the scenarios of BENCHMARKS.md.
//
//	go run ./bench baseline --listen 127.0.0.1:0
//	go run ./bench forwarding --listen 127.0.0.1:0 --ses http://HOST:PORT
//	go run ./bench sesstub --listen 127.0.0.1:0 [--tls --cert-out FILE] [--delay 0]
//	go run ./bench load --addr HOST:PORT --user U --pass P --mode persistent --conns 16 --size 8192 --duration 10s
//	go run ./bench run --scenario 1 --runs 3 --relay-bin /tmp/sesrelay
//
// Every load stays on the address it is given (the orchestrator uses
// 127.0.0.1 only), is bounded by a count or a duration, and stops by itself.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: bench <subcommand> [flags]

subcommands:
  baseline   run the discard-only go-smtp server (the protocol's cost)
  forwarding run the forwarding limit: baseline + one signed SendEmail per message
  sesstub    run the local SES v2 SendEmail stand-in
  load       drive an SMTP server and report messages/s and reply latency
  run        run a benchmark scenario against the relay and the baseline

"bench <subcommand> -h" lists the flags of a subcommand.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "baseline":
		err = baselineMain(args)
	case "forwarding":
		err = forwardingMain(args)
	case "sesstub":
		err = sesStubMain(args)
	case "load":
		err = loadMain(args)
	case "run":
		err = runMain(args)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "bench: unknown subcommand %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

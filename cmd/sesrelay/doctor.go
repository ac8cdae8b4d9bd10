package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/doctor"
	"github.com/sesrelay/sesrelay/relay/ses"
)

// cmdDoctor checks each tenant domain's DNS and SES setup for DMARC and
// prints what is missing. Exit codes: 0 every domain can pass DMARC, 1 at
// least one cannot, 3 none fails but some could not be confirmed, 2 usage
// or configuration errors.
func cmdDoctor(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (default: the embedded development configuration)")
	tenant := fs.String("tenant", "", "check only this tenant")
	offline := fs.Bool("offline", false, "DNS checks only: make no SES call")
	format := fs.String("format", "text", "output format: text or json")
	server := fs.String("dns", "", "DNS server HOST:PORT to ask (default: the nameservers of /etc/resolv.conf)")
	timeout := fs.Duration("timeout", 10*time.Second, "limit for each DNS query and SES call")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || (*format != "text" && *format != "json") || *timeout <= 0 {
		fmt.Fprintln(stderr, "usage: sesrelay doctor [--config FILE] [--tenant NAME] [--offline] [--format text|json] [--dns HOST:PORT] [--timeout 10s]")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 2
	}
	o := doctor.Options{Tenant: *tenant, Timeout: *timeout}
	if *server != "" {
		o.Resolver = &doctor.DNSResolver{Servers: []string{*server}, Timeout: *timeout}
	} else {
		r, err := doctor.SystemResolver()
		if err != nil {
			fmt.Fprintf(stderr, "sesrelay doctor: %v (use --dns HOST:PORT)\n", err)
			return 2
		}
		r.Timeout = *timeout
		o.Resolver = r
	}
	if !*offline {
		o.SES = sesClients(ctx, cfg)
	}
	rep, err := doctor.Run(ctx, cfg, o)
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay %v\n", err)
		return 2
	}
	if *format == "json" {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sesrelay doctor: %v\n", err)
		return 2
	}
	return rep.ExitCode()
}

// sesClients builds the SES clients from the ses.* keys (endpoint
// overrides included) with the default credential chain. A failure to
// load the AWS configuration is reported by every SES check, not here:
// the DNS checks still run.
func sesClients(ctx context.Context, cfg *config.Config) func(region string) (doctor.SESAPI, error) {
	opts := ses.OptionsFromConfig(&cfg.SES)
	opts.MaxAttempts = 1
	sender, err := ses.New(ctx, opts)
	return func(region string) (doctor.SESAPI, error) {
		if err != nil {
			return nil, err
		}
		return sender.Client(region), nil
	}
}

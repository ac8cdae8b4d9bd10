package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver answers the DNS questions doctor asks. A name that does not
// exist, or has no record of the type, is an empty answer and a nil error;
// an error means the answer is unknown (timeout, SERVFAIL, refused).
type Resolver interface {
	// LookupTXT returns one string per TXT record, its character-strings
	// joined without separator (RFC 6376 3.6.2.2, RFC 7208 3.3).
	LookupTXT(ctx context.Context, name string) ([]string, error)
	// LookupCNAME returns the target of name's CNAME, or "".
	LookupCNAME(ctx context.Context, name string) (string, error)
	// LookupMX returns name's mail exchangers.
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
}

// DNSResolver queries recursive servers directly: over UDP with EDNS0,
// again over TCP when the answer is truncated, trying each server in turn.
// Unlike the net package it tells "no such record" from "no answer", and
// it can be pointed at any server (tests, a specific resolver).
type DNSResolver struct {
	Servers []string      // HOST:PORT
	Timeout time.Duration // per query and transport (default 5s)
}

var _ Resolver = (*DNSResolver)(nil)

// SystemResolver returns a DNSResolver for the nameservers of
// /etc/resolv.conf.
func SystemResolver() (*DNSResolver, error) {
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("reading the system resolver configuration: %w", err)
	}
	r := &DNSResolver{}
	for _, s := range cc.Servers {
		r.Servers = append(r.Servers, net.JoinHostPort(s, cc.Port))
	}
	if len(r.Servers) == 0 {
		return nil, errors.New("no nameserver in /etc/resolv.conf")
	}
	if cc.Timeout > 0 {
		r.Timeout = time.Duration(cc.Timeout) * time.Second
	}
	return r, nil
}

// LookupTXT implements Resolver.
func (r *DNSResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	in, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// LookupCNAME implements Resolver.
func (r *DNSResolver) LookupCNAME(ctx context.Context, name string) (string, error) {
	in, err := r.query(ctx, name, dns.TypeCNAME)
	if err != nil {
		return "", err
	}
	want := dns.Fqdn(strings.ToLower(name))
	for _, rr := range in.Answer {
		if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, want) {
			return strings.TrimSuffix(strings.ToLower(c.Target), "."), nil
		}
	}
	return "", nil
}

// LookupMX implements Resolver.
func (r *DNSResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	in, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []*net.MX
	for _, rr := range in.Answer {
		if m, ok := rr.(*dns.MX); ok {
			out = append(out, &net.MX{Host: strings.TrimSuffix(strings.ToLower(m.Mx), "."), Pref: m.Preference})
		}
	}
	return out, nil
}

// query asks each server in turn until one gives a definite answer
// (NOERROR or NXDOMAIN).
func (r *DNSResolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if len(r.Servers) == 0 {
		return nil, errors.New("dns: no server configured")
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	var errs []error
	for _, server := range r.Servers {
		in, err := exchange(ctx, m, server, timeout)
		if err == nil {
			switch in.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return in, nil
			}
			err = fmt.Errorf("%s", dns.RcodeToString[in.Rcode])
		}
		errs = append(errs, fmt.Errorf("%s: %w", server, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dns %s %s: %w", dns.TypeToString[qtype], name, errors.Join(errs...))
}

func exchange(ctx context.Context, m *dns.Msg, server string, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, err
	}
	if !in.Truncated {
		return in, nil
	}
	c.Net = "tcp"
	in, _, err = c.ExchangeContext(ctx, m, server)
	return in, err
}

package config

import (
	"fmt"
	"net/netip"
	"time"
)

// PROXY protocol modes of a listener (server.listeners[].proxy_protocol).
const (
	// ProxyOff: no header is read; the socket's peer is the client.
	ProxyOff = "off"
	// ProxyOptional: a connection from a trusted address may open with a
	// header (the client is then the header's source address) or not (the
	// socket's peer is the client, greeted after the header timeout).
	ProxyOptional = "optional"
	// ProxyRequired: every connection must come from a trusted address and
	// open with a header.
	ProxyRequired = "required"
)

// DefaultProxyProtocolTimeout bounds the wait for a PROXY header (Postfix's
// smtpd_upstream_proxy_timeout has the same default).
const DefaultProxyProtocolTimeout = 5 * time.Second

// maxProxyProtocolTimeout: a load balancer sends the header at once; a
// longer wait only lets idle connections hold a slot.
const maxProxyProtocolTimeout = time.Minute

// validateProxyProtocol checks and defaults the PROXY protocol keys of one
// listener. Trusting every address takes an explicit 0.0.0.0/0 (and ::/0):
// an empty list with the protocol on is an error, as is a list with the
// protocol off (the operator meant to turn it on).
func validateProxyProtocol(p *problems, path string, l *Listener) {
	if l.ProxyProtocol == "" {
		l.ProxyProtocol = ProxyOff
	}
	if l.ProxyProtocolTimeout == 0 {
		l.ProxyProtocolTimeout = DefaultProxyProtocolTimeout
	}
	switch l.ProxyProtocol {
	case ProxyOff:
		if len(l.ProxyProtocolTrusted) > 0 {
			p.add(path+".proxy_protocol_trusted", "set but proxy_protocol is off (set proxy_protocol to optional or required)")
		}
	case ProxyOptional, ProxyRequired:
		if len(l.ProxyProtocolTrusted) == 0 {
			p.add(path+".proxy_protocol_trusted", "required when proxy_protocol is %s: list the load balancers' addresses (0.0.0.0/0 and ::/0 trust every source)", l.ProxyProtocol)
		}
	default:
		p.add(path+".proxy_protocol", "must be off, optional or required, got %q", l.ProxyProtocol)
	}
	for j, n := range l.ProxyProtocolTrusted {
		if _, err := ParsePrefix(n); err != nil {
			p.add(fmt.Sprintf("%s.proxy_protocol_trusted[%d]", path, j), "not a CIDR or IP address: %q", n)
		}
	}
	if l.ProxyProtocolTimeout < time.Millisecond || l.ProxyProtocolTimeout > maxProxyProtocolTimeout {
		p.add(path+".proxy_protocol_timeout", "must be between 1ms and %s, got %s", maxProxyProtocolTimeout, l.ProxyProtocolTimeout)
	}
}

// ParsePrefix parses a CIDR ("10.0.0.0/8") or a single address ("10.1.2.3",
// a /32 or /128), masked.
func ParsePrefix(s string) (netip.Prefix, error) {
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.Prefix{}, err
		}
		pf = netip.PrefixFrom(a, a.BitLen())
	}
	return pf.Masked(), nil
}

// Package doctortest holds local stand-ins for what `sesrelay doctor`
// talks to: an authoritative DNS server (RFC 1035 over UDP and TCP on one
// loopback port) and the read side of the SES v2 API (email identities and
// configuration sets), for tests that drive the real resolver and the real
// aws-sdk-go-v2 client.
package doctortest

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// DNS is a small authoritative server for any name, listening on
// 127.0.0.1 with UDP and TCP on the same port. Records are set by the test
// and may change between queries. Names are case-insensitive and written
// without the trailing dot.
type DNS struct {
	// Addr is HOST:PORT for both transports.
	Addr string
	// TruncateUDP answers every UDP query with TC=1 and no records, so a
	// resolver has to retry over TCP.
	TruncateUDP atomic.Bool

	mu      sync.Mutex
	records map[rrKey][]dns.RR
	rcodes  map[string]int

	udpQueries, tcpQueries atomic.Int64
	servers                []*dns.Server
}

type rrKey struct {
	name  string
	rtype uint16
}

// NewDNS starts a server; it stops when the test ends.
func NewDNS(t testing.TB) *DNS {
	t.Helper()
	d := &DNS{records: map[rrKey][]dns.RR{}, rcodes: map[string]int{}}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// The TCP port must be the UDP port: a resolver retries a truncated
	// answer on the same address.
	for attempt := 0; attempt < 20; attempt++ {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("doctortest: udp listen: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("doctortest: tcp listen on the udp port: %v", err)
	}
	d.Addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve)}
	tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(d.serve)}
	d.servers = []*dns.Server{udp, tcp}
	for _, s := range d.servers {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
	}
	t.Cleanup(func() {
		for _, s := range d.servers {
			s.Shutdown()
		}
	})
	return d
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

func (d *DNS) add(rr dns.RR) {
	h := rr.Header()
	h.Name = fqdn(h.Name)
	h.Class = dns.ClassINET
	h.Ttl = 300
	d.mu.Lock()
	defer d.mu.Unlock()
	k := rrKey{h.Name, h.Rrtype}
	d.records[k] = append(d.records[k], rr)
}

// TXT adds one TXT record per value; a value longer than 255 bytes is
// split into several character-strings, as zone files do.
func (d *DNS) TXT(name string, values ...string) {
	for _, v := range values {
		var parts []string
		for len(v) > 255 {
			parts = append(parts, v[:255])
			v = v[255:]
		}
		parts = append(parts, v)
		d.add(&dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT}, Txt: parts})
	}
}

// CNAME sets the alias of name.
func (d *DNS) CNAME(name, target string) {
	d.Remove(name, dns.TypeCNAME)
	d.add(&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME}, Target: fqdn(target)})
}

// MX adds a mail exchanger for name.
func (d *DNS) MX(name string, pref uint16, host string) {
	d.add(&dns.MX{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeMX}, Preference: pref, Mx: fqdn(host)})
}

// Remove deletes the records of one type at name (dns.TypeANY: all).
func (d *DNS) Remove(name string, rtype uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := fqdn(name)
	for k := range d.records {
		if k.name == n && (rtype == dns.TypeANY || k.rtype == rtype) {
			delete(d.records, k)
		}
	}
}

// Fail makes every query for name answer rcode (dns.RcodeServerFailure,
// dns.RcodeRefused...); dns.RcodeSuccess restores normal answers.
func (d *DNS) Fail(name string, rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(d.rcodes, fqdn(name))
		return
	}
	d.rcodes[fqdn(name)] = rcode
}

// Queries returns how many queries arrived over "udp" or "tcp".
func (d *DNS) Queries(network string) int {
	if network == "tcp" {
		return int(d.tcpQueries.Load())
	}
	return int(d.udpQueries.Load())
}

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	_, isTCP := w.RemoteAddr().(*net.TCPAddr)
	if isTCP {
		d.tcpQueries.Add(1)
	} else {
		d.udpQueries.Add(1)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	if !isTCP && d.TruncateUDP.Load() {
		m.Truncated = true
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	d.answer(m, fqdn(q.Name), q.Qtype)
	if !isTCP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer fills m like an authoritative server that also chases CNAMEs
// within its own data.
func (d *DNS) answer(m *dns.Msg, name string, qtype uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rc, ok := d.rcodes[name]; ok {
		m.Rcode = rc
		return
	}
	for hops := 0; hops < 8; hops++ {
		if rrs := d.records[rrKey{name, qtype}]; len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			return
		}
		cn := d.records[rrKey{name, dns.TypeCNAME}]
		if len(cn) == 0 || qtype == dns.TypeCNAME {
			break
		}
		m.Answer = append(m.Answer, cn[0])
		name = cn[0].(*dns.CNAME).Target
	}
	if len(m.Answer) > 0 {
		return
	}
	for k := range d.records {
		if k.name == name {
			return // the name exists, no data of this type
		}
	}
	m.Rcode = dns.RcodeNameError
}

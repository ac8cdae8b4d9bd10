// Package sestest is a local stand-in for the SES v2 SendEmail HTTP API,
// for tests that drive the real aws-sdk-go-v2 client (marshalling, signing
// and error decoding included) against BaseEndpoint. It records every
// request and can answer with any SES error.
package sestest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
)

// Request is one recorded SendEmail call, decoded from the wire.
type Request struct {
	Raw                  []byte
	To, Cc, Bcc          []string
	ConfigurationSetName string
	Tags                 map[string]string
	TagOrder             []string
	IdentityARN          string
	TenantName           string
	EndpointID           string
	ClickTracking        string
	OpenTracking         string
	Authorization        string
	Path                 string
}

// Reply is what the server answers to one call. Zero Status means 200 with
// a generated MessageId.
type Reply struct {
	Status    int
	ErrorType string // x-amzn-ErrorType, e.g. "TooManyRequestsException"
	Message   string
	// Drop closes the connection without answering (after reading the
	// request: an ambiguous failure).
	Drop bool
	// NoMessageID answers 200 with an empty JSON object: what any HTTP
	// server in the wrong place (a wrong endpoint, an intercepting proxy)
	// may say. Not recorded as accepted.
	NoMessageID bool
}

// Server is the stand-in. Respond, if set, decides each reply from the
// 1-based call number and the request.
type Server struct {
	*httptest.Server
	Respond func(n int, r *Request) Reply

	mu       sync.Mutex
	requests []*Request
	calls    atomic.Int64
	conns    atomic.Int64
	accepted atomic.Int64
}

// New starts a stand-in on 127.0.0.1.
func New() *Server {
	s := &Server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	s.Server.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Server.Start()
	return s
}

// Requests returns the calls SES accepted (answered 200), in order.
func (s *Server) Requests() []*Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Request(nil), s.requests...)
}

// Conns counts the TCP connections clients opened.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// Calls counts every call, accepted or not.
func (s *Server) Calls() int { return int(s.calls.Load()) }

type wire struct {
	Content struct {
		Raw struct{ Data []byte }
	}
	Destination struct {
		ToAddresses, CcAddresses, BccAddresses []string
	}
	ConfigurationSetName        string
	EmailTags                   []struct{ Name, Value string }
	FromEmailAddressIdentityArn string
	TenantName                  string
	EndpointId                  string
	ConfigurationOverrides      struct {
		Tracking struct{ ClickTrackingEnabled, OpenTrackingEnabled string }
	}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	n := int(s.calls.Add(1))
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/v2/email/account") {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"SendQuota":{"Max24HourSend":50000,"MaxSendRate":14,"SentLast24Hours":0},"SendingEnabled":true,"ProductionAccessEnabled":true}`)
		return
	}
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/v2/email/outbound-emails") {
		writeError(w, 404, "NotFoundException", "unknown path "+r.URL.Path)
		return
	}
	var in wire
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, 400, "BadRequestException", err.Error())
		return
	}
	req := &Request{
		Raw: in.Content.Raw.Data, To: in.Destination.ToAddresses, Cc: in.Destination.CcAddresses, Bcc: in.Destination.BccAddresses,
		ConfigurationSetName: in.ConfigurationSetName, Tags: map[string]string{}, IdentityARN: in.FromEmailAddressIdentityArn,
		TenantName: in.TenantName, EndpointID: in.EndpointId,
		ClickTracking: in.ConfigurationOverrides.Tracking.ClickTrackingEnabled,
		OpenTracking:  in.ConfigurationOverrides.Tracking.OpenTrackingEnabled,
		Authorization: r.Header.Get("Authorization"), Path: r.URL.Path,
	}
	for _, t := range in.EmailTags {
		req.Tags[t.Name] = t.Value
		req.TagOrder = append(req.TagOrder, t.Name)
	}
	var rep Reply
	if s.Respond != nil {
		rep = s.Respond(n, req)
	}
	if rep.Drop {
		if hj, ok := w.(http.Hijacker); ok {
			c, _, err := hj.Hijack()
			if err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if (rep.Status != 0 && rep.Status != 200) || rep.ErrorType != "" {
		// Status 200 with an ErrorType is an error with a success status.
		writeError(w, cmp.Or(rep.Status, 200), rep.ErrorType, rep.Message)
		return
	}
	if rep.NoMessageID {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	id := fmt.Sprintf("0100018c-test-%06d", s.accepted.Add(1))
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"MessageId":%q}`, id)
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if typ != "" {
		w.Header().Set("X-Amzn-Errortype", typ)
	}
	w.Header().Set("X-Amzn-Requestid", "test-request-id")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"message": msg})
	w.Write(b)
}

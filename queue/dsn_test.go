package queue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

func dsnEntry() *Entry {
	e := &Entry{
		ID:          "0123abcd",
		Tenant:      "acme",
		Sender:      "app@acme.example",
		Created:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		LastAttempt: time.Date(2026, 1, 3, 3, 4, 5, 0, time.UTC),
		Requests: []Request{
			{Recipients: []string{"a@x.example"}, State: Failed, Status: "5.6.0", Error: "MessageRejected: bad\r\nInjected: header",
				Header: []byte("From: app@acme.example\r\nTo: a@x.example\r\nSubject: Invoice\r\n\r\n")},
			{Recipients: []string{"b@x.example"}, State: Accepted, Header: []byte("From: app@acme.example\r\nTo: b@x.example\r\n\r\n")},
			{Recipients: []string{"c@x.example", "d@x.example"}, State: Failed, Status: StatusExpired, Error: "expired"},
		},
		body: []byte("body\r\n"),
	}
	return e
}

var dsnOpts = DSNOptions{ReportingMTA: "relay.example", From: "postmaster@example.com",
	Now: time.Date(2026, 1, 4, 0, 0, 0, 0, time.UTC), Boundary: "BOUNDARY", MessageID: "dsn1@relay.example"}

func TestDSNNeverForNullSender(t *testing.T) {
	for _, s := range []string{"", "<>"} {
		e := dsnEntry()
		e.Sender = s
		if b, err := BuildDSN(e, dsnOpts); !errors.Is(err, ErrNullSender) || b != nil {
			t.Errorf("sender %q: %v, %q", s, err, b)
		}
	}
}

func TestDSNRefusesIncompleteInput(t *testing.T) {
	e := dsnEntry()
	e.Requests[0].State, e.Requests[2].State = Accepted, Accepted
	if _, err := BuildDSN(e, dsnOpts); err == nil {
		t.Error("DSN without a failed recipient")
	}
	if _, err := BuildDSN(dsnEntry(), DSNOptions{ReportingMTA: "r"}); err == nil {
		t.Error("DSN without From")
	}
	e = dsnEntry()
	e.Requests[0].Header = nil
	if _, err := BuildDSN(e, dsnOpts); err == nil {
		t.Error("DSN without the original header")
	}
}

// TestDSNParsesWithGoMessage reads the report with go-message.
func TestDSNParsesWithGoMessage(t *testing.T) {
	raw, err := BuildDSN(dsnEntry(), dsnOpts)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 || strings.Contains(line, "\n") {
			t.Errorf("line %d too long or with a bare LF", i)
		}
	}
	m, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, _ := m.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %s %v", mt, params)
	}
	if m.Header.Get("To") != "<app@acme.example>" || m.Header.Get("Auto-Submitted") != "auto-replied" {
		t.Errorf("header: %v", m.Header)
	}
	mr := m.MultipartReader()
	var types []string
	var status, headers string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := p.Header.ContentType()
		types = append(types, ct)
		b, _ := io.ReadAll(p.Body)
		switch ct {
		case "message/delivery-status":
			status = string(b)
		case "text/rfc822-headers":
			headers = string(b)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("parts %v", types)
	}
	// message/delivery-status is a per-message block then one block per
	// recipient, each a header block (RFC 3464 §2.1).
	blocks := strings.Split(strings.TrimSpace(status), "\r\n\r\n")
	if len(blocks) != 4 {
		t.Fatalf("%d blocks in %q", len(blocks), status)
	}
	read := func(s string) textproto.Header {
		h, err := textproto.ReadHeader(bufioReader(s + "\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	msg := read(blocks[0])
	if msg.Get("Reporting-MTA") != "dns; relay.example" || msg.Get("Arrival-Date") != "Fri, 02 Jan 2026 03:04:05 +0000" {
		t.Errorf("per-message block %q", blocks[0])
	}
	want := [][3]string{{"rfc822; a@x.example", "5.6.0", "X-SES; MessageRejected: bad  Injected: header"},
		{"rfc822; c@x.example", "4.4.7", "X-SES; expired"}, {"rfc822; d@x.example", "4.4.7", "X-SES; expired"}}
	for i, w := range want {
		h := read(blocks[i+1])
		if h.Get("Final-Recipient") != w[0] || h.Get("Action") != "failed" || h.Get("Status") != w[1] || h.Get("Diagnostic-Code") != w[2] {
			t.Errorf("recipient block %d: %q", i, blocks[i+1])
		}
	}
	if !strings.Contains(headers, "Subject: Invoice\r\n") {
		t.Errorf("original headers %q", headers)
	}
}

// TestDSNParsesWithPython reads the report with Python's email package.
func TestDSNParsesWithPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	raw, err := BuildDSN(dsnEntry(), dsnOpts)
	if err != nil {
		t.Fatal(err)
	}
	const script = `
import email, email.policy, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
out = {"type": m.get_content_type(), "report_type": m.get_param("report-type"), "defects": [str(d) for d in m.defects],
       "to": str(m["To"]), "parts": []}
for p in m.iter_parts():
    part = {"type": p.get_content_type(), "defects": [str(d) for d in p.defects]}
    if p.get_content_type() == "message/delivery-status":
        part["blocks"] = [{k: str(v) for k, v in b.items()} for b in p.get_payload()]
    elif p.get_content_type() == "text/rfc822-headers":
        part["text"] = p.get_content()
    out["parts"].append(part)
print(json.dumps(out))
`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(raw)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var got struct {
		Type    string `json:"type"`
		Report  string `json:"report_type"`
		Defects []string
		To      string
		Parts   []struct {
			Type    string
			Defects []string
			Blocks  []map[string]string
			Text    string
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "multipart/report" || got.Report != "delivery-status" || len(got.Defects) > 0 || got.To != "app@acme.example" {
		t.Fatalf("python sees %s", b)
	}
	if len(got.Parts) != 3 || got.Parts[1].Type != "message/delivery-status" || got.Parts[2].Type != "text/rfc822-headers" {
		t.Fatalf("python parts %s", b)
	}
	for _, p := range got.Parts {
		if len(p.Defects) > 0 {
			t.Errorf("python defects %v", p.Defects)
		}
	}
	bl := got.Parts[1].Blocks
	if len(bl) != 4 || bl[0]["Reporting-MTA"] != "dns; relay.example" || bl[1]["Final-Recipient"] != "rfc822; a@x.example" ||
		bl[1]["Action"] != "failed" || bl[1]["Status"] != "5.6.0" || bl[3]["Final-Recipient"] != "rfc822; d@x.example" || bl[3]["Status"] != "4.4.7" {
		t.Errorf("python blocks %v", bl)
	}
	if !strings.Contains(got.Parts[2].Text, "Subject: Invoice") {
		t.Errorf("python headers part %q", got.Parts[2].Text)
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestForwardingSendsOneSignedCallPerMessage drives the forwarding limit
// with the load generator against a recording endpoint: one SendEmail per
// message, SigV4-signed, the raw message intact in the JSON body, and a 250
// only after the endpoint answered.
func TestForwardingSendsOneSignedCallPerMessage(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	var auths []string
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		auths = append(auths, r.Header.Get("Authorization")+" "+r.Header.Get("X-Amz-Date")+" "+r.URL.Path)
		f := fail
		mu.Unlock()
		if f {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, `{"MessageId":"m-1"}`)
	}))
	defer srv.Close()
	fw, err := newForwarder(srv.URL, "us-east-1", nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	f, err := startForwarding("127.0.0.1:0", benchUser, benchPass, fw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	cfg := loadConfig{Addr: f.Addr(), User: benchUser, Pass: benchPass, Mode: modePersistent, Conns: 2, Size: 4096,
		From: benchFrom, To: benchTo, Count: 10, Timeout: 10e9}
	res, err := runLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 10 || res.Failed != 0 {
		t.Fatalf("%d sent, %d failed: %v %v", res.Messages, res.Failed, res.Errors, res.ErrorSamples)
	}
	mu.Lock()
	if len(bodies) != 10 {
		t.Fatalf("%d SendEmail calls for 10 messages", len(bodies))
	}
	for i, b := range bodies {
		var req struct {
			Content     struct{ Raw struct{ Data []byte } }
			Destination struct{ ToAddresses []string }
		}
		if err := json.Unmarshal(b, &req); err != nil {
			t.Fatalf("call %d: %v: %q", i, err, b)
		}
		if len(req.Content.Raw.Data) != 4096 || !bytes.Contains(req.Content.Raw.Data, []byte("From: ")) {
			t.Errorf("call %d: raw message of %d bytes", i, len(req.Content.Raw.Data))
		}
		if strings.Join(req.Destination.ToAddresses, ",") != benchTo {
			t.Errorf("call %d: destination %v", i, req.Destination.ToAddresses)
		}
		if a := auths[i]; !strings.HasPrefix(a, "AWS4-HMAC-SHA256 Credential=bench/") || !strings.Contains(a, "/us-east-1/ses/aws4_request") ||
			!strings.HasSuffix(a, sendEmailPath) {
			t.Errorf("call %d: %q", i, a)
		}
	}
	fail = true
	mu.Unlock()

	cfg.Count = 1
	res, err = runLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages != 0 || res.Errors["451"] != 1 {
		t.Fatalf("after a 500: %d sent, errors %v", res.Messages, res.Errors)
	}
}

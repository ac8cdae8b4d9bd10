package ses

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/sesrelay/sesrelay/relay"
)

// wireCall is one request as the endpoint received it.
type wireCall struct {
	header http.Header
	host   string
	path   string
	length int64
	body   []byte
}

// wireRecorder is an endpoint that records every call and accepts it.
type wireRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	calls []wireCall
}

func newWireRecorder(t *testing.T) *wireRecorder {
	rec := &wireRecorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		rec.mu.Lock()
		rec.calls = append(rec.calls, wireCall{header: r.Header.Clone(), host: r.Host, path: r.URL.RequestURI(), length: r.ContentLength, body: b})
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"MessageId":"m"}`)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *wireRecorder) last(t *testing.T) wireCall {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.calls) == 0 {
		t.Fatal("no call recorded")
	}
	return rec.calls[len(rec.calls)-1]
}

// verifySigV4 recomputes the signature of c with the SDK's standalone
// signer, over the headers c names in SignedHeaders, the body's SHA-256
// and the time of X-Amz-Date, as SES would, and says whether the
// Authorization header matches.
func verifySigV4(t *testing.T, c wireCall, body []byte) bool {
	t.Helper()
	auth := c.header.Get("Authorization")
	_, signed, ok := strings.Cut(auth, "SignedHeaders=")
	if !ok {
		t.Fatalf("no SignedHeaders in %q", auth)
	}
	signed, _, _ = strings.Cut(signed, ",")
	when, err := time.Parse("20060102T150405Z", c.header.Get("X-Amz-Date"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.NewRequest(http.MethodPost, "http://"+c.host+c.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.ContentLength = int64(len(body))
	for name := range strings.SplitSeq(signed, ";") {
		switch name {
		case "host", "content-length":
		default:
			for _, v := range c.header.Values(name) {
				r.Header.Add(name, v)
			}
		}
	}
	r.Header.Del("X-Amz-Date")
	sum := sha256.Sum256(body)
	creds, err := testAWS.Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), "ses", "us-east-1", when); err != nil {
		t.Fatal(err)
	}
	return r.Header.Get("Authorization") == auth
}

// message returns a message of exactly n bytes (n >= 0) with arbitrary
// octets, so every base64 group boundary and padding case comes up.
func message(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestStreamedBodyIsTheSDKBody sends the same request through Send (the
// streamed body) and through a plain SDK client (the SDK's own, whole
// body) and compares what the endpoint received, byte for byte, for sizes
// around every base64 group boundary, around the read buffers of the
// hash and of net/http, and large; and checks each streamed request's
// SigV4 signature against the SDK's signer.
func TestStreamedBodyIsTheSDKBody(t *testing.T) {
	streamed, plain := newWireRecorder(t), newWireRecorder(t)
	s := newSender(t, streamed.URL, func(o *Options) { o.MaxAttempts = 1 })
	sdk := sesv2.NewFromConfig(testAWS, func(o *sesv2.Options) {
		o.BaseEndpoint = aws.String(plain.URL)
		o.Retryer = noRetries()
	})
	full := relay.Request{
		ConfigurationSet: "cs-1", Tags: []relay.Tag{{Name: "tenant", Value: "t1"}, {Name: "k", Value: "v"}},
		IdentityARN: "arn:aws:ses:us-east-1:123456789012:identity/example.com", SESTenant: "acme",
		DisableTracking: true, Recipients: []string{"a@example.org", "b@example.net"},
	}
	sizes := []int{0, 1, 2, 3, 4, 5, 6, 7, 100, 4095, 4096, 4097, 8192, 24575, 24576, 24577, 32768, 65537, 3 << 20}
	for i, n := range sizes {
		for _, base := range []relay.Request{{Recipients: []string{"a@example.org"}}, full} {
			req := base
			req.Raw = message(n, uint64(i))
			name := fmt.Sprintf("%d bytes, %d tags", n, len(req.Tags))
			if _, err := s.Send(context.Background(), &req); err != nil {
				t.Fatalf("%s: streamed: %v", name, err)
			}
			if _, err := sdk.SendEmail(context.Background(), Input(&req)); err != nil {
				t.Fatalf("%s: SDK: %v", name, err)
			}
			got, want := streamed.last(t), plain.last(t)
			if !bytes.Equal(got.body, want.body) {
				t.Fatalf("%s: bodies differ:\nstreamed %.300q\nSDK      %.300q", name, got.body, want.body)
			}
			if got.length != int64(len(want.body)) || got.header.Get("Content-Type") != want.header.Get("Content-Type") || got.path != want.path {
				t.Errorf("%s: Content-Length %d, Content-Type %q, path %q; SDK: %d, %q, %q", name,
					got.length, got.header.Get("Content-Type"), got.path, len(want.body), want.header.Get("Content-Type"), want.path)
			}
			if !verifySigV4(t, got, got.body) {
				t.Errorf("%s: the streamed request's signature does not verify", name)
			}
			if n > 0 && verifySigV4(t, got, append(bytes.Clone(got.body[:len(got.body)-1]), '!')) {
				t.Errorf("%s: a changed body verifies: the check is blind", name)
			}
		}
	}
}

// TestRawBodyReads reads a rawBody through awkward buffer sizes and after
// seeks, as the payload hash and net/http do, against the whole encoding.
func TestRawBodyReads(t *testing.T) {
	doc := []byte(`{"Content":{"Raw":{"Data":""}},"Destination":{"ToAddresses":["a@b.c"]}}`)
	for _, n := range []int{0, 1, 2, 3, 10, 11, 12, 1000} {
		raw := message(n, uint64(n))
		want := []byte(`{"Content":{"Raw":{"Data":"` + base64.StdEncoding.EncodeToString(raw) + `"}},"Destination":{"ToAddresses":["a@b.c"]}}`)
		b, err := newRawBody(doc, raw)
		if err != nil {
			t.Fatal(err)
		}
		if b.Size() != int64(len(want)) {
			t.Fatalf("%d: Size %d, want %d", n, b.Size(), len(want))
		}
		if err := iotest.TestReader(b, want); err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		for _, chunk := range []int{1, 3, 5, 7, 4096} {
			if _, err := b.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			p := make([]byte, chunk)
			for {
				k, err := b.Read(p)
				out.Write(p[:k])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("%d bytes read %d at a time:\n%q\nwant\n%q", n, chunk, out.Bytes(), want)
			}
		}
	}
	if _, err := newRawBody([]byte(`{"Content":{"Raw":{"Data":"eA=="}}}`), nil); err == nil {
		t.Error("a document without the empty placeholder was accepted")
	}
}

// TestSendDoesNotMaterialiseTheBody sends an 8 MiB message and counts the
// bytes allocated by the whole process meanwhile (the endpoint discards
// what it reads): the SDK's own path allocates the base64 JSON body (about
// 11 MiB) at least twice; the streamed body allocates nothing in
// proportion to the message.
func TestSendDoesNotMaterialiseTheBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"MessageId":"m"}`)
	}))
	defer srv.Close()
	s := newSender(t, srv.URL, func(o *Options) { o.MaxAttempts = 1 })
	big := &relay.Request{Recipients: []string{"a@example.org"}, Raw: message(8<<20, 7)}
	if _, err := s.Send(context.Background(), req); err != nil { // warm the connection and the client
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := s.Send(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("sending an 8 MiB message allocated %.1f MiB", float64(n)/(1<<20))
	}
}

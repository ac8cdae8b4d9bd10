package ses_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sesrelay/sesrelay/relay"
	"github.com/sesrelay/sesrelay/relay/ses"
)

// TestCABundleHonoured: with the default credential chain, the pooled HTTP
// client must still trust AWS_CA_BUNDLE (a private CA in front of SES, or a
// local HTTPS stand-in).
func TestCABundleHonoured(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"MessageId":"ca-ok"}`)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", ca)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	s, err := ses.New(context.Background(), ses.Options{Region: "us-east-1", Endpoint: srv.URL, MaxAttempts: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Send(context.Background(), &relay.Request{Recipients: []string{"a@example.org"}, Raw: []byte("From: a@example.com\r\n\r\nx\r\n")})
	if err != nil {
		t.Fatalf("send over HTTPS with AWS_CA_BUNDLE: %v", err)
	}
	if res.MessageID != "ca-ok" {
		t.Fatalf("message id %q", res.MessageID)
	}
}

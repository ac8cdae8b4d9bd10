package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestSESStub(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		s, err := startSESStub("127.0.0.1:0", useTLS, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		client := http.DefaultClient
		if useTLS {
			// The PEM it hands out is all a client needs to trust it,
			// as AWS_CA_BUNDLE does for the relay.
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(s.CertPEM) {
				t.Fatal("certificate PEM does not parse")
			}
			client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
				t.Errorf("URL %s", s.URL())
			}
		}
		ids := map[string]bool{}
		for range 3 {
			resp, err := client.Post(s.URL()+sendEmailPath, "application/json", strings.NewReader(`{"Content":{"Raw":{"Data":"eA=="}}}`))
			if err != nil {
				t.Fatal(err)
			}
			var out struct{ MessageId string }
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(out.MessageId) {
				t.Fatalf("tls=%v: %d %q %v", useTLS, resp.StatusCode, out.MessageId, err)
			}
			ids[out.MessageId] = true
		}
		if len(ids) != 3 {
			t.Errorf("MessageIds repeat: %v", ids)
		}
		if st := s.Stats(); st.Requests != 3 || st.Conns != 1 || st.Bytes != 3*int64(len(`{"Content":{"Raw":{"Data":"eA=="}}}`)) {
			t.Errorf("stats %+v", st)
		}
		resp, err := client.Get(s.URL() + "/v2/email/account")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("other path: %d", resp.StatusCode)
		}
	}
}

func TestDKIMAlgorithm(t *testing.T) {
	raw := "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=bench.example.com;\r\n s=s1; h=From; bh=x; b=y\r\nFrom: a@bench.example.com\r\n\r\nbody\r\n"
	body, _ := json.Marshal(map[string]any{"Content": map[string]any{"Raw": map[string]any{"Data": []byte(raw)}}})
	if got := dkimAlgorithm(body); got != "ed25519-sha256" {
		t.Errorf("signed: %q", got)
	}
	body, _ = json.Marshal(map[string]any{"Content": map[string]any{"Raw": map[string]any{"Data": []byte("From: a@b.example\r\n\r\nx\r\n")}}})
	if got := dkimAlgorithm(body); got != "" {
		t.Errorf("unsigned: %q", got)
	}
	if got := dkimAlgorithm([]byte("not json")); got != "" {
		t.Errorf("garbage: %q", got)
	}
}

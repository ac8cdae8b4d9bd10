// Command unsubscribe-endpoint is an example of the tenant's side of
// one-click unsubscribe (RFC 8058): the HTTPS endpoint behind the
// List-Unsubscribe URL that sesrelay adds in list_unsubscribe mode "add".
//
// It serves one path shape, PREFIX + token (the relay's url template
// "https://u.example.com/u/{token}" with -prefix /u/), and answers:
//
//   - POST with a body (application/x-www-form-urlencoded or
//     multipart/form-data) holding List-Unsubscribe=One-Click and a token
//     that headers.VerifyUnsubscribeToken accepts: the recipient is
//     unsubscribed from the tenant's list, 200.
//   - a bad or forged token: 400, the same answer whatever is wrong with it.
//   - any other method: 405. A GET must never unsubscribe: mail scanners
//     and link previewers fetch URLs nobody clicked.
//
// It never redirects (RFC 8058: redirected POSTs are unreliable, and
// receivers need not follow them) and never sets or reads cookies (the
// receiver's POST carries none). The
// handler is mounted directly, not on an http.ServeMux, because ServeMux
// answers unclean paths with a redirect.
//
// Run it behind TLS (-tls-cert/-tls-key, or a terminating proxy): the
// relay only puts https URLs into List-Unsubscribe.
//
//	unsubscribe-endpoint -listen :8443 -tenant billing \
//	    -secret-file /etc/sesrelay/unsubscribe.key -tls-cert cert.pem -tls-key key.pem
//
// Each unsubscribe is printed as one JSON line on stdout; a real endpoint
// writes it to the tenant's suppression list instead (Unsubscribe field).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"mime"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sesrelay/sesrelay/headers"
)

// maxBody bounds the request body: the one-click body is 26 bytes.
const maxBody = 64 << 10

// Handler is the one-click unsubscribe endpoint of one tenant.
type Handler struct {
	// Secrets are the tenant's list_unsubscribe secrets, current first. A
	// token never expires, so after rotating the secret keep the old one
	// here as long as mail carrying its links may still be opened.
	Secrets [][]byte
	// Tenant, when not empty, is the only tenant name a token may carry.
	Tenant string
	// Prefix is the path before the token, e.g. "/u/".
	Prefix string
	// Unsubscribe records that the recipient leaves the list. It must be
	// idempotent: receivers may POST more than once. An error answers 500,
	// so that the receiver may try again.
	Unsubscribe func(ctx context.Context, c headers.UnsubscribeClaims) error
	// Log receives one line per refused request; nil discards.
	Log *log.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	token, ok := strings.CutPrefix(r.URL.Path, h.Prefix)
	if !ok || token == "" || strings.Contains(token, "/") {
		h.refuse(w, http.StatusNotFound, "not found", "path %q", r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, http.StatusMethodNotAllowed, "use POST (RFC 8058 one-click unsubscribe)", "method %s", r.Method)
		return
	}
	if err := oneClickBody(w, r); err != nil {
		h.refuse(w, http.StatusBadRequest, "not a one-click unsubscribe request", "%v", err)
		return
	}
	claims, err := h.verify(token)
	if err != nil {
		// One answer for every bad token; the reason goes to the log.
		h.refuse(w, http.StatusBadRequest, "invalid unsubscribe link", "%v", err)
		return
	}
	if err := h.Unsubscribe(r.Context(), claims); err != nil {
		h.refuse(w, http.StatusInternalServerError, "try again later", "recording the unsubscribe: %v", err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "unsubscribed\n")
}

// verify tries each secret in turn.
func (h *Handler) verify(token string) (headers.UnsubscribeClaims, error) {
	err := headers.ErrTokenNoSecret
	for _, s := range h.Secrets {
		var c headers.UnsubscribeClaims
		c, err = headers.VerifyUnsubscribeToken(s, token)
		if err == nil {
			if h.Tenant != "" && c.Tenant != h.Tenant {
				return c, fmt.Errorf("token of tenant %q", c.Tenant)
			}
			return c, nil
		}
		if !errors.Is(err, headers.ErrTokenMAC) {
			return c, err // malformed: another secret will not help
		}
	}
	return headers.UnsubscribeClaims{}, err
}

// oneClickBody checks that the body, not the query string, says
// List-Unsubscribe=One-Click, in either form encoding RFC 8058 allows.
func oneClickBody(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("content type %q", r.Header.Get("Content-Type"))
	}
	switch ct {
	case "application/x-www-form-urlencoded":
		err = r.ParseForm()
	case "multipart/form-data":
		err = r.ParseMultipartForm(maxBody)
	default:
		return fmt.Errorf("content type %q", ct)
	}
	if err != nil {
		return fmt.Errorf("body: %v", err)
	}
	// PostForm holds the body's fields only (Form would add the query's).
	if v := r.PostForm["List-Unsubscribe"]; len(v) != 1 || v[0] != "One-Click" {
		return fmt.Errorf("body field List-Unsubscribe=%q, want One-Click", v)
	}
	return nil
}

func (h *Handler) refuse(w http.ResponseWriter, code int, text, format string, args ...any) {
	if h.Log != nil {
		h.Log.Printf("%d: "+format, append([]any{code}, args...)...)
	}
	http.Error(w, text, code)
}

// readSecret reads a secret file as the relay does: its content without
// leading and trailing whitespace.
func readSecret(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	if len(b) < 32 {
		return nil, fmt.Errorf("%s holds %d bytes, the relay needs at least 32", file, len(b))
	}
	return b, nil
}

type fileList []string

func (l *fileList) String() string     { return strings.Join(*l, ",") }
func (l *fileList) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var secretFiles fileList
	flag.Var(&secretFiles, "secret-file", "the tenant's list_unsubscribe.secret_file (repeat: current first, then older ones)")
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	tenant := flag.String("tenant", "", "accept only tokens of this tenant")
	prefix := flag.String("prefix", "/u/", "URL path before the token")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); without it, plain HTTP for a TLS-terminating proxy")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	flag.Parse()
	logger := log.New(os.Stderr, "unsubscribe-endpoint: ", log.LstdFlags)
	if len(secretFiles) == 0 {
		logger.Fatal("-secret-file is required")
	}
	h := &Handler{Tenant: *tenant, Prefix: *prefix, Log: logger}
	for _, f := range secretFiles {
		s, err := readSecret(f)
		if err != nil {
			logger.Fatal(err)
		}
		h.Secrets = append(h.Secrets, s)
	}
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	h.Unsubscribe = func(_ context.Context, c headers.UnsubscribeClaims) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(map[string]string{
			"time": time.Now().UTC().Format(time.RFC3339), "tenant": c.Tenant, "list": c.List, "recipient": c.Recipient,
		})
	}

	srv := &http.Server{
		Addr:              *listen,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          logger,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	var err error
	if *certFile != "" {
		err = srv.ListenAndServeTLS(*certFile, *keyFile)
	} else {
		err = srv.ListenAndServe()
	}
	if !errors.Is(err, http.ErrServerClosed) {
		logger.Fatal(err)
	}
}

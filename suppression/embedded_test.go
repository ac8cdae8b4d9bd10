package suppression

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sesrelay/sesrelay/config"
)

func TestEmbeddedConformance(t *testing.T) {
	testConformance(t, func(t *testing.T) Store {
		s, err := OpenEmbedded(t.TempDir(), time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenEmbeddedConformance(t *testing.T) {
	testConformance(t, func(t *testing.T) Store {
		c := config.DefaultSuppression()
		c.Dir = t.TempDir()
		s, err := Open(context.Background(), c, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestEmbeddedReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenEmbedded(dir, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, Entry{Tenant: "acme", List: "news", Recipient: "a@example.com", Source: SourceUnsubscribe})
	// A second opener of the same file waits for the lock, then fails.
	if _, err := OpenEmbedded(dir, 100*time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("second open = %v, want a lock error", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenEmbedded(dir, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Suppressed(context.Background(), "acme", "news", []string{"a@example.com"})
	if err != nil || !got["a@example.com"] {
		t.Errorf("after reopen Suppressed = %v, %v", got, err)
	}
}

func TestEmbeddedListPages(t *testing.T) {
	s, err := OpenEmbedded(t.TempDir(), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer func(p int) { listPage = p }(listPage)
	listPage = 10
	n := listPage*2 + 7
	var es []Entry
	for i := 0; i < n; i++ {
		es = append(es, Entry{Tenant: "acme", List: "news", Recipient: fmt.Sprintf("u%05d@example.com", i)})
	}
	if err := s.AddMany(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	// fn may write to the store: List holds no transaction while calling it.
	err = s.List(context.Background(), "acme", "", func(e Entry) error {
		if seen[e.Recipient] {
			t.Fatalf("%s listed twice", e.Recipient)
		}
		seen[e.Recipient] = true
		return s.Remove(context.Background(), e.Tenant, e.List, e.Recipient)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("listed %d entries, want %d", len(seen), n)
	}
	if es := list(t, s, "acme", ""); len(es) != 0 {
		t.Errorf("%d entries left after removing each listed one", len(es))
	}
}

func TestOpenEmbeddedNeedsDir(t *testing.T) {
	_, err := Open(context.Background(), config.DefaultSuppression(), Options{})
	if err == nil || !strings.Contains(err.Error(), "suppression.dir") {
		t.Errorf("Open without dir = %v, want an error naming suppression.dir", err)
	}
}

package suppression

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// testConformance is the contract every Store passes. open returns an
// empty store; the test closes it.
func testConformance(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	t.Run("add and look up", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		mustAdd(t, s, Entry{Tenant: "acme", List: "news", Recipient: "Bob@Example.COM", Created: t0, Source: SourceUnsubscribe})
		got, err := s.Suppressed(ctx, "acme", "news", []string{"Bob@example.com", "<Bob@EXAMPLE.com>", "bob@example.com", "carol@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{"Bob@example.com": true, "<Bob@EXAMPLE.com>": true}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Suppressed = %v, want %v (domain case-insensitive, local part as written)", got, want)
		}
		for _, c := range []struct{ tenant, list string }{{"acme", "offers"}, {"other", "news"}, {"acme", ""}, {"acm", "news"}, {"acme", "new"}} {
			got, err := s.Suppressed(ctx, c.tenant, c.list, []string{"Bob@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Errorf("Suppressed(%q, %q) = %v: an entry of (acme, news) leaked", c.tenant, c.list, got)
			}
		}
	})

	t.Run("add twice keeps the first", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		mustAdd(t, s, Entry{Tenant: "acme", List: "news", Recipient: "a@example.com", Created: t0, Source: SourceUnsubscribe})
		mustAdd(t, s, Entry{Tenant: "acme", List: "news", Recipient: "a@EXAMPLE.com", Created: t0.Add(time.Hour), Source: SourceImport})
		es := list(t, s, "acme", "")
		if len(es) != 1 {
			t.Fatalf("List = %v, want one entry", es)
		}
		if e := es[0]; !e.Created.Equal(t0) || e.Source != SourceUnsubscribe || e.Recipient != "a@example.com" {
			t.Errorf("entry = %+v, want the first add (created %s, source unsubscribe)", e, t0)
		}
	})

	t.Run("zero created is now", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		before := time.Now().Add(-time.Second)
		mustAdd(t, s, Entry{Tenant: "acme", List: "news", Recipient: "a@example.com", Source: SourceAdmin})
		es := list(t, s, "acme", "news")
		if len(es) != 1 || es[0].Created.Before(before) || es[0].Created.After(time.Now().Add(time.Second)) {
			t.Errorf("List = %+v, want one entry created now", es)
		}
	})

	t.Run("remove", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		mustAdd(t, s, Entry{Tenant: "acme", List: "news", Recipient: "a@example.com", Created: t0})
		mustAdd(t, s, Entry{Tenant: "acme", List: "offers", Recipient: "a@example.com", Created: t0})
		if err := s.Remove(ctx, "acme", "news", "a@Example.com"); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(ctx, "acme", "news", "nobody@example.com"); err != nil {
			t.Errorf("Remove of an absent entry: %v", err)
		}
		if got, _ := s.Suppressed(ctx, "acme", "news", []string{"a@example.com"}); len(got) != 0 {
			t.Errorf("after Remove, Suppressed = %v", got)
		}
		if got, _ := s.Suppressed(ctx, "acme", "offers", []string{"a@example.com"}); !got["a@example.com"] {
			t.Errorf("Remove on news removed the offers entry too")
		}
	})

	t.Run("list", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		for _, e := range []Entry{
			{Tenant: "acme", List: "news", Recipient: "b@example.com"},
			{Tenant: "acme", List: "news", Recipient: "a@example.com"},
			{Tenant: "acme", List: "news2", Recipient: "c@example.com"},
			{Tenant: "acme", List: "offers", Recipient: "a@example.com"},
			{Tenant: "acme2", List: "news", Recipient: "z@example.com"},
			{Tenant: "acm", List: "news", Recipient: "y@example.com"},
		} {
			e.Created, e.Source = t0, SourceImport
			mustAdd(t, s, e)
		}
		check := func(tenant, lst string, want ...string) {
			t.Helper()
			var got []string
			for _, e := range list(t, s, tenant, lst) {
				if e.Tenant != tenant || (lst != "" && e.List != lst) || !e.Created.Equal(t0) || e.Source != SourceImport {
					t.Errorf("List(%q, %q) gave %+v", tenant, lst, e)
				}
				got = append(got, e.List+" "+e.Recipient)
			}
			sort.Strings(got)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("List(%q, %q) = %q, want %q", tenant, lst, got, want)
			}
		}
		check("acme", "", "news a@example.com", "news b@example.com", "news2 c@example.com", "offers a@example.com")
		check("acme", "news", "news a@example.com", "news b@example.com")
		check("acm", "", "news y@example.com")
		check("nobody", "")

		stop := errors.New("stop")
		n := 0
		err := s.List(ctx, "acme", "", func(Entry) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("List with fn failing: err %v after %d calls, want stop after 1", err, n)
		}
	})

	t.Run("many recipients", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		var rcpts []string
		for i := 0; i < 260; i++ {
			r := fmt.Sprintf("user%d@example.com", i)
			rcpts = append(rcpts, r)
			if i%3 == 0 {
				mustAdd(t, s, Entry{Tenant: "acme", List: "news", Recipient: r, Created: t0})
			}
		}
		rcpts = append(rcpts, rcpts[0], rcpts[1]) // duplicates are answered too
		got, err := s.Suppressed(ctx, "acme", "news", rcpts)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rcpts {
			if got[r] != (i%260%3 == 0) {
				t.Errorf("Suppressed[%s] = %v", r, got[r])
			}
		}
		if len(got) != 87 {
			t.Errorf("Suppressed found %d, want 87", len(got))
		}
	})

	t.Run("add many", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		b, ok := s.(Batcher)
		if !ok {
			t.Skip("store has no AddMany")
		}
		mustAdd(t, s, Entry{Tenant: "acme", List: "news", Recipient: "a@example.com", Created: t0, Source: SourceUnsubscribe})
		err := b.AddMany(ctx, []Entry{
			{Tenant: "acme", List: "news", Recipient: "b@example.com", Source: SourceImport},
			{Tenant: "acme", List: "news", Recipient: "not-an-address", Source: SourceImport},
		})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("AddMany with an invalid entry = %v, want ErrInvalid", err)
		}
		if es := list(t, s, "acme", ""); len(es) != 1 {
			t.Errorf("AddMany with an invalid entry wrote %v", es)
		}
		var es []Entry
		for i := 0; i < 40; i++ {
			es = append(es, Entry{Tenant: "acme", List: "news", Recipient: fmt.Sprintf("u%d@EXAMPLE.com", i), Created: t0.Add(time.Minute), Source: SourceImport})
		}
		es = append(es, Entry{Tenant: "acme", List: "news", Recipient: "a@example.com", Created: t0.Add(time.Minute), Source: SourceImport})
		if err := b.AddMany(ctx, es); err != nil {
			t.Fatal(err)
		}
		got := list(t, s, "acme", "news")
		if len(got) != 41 {
			t.Errorf("after AddMany List has %d entries, want 41", len(got))
		}
		for _, e := range got {
			if e.Recipient == "a@example.com" && e.Source != SourceUnsubscribe {
				t.Errorf("AddMany replaced the first entry of a@example.com: %+v", e)
			}
			if strings.Contains(e.Recipient, "EXAMPLE") {
				t.Errorf("AddMany did not normalise %q", e.Recipient)
			}
		}
	})

	t.Run("invalid entries", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		for _, e := range []Entry{
			{List: "news", Recipient: "a@example.com"},
			{Tenant: "acme", Recipient: "a@example.com"},
			{Tenant: "acme", List: "news"},
			{Tenant: "acme", List: "news", Recipient: "no-domain"},
			{Tenant: "acme", List: "news", Recipient: "a@"},
			{Tenant: "acme", List: "ne\nws", Recipient: "a@example.com"},
			{Tenant: "ac\x00me", List: "news", Recipient: "a@example.com"},
		} {
			if err := s.Add(ctx, e); !errors.Is(err, ErrInvalid) {
				t.Errorf("Add(%+v) = %v, want ErrInvalid", e, err)
			}
		}
		if es := list(t, s, "acme", ""); len(es) != 0 {
			t.Errorf("invalid adds stored %v", es)
		}
	})
}

func mustAdd(t *testing.T, s Store, e Entry) {
	t.Helper()
	if err := s.Add(context.Background(), e); err != nil {
		t.Fatalf("Add(%+v): %v", e, err)
	}
}

func list(t *testing.T, s Store, tenant, lst string) []Entry {
	t.Helper()
	var es []Entry
	if err := s.List(context.Background(), tenant, lst, func(e Entry) error { es = append(es, e); return nil }); err != nil {
		t.Fatalf("List(%q, %q): %v", tenant, lst, err)
	}
	return es
}

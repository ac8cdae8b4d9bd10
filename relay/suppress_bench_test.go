package relay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/config"
	"github.com/sesrelay/sesrelay/suppression"
)

// BenchmarkSuppress is the work the suppression step adds to one message
// (one recipient, or ten) with the embedded store: through the lookup
// cache (suppression.cache_ttl 10s, the default; every recipient cached),
// and with the cache off (every message reads the bbolt file). One of the
// ten recipients is suppressed.
//
//	go test -run - -bench Suppress -benchmem ./relay
func BenchmarkSuppress(b *testing.B) {
	for _, ttl := range []time.Duration{10 * time.Second, 0} {
		for _, n := range []int{1, 10} {
			b.Run(fmt.Sprintf("cache_ttl=%s/rcpts=%d", ttl, n), func(b *testing.B) {
				c := config.DefaultSuppression()
				c.Dir, c.CacheTTL = b.TempDir(), ttl
				store, err := suppression.Open(context.Background(), c, suppression.Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer store.Close()
				if err := store.Add(context.Background(), suppression.Entry{Tenant: "t", List: "monthly", Recipient: "r9@example.org"}); err != nil {
					b.Fatal(err)
				}
				rcpts := make([]string, n)
				for i := range rcpts {
					rcpts[i] = fmt.Sprintf("r%d@example.org", i)
				}
				s := &Server{opts: Options{Suppressions: store}}
				log := zap.NewNop()
				b.ReportAllocs()
				for b.Loop() {
					p := &Prepared{List: "monthly", Requests: []*Request{{Recipients: rcpts}}}
					if r := s.suppress(context.Background(), p, "t", config.SuppressDrop, "ref", log); r != nil {
						b.Fatal(r)
					}
				}
			})
		}
	}
}

package suppression

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sesrelay/sesrelay/config"
)

// The embedded store's file holds one bucket, entriesBucket, whose keys are
// tenant NUL list NUL recipient (check refuses NUL in all three) and whose
// values are the JSON of record. Keys sort by tenant, then list, so List
// is a prefix scan.
var (
	entriesBucket = []byte("entries")
	metaBucket    = []byte("meta")
	versionKey    = []byte("version")
)

const embeddedVersion = "1"

// record is an entry's value in both stores' encodings.
type record struct {
	Created time.Time `json:"created"`
	Source  string    `json:"source"`
}

// Embedded is the single-replica store: one bbolt file. bbolt locks the
// file, so a second process opening the same file waits for timeout and
// then fails instead of corrupting it.
type Embedded struct {
	db  *bolt.DB
	now func() time.Time
}

var _ Store = (*Embedded)(nil)

// OpenEmbedded opens (creating it and dir when missing) the store file
// config.SuppressionFile(dir). timeout bounds the wait for the file lock.
func OpenEmbedded(dir string, timeout time.Duration, now func() time.Time) (*Embedded, error) {
	if dir == "" {
		return nil, fmt.Errorf("suppression.dir: required when suppression.store is embedded")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("suppression.dir: %w", err)
	}
	path := config.SuppressionFile(dir)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if err == bolt.ErrTimeout {
			return nil, fmt.Errorf("suppression: %s is locked by another process: one process at a time opens the embedded store (stop the relay that holds it, or use suppression.store: dynamodb)", path)
		}
		return nil, fmt.Errorf("suppression: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(entriesBucket); err != nil {
			return err
		}
		m, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		switch v := m.Get(versionKey); {
		case v == nil:
			return m.Put(versionKey, []byte(embeddedVersion))
		case string(v) != embeddedVersion:
			return fmt.Errorf("format version %q, this relay reads %q", v, embeddedVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("suppression: %s: %w", path, err)
	}
	if now == nil {
		now = time.Now
	}
	return &Embedded{db: db, now: now}, nil
}

func embeddedKey(tenant, list, rcpt string) []byte {
	k := make([]byte, 0, len(tenant)+len(list)+len(rcpt)+2)
	k = append(k, tenant...)
	k = append(k, 0)
	k = append(k, list...)
	k = append(k, 0)
	return append(k, rcpt...)
}

// Suppressed implements Store.
func (s *Embedded) Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error) {
	out := make(map[string]bool)
	if tenant == "" || list == "" || len(rcpts) == 0 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(entriesBucket)
		for _, r := range rcpts {
			if b.Get(embeddedKey(tenant, list, Normalize(r))) != nil {
				out[r] = true
			}
		}
		return nil
	})
	return out, err
}

// Add implements Store.
func (s *Embedded) Add(ctx context.Context, e Entry) error {
	if err := check(&e); err != nil {
		return err
	}
	if e.Created.IsZero() {
		e.Created = s.now()
	}
	v, err := json.Marshal(record{Created: e.Created.UTC(), Source: e.Source})
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(entriesBucket)
		k := embeddedKey(e.Tenant, e.List, e.Recipient)
		if b.Get(k) != nil {
			return nil
		}
		return b.Put(k, v)
	})
}

// AddMany implements Batcher: all entries in one transaction (one fsync),
// all or none.
func (s *Embedded) AddMany(ctx context.Context, es []Entry) error {
	type kv struct{ k, v []byte }
	recs := make([]kv, 0, len(es))
	for i := range es {
		e := es[i]
		if err := check(&e); err != nil {
			return fmt.Errorf("entry %d: %w", i+1, err)
		}
		if e.Created.IsZero() {
			e.Created = s.now()
		}
		v, err := json.Marshal(record{Created: e.Created.UTC(), Source: e.Source})
		if err != nil {
			return err
		}
		recs = append(recs, kv{embeddedKey(e.Tenant, e.List, e.Recipient), v})
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(entriesBucket)
		for _, r := range recs {
			if b.Get(r.k) != nil {
				continue
			}
			if err := b.Put(r.k, r.v); err != nil {
				return err
			}
		}
		return nil
	})
}

// Remove implements Store.
func (s *Embedded) Remove(ctx context.Context, tenant, list, recipient string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(entriesBucket).Delete(embeddedKey(tenant, list, Normalize(recipient)))
	})
}

// List implements Store. Entries come sorted by list, then recipient. fn
// runs outside any transaction (entries are read in pages), so it may call
// the store, Remove included.
func (s *Embedded) List(ctx context.Context, tenant, list string, fn func(Entry) error) error {
	prefix := append([]byte(tenant), 0)
	if list != "" {
		prefix = append(append(prefix, list...), 0)
	}
	var after []byte
	for {
		var page []Entry
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(entriesBucket).Cursor()
			k, v := c.Seek(prefix)
			if after != nil {
				k, v = c.Seek(after)
				if bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && bytes.HasPrefix(k, prefix) && len(page) < listPage; k, v = c.Next() {
				parts := bytes.SplitN(k, []byte{0}, 3)
				if len(parts) != 3 {
					return fmt.Errorf("suppression: malformed key %q", k)
				}
				var r record
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("suppression: entry %q: %w", k, err)
				}
				page = append(page, Entry{Tenant: string(parts[0]), List: string(parts[1]), Recipient: string(parts[2]), Created: r.Created, Source: r.Source})
				after = append(after[:0], k...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < listPage {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// listPage is how many entries List reads per transaction (a variable for
// tests).
var listPage = 1000

// Close implements Store.
func (s *Embedded) Close() error { return s.db.Close() }

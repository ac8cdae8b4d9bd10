// Package suppression keeps the recipients that must not receive a tenant's
// list mail any more: one-click unsubscribes (RFC 8058), imports and
// operator entries, per (tenant, list, recipient). Two stores implement
// Store: an embedded bbolt file for a single replica and one DynamoDB table
// shared by every replica. Open wraps either in a short read cache, so an
// entry added through one replica holds on every replica within
// suppression.cache_ttl.
package suppression

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sesrelay/sesrelay/address"
	"github.com/sesrelay/sesrelay/config"
)

// Sources of an Entry.
const (
	SourceUnsubscribe = "unsubscribe"
	SourceImport      = "import"
	SourceAdmin       = "admin"
)

// Entry is one suppressed recipient of one tenant's list.
type Entry struct {
	Tenant, List, Recipient string // Recipient normalised by Normalize
	Created                 time.Time
	Source                  string // "unsubscribe", "import", "admin", ...
}

// Store keeps suppression entries. Implementations are safe for concurrent
// use. Every method normalises the recipients it is given (Normalize), so
// callers may pass envelope addresses as they came.
type Store interface {
	// Suppressed returns the recipients of rcpts suppressed for (tenant, list).
	// The map's keys are the elements of rcpts as given (not normalised);
	// recipients not suppressed are absent. An error means the answer is
	// unknown: the caller must fail closed (send nothing).
	Suppressed(ctx context.Context, tenant, list string, rcpts []string) (map[string]bool, error)
	// Add records e. Adding an entry that exists keeps the first one (its
	// Created and Source) and is not an error. A zero Created is set to now.
	Add(ctx context.Context, e Entry) error
	// Remove deletes one entry; removing an absent entry is not an error.
	Remove(ctx context.Context, tenant, list, recipient string) error
	// List calls fn for each entry of tenant (and list, when list != "").
	// An error from fn stops the walk and is returned.
	List(ctx context.Context, tenant, list string, fn func(Entry) error) error
	Close() error
}

// Batcher is implemented by stores that add many entries at once faster
// than one by one (imports). Open's store implements it for both stores.
type Batcher interface {
	// AddMany adds es as Add would, each normalised and checked first: an
	// invalid entry fails the call before anything is written. A failure
	// may leave some entries added (adding them again is harmless).
	AddMany(ctx context.Context, es []Entry) error
}

// Options configure Open. The zero value is usable.
type Options struct {
	// Logger receives store errors; nil logs nothing.
	Logger *zap.Logger
	// Registerer receives the suppression metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// DefaultRegion is the DynamoDB region when suppression.dynamodb.region
	// is empty (ses.region).
	DefaultRegion string
	// AWSConfig, when set, replaces the default AWS credential chain of
	// the DynamoDB store (tests; embedding programs).
	AWSConfig *aws.Config
	// Now is the clock (Created of new entries, cache expiry); nil is
	// time.Now.
	Now func() time.Time
}

// ErrInvalid marks an entry or argument the store refuses (empty tenant,
// list or recipient, a recipient without a domain).
var ErrInvalid = errors.New("suppression: invalid entry")

// Normalize returns recipient as the relay compares addresses: surrounding
// space and angle brackets removed, the domain lowercased and converted to
// ASCII (IDNA) with one trailing dot removed, the local part unchanged
// (RFC 5321 2.4: only the receiving host may fold its case). A recipient
// without a usable domain is returned with only the space and brackets
// removed, and is refused by Add.
func Normalize(recipient string) string {
	r := strings.TrimSpace(recipient)
	for len(r) >= 2 && r[0] == '<' && r[len(r)-1] == '>' {
		r = strings.TrimSpace(r[1 : len(r)-1])
	}
	at := strings.LastIndexByte(r, '@')
	if at <= 0 || at == len(r)-1 {
		return r
	}
	if d, ok := asciiDomain(r[at+1:]); ok {
		if len(d) == len(r)-at-1 && !hasUpper(d) {
			return r // already normal: no allocation
		}
		return r[:at+1] + strings.ToLower(d)
	}
	d, err := address.Domain(r[at+1:])
	if err != nil || strings.HasPrefix(d, "*.") {
		return r[:at+1] + strings.ToLower(r[at+1:])
	}
	return r[:at+1] + d
}

// Check returns e with its recipient normalised, or an error wrapping
// ErrInvalid saying what Add would refuse (for tools that validate a whole
// import before writing).
func Check(e Entry) (Entry, error) {
	err := check(&e)
	return e, err
}

// asciiDomain returns d without one trailing dot when d is a host name of
// ASCII letters, digits, hyphens and dots, for which address.Domain
// (IDNA) would only lowercase and trim: the common case, kept off idna's
// cost on the send path.
func asciiDomain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	if d == "" || d[0] == '.' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return "", false // an empty label: not a host name
	}
	for i := 0; i < len(d); i++ {
		switch c := d[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.':
		default:
			return "", false
		}
	}
	// Punycode labels go through idna, which validates them.
	if strings.Contains(d, "--") {
		return "", false
	}
	return d, true
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// check validates and normalises e for Add.
func check(e *Entry) error {
	e.Recipient = Normalize(e.Recipient)
	switch {
	case e.Tenant == "":
		return fmt.Errorf("%w: empty tenant", ErrInvalid)
	case e.List == "":
		return fmt.Errorf("%w: empty list (transactional mail is never suppressed by a list)", ErrInvalid)
	case hasControl(e.Tenant):
		return fmt.Errorf("%w: tenant %q has a control character", ErrInvalid, e.Tenant)
	case hasControl(e.List):
		return fmt.Errorf("%w: list %q has a control character", ErrInvalid, e.List)
	case !validRecipient(e.Recipient):
		return fmt.Errorf("%w: recipient %q is not an address", ErrInvalid, e.Recipient)
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func validRecipient(r string) bool {
	at := strings.LastIndexByte(r, '@')
	return at > 0 && at < len(r)-1 && !hasControl(r)
}

// Open opens the store c names, wrapped in the lookup cache and metrics.
// The store's errors name the config key at fault.
func Open(ctx context.Context, c config.Suppression, o Options) (Store, error) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var inner Store
	switch c.Store {
	case config.SuppressionEmbedded, "":
		s, err := OpenEmbedded(c.Dir, c.Timeout, now)
		if err != nil {
			return nil, err
		}
		inner = s
	case config.SuppressionDynamoDB:
		o.Now = now
		s, err := OpenDynamoDB(ctx, c.DynamoDB, o)
		if err != nil {
			return nil, err
		}
		inner = s
	default:
		return nil, fmt.Errorf("suppression.store: must be embedded or dynamodb, got %q", c.Store)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		inner.Close()
		return nil, err
	}
	return newCached(inner, c.CacheTTL, c.CacheEntries, c.Timeout, now, m, log), nil
}

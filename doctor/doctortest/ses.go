package doctortest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Identity is the body of GetEmailIdentity (GET
// /v2/email/identities/{EmailIdentity}), with the SES v2 JSON member names.
type Identity struct {
	IdentityType             string              `json:"IdentityType,omitempty"`
	FeedbackForwardingStatus bool                `json:"FeedbackForwardingStatus"`
	VerifiedForSendingStatus bool                `json:"VerifiedForSendingStatus"`
	VerificationStatus       string              `json:"VerificationStatus,omitempty"`
	DkimAttributes           *DkimAttributes     `json:"DkimAttributes,omitempty"`
	MailFromAttributes       *MailFromAttributes `json:"MailFromAttributes,omitempty"`
	ConfigurationSetName     string              `json:"ConfigurationSetName,omitempty"`
	Policies                 map[string]string   `json:"Policies,omitempty"`
}

// DkimAttributes is GetEmailIdentity's DkimAttributes.
type DkimAttributes struct {
	SigningEnabled          bool     `json:"SigningEnabled"`
	Status                  string   `json:"Status,omitempty"`
	Tokens                  []string `json:"Tokens,omitempty"`
	SigningAttributesOrigin string   `json:"SigningAttributesOrigin,omitempty"`
	CurrentSigningKeyLength string   `json:"CurrentSigningKeyLength,omitempty"`
	NextSigningKeyLength    string   `json:"NextSigningKeyLength,omitempty"`
}

// MailFromAttributes is GetEmailIdentity's MailFromAttributes.
type MailFromAttributes struct {
	MailFromDomain       string `json:"MailFromDomain"`
	MailFromDomainStatus string `json:"MailFromDomainStatus"`
	BehaviorOnMxFailure  string `json:"BehaviorOnMxFailure"`
}

// ConfigurationSet is the body of GetConfigurationSet (GET
// /v2/email/configuration-sets/{ConfigurationSetName}). EventDestinations
// is served separately, as GetConfigurationSetEventDestinations.
type ConfigurationSet struct {
	ConfigurationSetName string           `json:"ConfigurationSetName"`
	TrackingOptions      *TrackingOptions `json:"TrackingOptions,omitempty"`
	SendingOptions       *SendingOptions  `json:"SendingOptions,omitempty"`
	VdmOptions           *VdmOptions      `json:"VdmOptions,omitempty"`

	EventDestinations []EventDestination `json:"-"`
}

// TrackingOptions is a configuration set's custom redirect domain.
type TrackingOptions struct {
	CustomRedirectDomain string `json:"CustomRedirectDomain"`
	HttpsPolicy          string `json:"HttpsPolicy,omitempty"`
}

// SendingOptions says whether the configuration set may send.
type SendingOptions struct {
	SendingEnabled bool `json:"SendingEnabled"`
}

// VdmOptions holds the configuration set's Virtual Deliverability Manager
// settings.
type VdmOptions struct {
	DashboardOptions *DashboardOptions `json:"DashboardOptions,omitempty"`
}

// DashboardOptions.EngagementMetrics is ENABLED or DISABLED.
type DashboardOptions struct {
	EngagementMetrics string `json:"EngagementMetrics"`
}

// EventDestination is one entry of GetConfigurationSetEventDestinations.
type EventDestination struct {
	Name               string   `json:"Name"`
	Enabled            bool     `json:"Enabled"`
	MatchingEventTypes []string `json:"MatchingEventTypes"`
}

// Call is one request the stand-in received.
type Call struct {
	Region        string // from the SigV4 credential scope
	Method, Path  string
	Authorization string
}

// SES answers the SES v2 read calls doctor makes, per region. The region
// of a request is taken from its SigV4 credential scope, so one server can
// stand in for several regions.
type SES struct {
	*httptest.Server

	mu         sync.Mutex
	identities map[string]Identity         // region "/" name
	sets       map[string]ConfigurationSet // region "/" name
	failures   map[string]apiError         // region " " path
	calls      []Call
}

type apiError struct {
	status  int
	code    string
	message string
}

// NewSES starts a stand-in on 127.0.0.1; it stops when the test ends.
func NewSES(t testing.TB) *SES {
	s := &SES{identities: map[string]Identity{}, sets: map[string]ConfigurationSet{}, failures: map[string]apiError{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

// PutIdentity creates or replaces an identity in region.
func (s *SES) PutIdentity(region, name string, id Identity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.identities[region+"/"+name] = id
}

// DeleteIdentity removes an identity from region.
func (s *SES) DeleteIdentity(region, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.identities, region+"/"+name)
}

// PutConfigurationSet creates or replaces a configuration set in region.
func (s *SES) PutConfigurationSet(region string, cs ConfigurationSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sets[region+"/"+cs.ConfigurationSetName] = cs
}

// Fail makes requests for path in region ("" = every region) answer an
// SES error, e.g. 403 AccessDeniedException.
func (s *SES) Fail(region, path string, status int, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[region+" "+path] = apiError{status, code, message}
}

// Calls returns the requests received so far.
func (s *SES) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

var credentialScope = regexp.MustCompile(`Credential=[^/]+/\d{8}/([a-z0-9-]+)/ses/aws4_request`)

func (s *SES) handle(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	region := ""
	if m := credentialScope.FindStringSubmatch(auth); m != nil {
		region = m[1]
	}
	path := r.URL.EscapedPath()
	s.mu.Lock()
	s.calls = append(s.calls, Call{Region: region, Method: r.Method, Path: path, Authorization: auth})
	f, failed := s.failures[region+" "+path]
	if !failed {
		f, failed = s.failures[" "+path]
	}
	s.mu.Unlock()

	if region == "" {
		writeError(w, apiError{403, "IncompleteSignatureException", "missing SigV4 credential scope for service ses"})
		return
	}
	if failed {
		writeError(w, f)
		return
	}
	if r.Method != http.MethodGet {
		writeError(w, apiError{400, "BadRequestException", "the stand-in only answers GET"})
		return
	}
	rest, ok := strings.CutPrefix(path, "/v2/email/")
	if !ok {
		writeError(w, apiError{404, "NotFoundException", "unknown path"})
		return
	}
	switch {
	case strings.HasPrefix(rest, "identities/"):
		name := unescape(strings.TrimPrefix(rest, "identities/"))
		s.mu.Lock()
		id, ok := s.identities[region+"/"+name]
		s.mu.Unlock()
		if !ok {
			writeError(w, apiError{404, "NotFoundException", "Email identity <" + name + "> does not exist."})
			return
		}
		writeJSON(w, id)
	case strings.HasPrefix(rest, "configuration-sets/"):
		name, dest := strings.CutSuffix(strings.TrimPrefix(rest, "configuration-sets/"), "/event-destinations")
		name = unescape(name)
		s.mu.Lock()
		cs, ok := s.sets[region+"/"+name]
		s.mu.Unlock()
		if !ok {
			writeError(w, apiError{404, "NotFoundException", "Configuration set <" + name + "> does not exist."})
			return
		}
		if dest {
			ds := cs.EventDestinations
			if ds == nil {
				ds = []EventDestination{}
			}
			writeJSON(w, map[string]any{"EventDestinations": ds})
			return
		}
		writeJSON(w, cs)
	default:
		writeError(w, apiError{404, "NotFoundException", "unknown path"})
	}
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", "doctortest-request")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-RequestId", "doctortest-request")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{"message": e.message})
}

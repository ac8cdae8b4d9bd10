package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix is the prefix of environment variables that override keys:
// SESRELAY_SES_REGION overrides ses.region.
const EnvPrefix = "SESRELAY"

//go:embed dev.yaml
var devYAML []byte

// DevYAML returns the embedded development configuration (file sender,
// self-signed TLS on loopback, one demo tenant). examples/dev.yaml is a copy.
func DevYAML() []byte { return bytes.Clone(devYAML) }

// Defaults returns the configuration every file is decoded on top of.
func Defaults() Config {
	return Config{
		Server: Server{
			Hostname:            "localhost",
			MaxMessageBytes:     40 << 20,
			MaxRecipients:       50,
			MaxConnections:      1000,
			MaxConnectionsPerIP: 100,
			ReadTimeout:         5 * time.Minute,
			WriteTimeout:        time.Minute,
			DataTimeout:         10 * time.Minute,
			ShutdownTimeout:     30 * time.Second,
			BareNewlines:        "normalize",
			TLS:                 TLS{MinVersion: "1.2"},
		},
		Log:      Log{Level: "info", Format: "json"},
		Delivery: Delivery{Sender: SenderSES, FileDir: "./outbox", RetryMemoryTTL: 24 * time.Hour, RetryMemoryMax: 100000, Mode: ModeDirect},
		SES: SES{
			Region:         "us-east-1",
			Timeout:        60 * time.Second,
			MaxAttempts:    3,
			RetryAmbiguous: true,
			MaxSendRate:    "0",
			RateLimitWait:  2 * time.Second,
			MaxIdleConns:   64,
			Failover:       Failover{After: 3, ProbeEvery: 30 * time.Second},
		},
		Queue: DefaultQueue(),
		Auth: Auth{
			MaxFailuresPerConnection: 3,
			MaxFailures:              10,
			Lockout:                  5 * time.Minute,
			CacheTTL:                 5 * time.Minute,
			MaxConcurrentHashes:      4,
		},
	}
}

// Load reads, decodes, validates and loads the secrets of the
// configuration at path ("" means the embedded development default).
// The returned error lists every problem found, one per line, each naming
// the key path.
func Load(path string) (*Config, error) {
	var data []byte
	if path == "" {
		data = DevYAML()
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		data = b
	}
	cfg, err := Parse(data)
	if err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	cfg.Path = path
	return cfg, nil
}

// Parse decodes YAML data (plus SESRELAY_ environment overrides), applies
// defaults, validates, and loads the referenced secret files. Relative
// file paths are taken relative to the working directory.
func Parse(data []byte) (*Config, error) {
	cfg, err := decode(data)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func decode(data []byte) (*Config, error) {
	v := viper.NewWithOptions(viper.ExperimentalBindStruct())
	v.SetConfigType("yaml")
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("config: %w", unwrapYAML(err))
	}
	cfg := Defaults()
	err := v.UnmarshalExact(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
			intToStringHook,
		)
	})
	if err != nil {
		return nil, decodeErrors(err)
	}
	// viper lowercases every map key; SES tag names are case sensitive, so
	// take tenants[].tags keys from the YAML itself.
	if err := restoreTagCase(data, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// intToStringHook lets `max_send_rate: 14` decode into a string key that
// also accepts "auto".
func intToStringHook(from, to reflect.Type, data any) (any, error) {
	if to.Kind() != reflect.String {
		return data, nil
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int64, reflect.Float64, reflect.Float32, reflect.Int32:
		return fmt.Sprint(data), nil
	}
	return data, nil
}

func unwrapYAML(err error) error {
	var pe viper.ConfigParseError
	if errors.As(err, &pe) {
		return errors.New(strings.TrimPrefix(pe.Error(), "While parsing config: "))
	}
	return err
}

// decodeErrors turns mapstructure's error tree into one line per problem,
// each starting with the key path.
func decodeErrors(err error) error {
	var lines []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, c := range j.Unwrap() {
				walk(c)
			}
			return
		}
		var de *mapstructure.DecodeError
		if errors.As(e, &de) {
			msg := de.Unwrap().Error()
			if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
				for _, k := range strings.Split(keys, ", ") {
					lines = append(lines, joinPath(de.Name(), k)+": unknown key")
				}
				return
			}
			lines = append(lines, de.Name()+": "+describeDecode(de.Unwrap()))
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
			return
		}
		lines = append(lines, e.Error())
	}
	walk(err)
	sort.Strings(lines)
	return &Errors{List: lines}
}

func describeDecode(err error) string {
	var ut *mapstructure.UnconvertibleTypeError
	if errors.As(err, &ut) {
		return fmt.Sprintf("expected %s, got %v", kindName(ut.Expected.Type()), ut.Value)
	}
	var pe *mapstructure.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("expected %s, got %q", kindName(pe.Expected.Type()), fmt.Sprint(pe.Value))
	}
	s := err.Error()
	if strings.Contains(s, "time: ") {
		return "not a duration (use e.g. 30s, 5m, 1h): " + s
	}
	return s
}

func kindName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "a duration (e.g. 30s, 5m)"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "an integer"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Map, t.Kind() == reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

func restoreTagCase(data []byte, cfg *Config) error {
	var raw struct {
		Tenants []struct {
			Tags map[string]string `yaml:"tags"`
		} `yaml:"tenants"`
	}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		// The strict decode already accepted the document; a shape this
		// narrow view cannot read is left to Validate.
		return nil
	}
	for i := range cfg.Tenants {
		if i < len(raw.Tenants) && raw.Tenants[i].Tags != nil && len(raw.Tenants[i].Tags) == len(cfg.Tenants[i].Tags) {
			cfg.Tenants[i].Tags = raw.Tenants[i].Tags
		}
	}
	return nil
}

// Errors is every problem found in a configuration, one per line.
type Errors struct{ List []string }

func (e *Errors) Error() string {
	if len(e.List) == 1 {
		return e.List[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(e.List), strings.Join(e.List, "\n  "))
}

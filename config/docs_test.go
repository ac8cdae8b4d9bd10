package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// keyPaths lists every configuration key, as written in the docs
// ("tenants[].dkim[].key_file").
func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		path := prefix + tag
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft.String() != "time.Duration":
			out = append(out, keyPaths(ft, path+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, path)
			out = append(out, keyPaths(ft.Elem(), path+"[].")...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// TestEveryKeyDocumented: each key of Config appears in
// docs/configuration.md as `key.path`.
func TestEveryKeyDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keyPaths(reflect.TypeOf(Config{}), "") {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("key %s is not documented in docs/configuration.md", k)
		}
	}
}

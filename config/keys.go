package config

import (
	"reflect"
	"strings"
)

// RestartKeys are the keys a reload cannot change: what they configure is
// built once at start (the listening sockets, the admin listener, the
// logger, the sender, in-memory caches sized at start, the SES connection
// pool). A reload that changes one fails and names it; the configuration
// in force stays. An entry names the key and every key under it.
// docs/configuration.md lists them (TestRestartKeysDocumented); every
// other key takes effect for new sessions after a reload.
var RestartKeys = []string{
	"server.listeners",
	"admin",
	"log",
	"delivery.sender",
	"delivery.file_dir",
	"delivery.retry_memory_ttl",
	"delivery.retry_memory_max",
	"ses.max_idle_conns",
	"auth.cache_ttl",
	"auth.max_concurrent_hashes",
	"queue.dir",
	"queue.workers",
	"queue.sync",
	"unsubscribe_server",
	"suppression",
}

// NeedsRestart reports whether key (a path from KeyPaths) is one of
// RestartKeys or under one.
func NeedsRestart(key string) bool {
	for _, r := range RestartKeys {
		if key == r || strings.HasPrefix(key, r+".") || strings.HasPrefix(key, r+"[]") {
			return true
		}
	}
	return false
}

// KeyPaths lists every configuration key as the docs write it
// ("tenants[].dkim[].key_file"), in declaration order.
func KeyPaths() []string { return keyPathsOf(reflect.TypeOf(Config{}), "") }

func keyPathsOf(t reflect.Type, prefix string) []string {
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
			out = append(out, keyPathsOf(ft, path+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, path)
			out = append(out, keyPathsOf(ft.Elem(), path+"[].")...)
		default:
			out = append(out, path)
		}
	}
	return out
}

// Value returns the value of key in c (a path from KeyPaths without
// "[]": a key inside a list is compared as part of its list).
func (c *Config) Value(key string) (reflect.Value, bool) {
	v := reflect.ValueOf(c).Elem()
	for _, name := range strings.Split(key, ".") {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Tag.Get("mapstructure") == name {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
	}
	return v, true
}

// RestartChanges returns the keys of RestartKeys whose value differs
// between old and new, most specific first (the changed leaf, or the
// whole list for a key inside one).
func RestartChanges(old, new *Config) []string {
	var out []string
	for _, k := range KeyPaths() {
		if strings.Contains(k, "[]") || !NeedsRestart(k) {
			continue
		}
		a, ok1 := old.Value(k)
		b, ok2 := new.Value(k)
		if ok1 != ok2 || (ok1 && a.Kind() != reflect.Struct && !reflect.DeepEqual(a.Interface(), b.Interface())) {
			out = append(out, k)
		}
	}
	return out
}

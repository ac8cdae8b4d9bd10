package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestRestartKeysDocumented: docs/configuration.md lists exactly the keys
// of RestartKeys as the keys that need a restart.
func TestRestartKeysDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(doc), "Keys that need a restart:")
	if i < 0 {
		t.Fatal("docs/configuration.md has no \"Keys that need a restart:\" paragraph")
	}
	para := string(doc[i:])
	if j := strings.Index(para, "\n\n"); j >= 0 {
		para = para[:j]
	}
	var documented []string
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(para, -1) {
		documented = append(documented, m[1])
	}
	want := slices.Clone(RestartKeys)
	slices.Sort(want)
	slices.Sort(documented)
	if !slices.Equal(want, documented) {
		t.Fatalf("docs list %v, RestartKeys are %v", documented, want)
	}
}

func TestRestartChanges(t *testing.T) {
	a, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if ch := RestartChanges(a, b); len(ch) != 0 {
		t.Fatalf("same configuration: %v", ch)
	}
	b.Log.Level = "debug"
	b.Server.Listeners[0].AllowedNetworks = []string{"10.0.0.0/8"}
	b.Server.MaxRecipients = 7 // reloadable
	if ch := RestartChanges(a, b); !slices.Equal(ch, []string{"server.listeners", "log.level"}) {
		t.Fatalf("changes: %v", ch)
	}
}

package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sesrelay/sesrelay/"

// imports says which packages of the module each package may import
// directly (docs/architecture.md). A package not listed here (cmd/...,
// bench, test helpers) is not constrained.
var imports = map[string][]string{
	"address":   {},
	"config":    {"address"},
	"policy":    {"address", "config"},
	"headers":   {"address"},
	"queue":     {"address", "config", "headers"},
	"relay":     {"address", "config", "headers", "policy", "queue"},
	"relay/ses": {"config", "relay"},
	"doctor":    {"address", "config", "headers", "policy"},
}

// forbidden lists import path prefixes a package may not depend on, even
// indirectly.
var forbidden = map[string][]string{
	"address": {"github.com/aws/", "github.com/emersion/go-smtp", "go.uber.org/zap"},
	"config":  {"github.com/aws/", "github.com/emersion/go-smtp", "go.uber.org/zap"},
	"policy":  {"github.com/aws/", "github.com/emersion/go-smtp", "go.uber.org/zap"},
	"headers": {"github.com/aws/", "github.com/emersion/go-smtp", "go.uber.org/zap", "net/http"},
	// AWS knowledge lives in relay/ses, which relay does not import.
	"relay": {"github.com/aws/", module + "relay/ses"},
}

// TestArchitecture checks the import rules of docs/architecture.md with
// `go list -deps`.
func TestArchitecture(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}|{{join .Deps \",\"}}", module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(line, "|")
		if len(parts) != 3 {
			t.Fatalf("go list line %q", line)
		}
		pkg, ok := strings.CutPrefix(parts[0], module)
		if !ok {
			continue
		}
		seen[pkg] = true
		if allowed, ok := imports[pkg]; ok {
			for _, imp := range strings.Split(parts[1], ",") {
				if in, ok := strings.CutPrefix(imp, module); ok && !slices.Contains(allowed, in) {
					t.Errorf("%s imports %s; it may import only %v (docs/architecture.md)", pkg, in, allowed)
				}
			}
		}
		for _, dep := range strings.Split(parts[2], ",") {
			for _, f := range forbidden[pkg] {
				if dep == f || strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s, which it must not (docs/architecture.md)", pkg, dep)
				}
			}
		}
		if pkg != "cmd/sesrelay" {
			for _, imp := range strings.Split(parts[1], ",") {
				if strings.HasPrefix(imp, module+"cmd/") {
					t.Errorf("%s imports %s: nothing imports the binary", pkg, imp)
				}
			}
		}
	}
	for pkg := range imports {
		if !seen[pkg] {
			t.Errorf("package %s of the import rules does not exist", pkg)
		}
	}
}

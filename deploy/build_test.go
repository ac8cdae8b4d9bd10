package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/sesrelay/sesrelay/config"
)

// buildLine is the one command that builds the shipped binary. The
// Dockerfile must reach it only through deploy/build.sh.
const buildLine = `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o sesrelay ./cmd/sesrelay`

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dockerInstructions returns the Dockerfile's instructions with line
// continuations joined and comments dropped, e.g. "RUN go mod download".
func dockerInstructions(src string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	return out
}

func TestBuildScriptHoldsTheBuildCommand(t *testing.T) {
	script := readFile(t, "build.sh")
	var found int
	for _, line := range strings.Split(script, "\n") {
		if strings.TrimSpace(line) == buildLine {
			found++
		} else if strings.Contains(line, "go build") && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			t.Errorf("build.sh has another go build line: %q", line)
		}
	}
	if found != 1 {
		t.Errorf("build.sh must contain exactly once the line\n  %s\nfound it %d times", buildLine, found)
	}
	if !strings.HasPrefix(script, "#!/bin/sh\n") || !strings.Contains(script, "set -eu") {
		t.Error("build.sh must be a POSIX sh script that stops on errors (#!/bin/sh, set -eu): the build image may lack bash")
	}
	fi, err := os.Stat("build.sh")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&0o111 == 0 {
		t.Error("build.sh is not executable")
	}
}

func TestDockerfileRunsBuildScript(t *testing.T) {
	ins := dockerInstructions(readFile(t, "../Dockerfile"))
	var froms, runsScript []string
	var user, entry, cmd, health, expose string
	for _, in := range ins {
		verb, rest, _ := strings.Cut(in, " ")
		switch strings.ToUpper(verb) {
		case "FROM":
			froms = append(froms, rest)
		case "RUN":
			if strings.Contains(rest, "go build") {
				t.Errorf("the Dockerfile builds by itself (%q): it must run deploy/build.sh so it cannot drift from CI", in)
			}
			if strings.Contains(rest, "deploy/build.sh") {
				runsScript = append(runsScript, rest)
			}
		case "USER":
			user = rest
		case "ENTRYPOINT":
			entry = rest
		case "CMD":
			cmd = rest
		case "HEALTHCHECK":
			health = rest
		case "EXPOSE":
			expose = rest
		}
	}
	if len(runsScript) != 1 {
		t.Errorf("want exactly one RUN of deploy/build.sh, got %q", runsScript)
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:1.26 ") {
		t.Errorf("want a golang:1.26 build stage and a final stage, got FROM %q", froms)
	}
	if len(froms) > 0 && froms[len(froms)-1] != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage is %q, want the distroless static nonroot image", froms[len(froms)-1])
	}
	if user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", user)
	}
	if entry != `["/usr/local/bin/sesrelay"]` {
		t.Errorf("ENTRYPOINT %s", entry)
	}
	if cmd != `["serve", "--config", "/etc/sesrelay/config.yaml"]` {
		t.Errorf("CMD %s", cmd)
	}
	if !strings.Contains(health, `CMD ["/usr/local/bin/sesrelay", "healthcheck"]`) {
		t.Errorf("HEALTHCHECK %q must run sesrelay healthcheck", health)
	}
	if f := strings.Fields(expose); !slices.Equal(f, []string{"2587", "2465", "9090"}) {
		t.Errorf("EXPOSE %q, want 2587 2465 9090", expose)
	}
}

func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	for _, line := range strings.Split(readFile(t, "../.dockerignore"), "\n") {
		p := strings.TrimPrefix(strings.TrimSpace(line), "/")
		switch p {
		case "deploy", "deploy/build.sh", "deploy/*", "*.sh", "go.mod", "go.sum", "cmd", "*.go", "**/*.go", "*":
			t.Errorf(".dockerignore excludes %q, which the image build needs", p)
		}
	}
}

// TestMainVersionIsStampable checks that -X main.version has a target: the
// linker silently ignores -X for a missing variable or a constant.
func TestMainVersionIsStampable(t *testing.T) {
	fset := token.NewFileSet()
	files, _ := filepath.Glob("../cmd/sesrelay/*.go")
	var found, sawMain bool
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if file.Name.Name != "main" {
			continue
		}
		sawMain = true
		for _, d := range file.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if n.Name != "version" {
						continue
					}
					found = true
					if id, ok := vs.Type.(*ast.Ident); vs.Type != nil && (!ok || id.Name != "string") {
						t.Errorf("%s: main.version must be a string for -X", f)
					}
					if i < len(vs.Values) {
						if _, ok := vs.Values[i].(*ast.BasicLit); !ok {
							t.Errorf("%s: main.version must be uninitialized or a string literal for -X to set it", f)
						}
					}
				}
			}
		}
	}
	if !sawMain {
		t.Skip("cmd/sesrelay has no main package yet")
	}
	if !found {
		t.Error("cmd/sesrelay declares no package-level `var version string`: -X main.version=... would stamp nothing")
	}
}

func TestComposeConfigLoads(t *testing.T) {
	cfg, err := config.Load("compose-config.yaml")
	if err != nil {
		t.Fatalf("compose-config.yaml does not load: %v", err)
	}
	if cfg.Delivery.Sender != config.SenderSES || cfg.SES.Endpoint != "http://ses:8005" {
		t.Errorf("compose config must send through SES to the emulator service, got sender %q endpoint %q", cfg.Delivery.Sender, cfg.SES.Endpoint)
	}
	if !cfg.Server.TLS.SelfSigned {
		t.Error("compose config must need no certificate files (self_signed)")
	}
	if cfg.Admin.Address != "0.0.0.0:9090" {
		t.Errorf("admin.address %q: the image's HEALTHCHECK dials 127.0.0.1:9090", cfg.Admin.Address)
	}
}

func TestComposeFile(t *testing.T) {
	var c struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Build       map[string]any    `yaml:"build"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
			Ports       []string          `yaml:"ports"`
			ReadOnly    bool              `yaml:"read_only"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, "compose.yaml")), &c); err != nil {
		t.Fatal(err)
	}
	ses, ok := c.Services["ses"]
	if !ok {
		t.Fatal("no ses service")
	}
	if !slices.Contains(ses.Command, "aws-ses-v2-local@2.10.2") {
		t.Errorf("ses command %q must run the pinned aws-ses-v2-local@2.10.2", ses.Command)
	}
	relay, ok := c.Services["relay"]
	if !ok {
		t.Fatal("no relay service")
	}
	if relay.Build["context"] != ".." || relay.Build["dockerfile"] != "Dockerfile" {
		t.Errorf("relay must be built from the repository's Dockerfile, got %v", relay.Build)
	}
	if !slices.Contains(relay.Volumes, "./compose-config.yaml:/etc/sesrelay/config.yaml:ro") {
		t.Errorf("relay volumes %q must mount compose-config.yaml read-only at the image's config path", relay.Volumes)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		if relay.Environment[k] == "" {
			t.Errorf("relay environment lacks %s (the SDK needs credentials even for the emulator)", k)
		}
	}
	for _, p := range []string{"2587:2587", "2465:2465", "9090:9090"} {
		if !slices.ContainsFunc(relay.Ports, func(s string) bool { return strings.HasSuffix(s, p) }) {
			t.Errorf("relay ports %q lack %s", relay.Ports, p)
		}
	}
	if !relay.ReadOnly {
		t.Error("relay should run with a read-only root filesystem, as in the Helm chart")
	}
}

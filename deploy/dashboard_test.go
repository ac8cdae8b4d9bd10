package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/sesrelay/sesrelay/internal/metricnames"
)

const (
	dashboardPath      = "grafana/sesrelay.json"
	chartDashboardPath = "helm/sesrelay/dashboards/sesrelay.json"
)

// notOnDashboard are the exported metrics the dashboard deliberately does
// not show, each with the reason. Every other sesrelay_* metric must appear
// in at least one panel.
var notOnDashboard = map[string]string{}

// dashboardPanel is the part of a Grafana panel the test reads.
type dashboardPanel struct {
	Title   string           `json:"title"`
	Type    string           `json:"type"`
	Panels  []dashboardPanel `json:"panels"` // of a collapsed row
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

type dashboard struct {
	UID        string           `json:"uid"`
	Title      string           `json:"title"`
	Panels     []dashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"annotations"`
	} `json:"annotations"`
}

// grafanaVar matches Grafana's variables: $__rate_interval, $job, ${job}.
var (
	grafanaInterval = regexp.MustCompile(`\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}`)
	grafanaVar      = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	labelValues     = regexp.MustCompile(`^label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$`)
)

// promQL turns a Grafana expression into plain PromQL: interval variables
// become a duration, the others (always inside regexp matchers) ".*".
func promQL(expr string) string {
	return grafanaVar.ReplaceAllString(grafanaInterval.ReplaceAllString(expr, "5m"), ".*")
}

// metricsOf parses a PromQL expression and returns the metric names it
// selects, histogram series suffixes removed.
func metricsOf(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(promQL(expr))
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				name = m.Value
			}
		}
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			name = strings.TrimSuffix(name, suffix)
		}
		names = append(names, name)
		return nil
	})
	return names, nil
}

func readDashboard(t *testing.T) (dashboard, []byte) {
	t.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: not JSON: %v", dashboardPath, err)
	}
	return d, raw
}

// TestDashboard: every PromQL expression of the Grafana dashboard parses
// and names only metrics the relay exports, and every exported metric has
// a panel unless notOnDashboard says why not.
func TestDashboard(t *testing.T) {
	d, _ := readDashboard(t)
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: no uid, title or panels", dashboardPath)
	}
	exported, err := metricnames.All()
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	check := func(where, expr string) {
		names, err := metricsOf(expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, expr, err)
			return
		}
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range names {
			if !slices.Contains(exported, n) {
				t.Errorf("%s: %q uses %s, which the relay does not export", where, expr, n)
			}
			shown[n] = true
		}
	}
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				check("panel "+p.Title+" "+tg.RefID, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, a := range d.Annotations.List {
		check("annotation "+a.Name, a.Expr)
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		lv := labelValues.FindStringSubmatch(q)
		if lv == nil {
			t.Errorf("variable %s: %q is not label_values(SELECTOR, LABEL)", v.Name, q)
			continue
		}
		check("variable "+v.Name, lv[1])
	}
	var missing []string
	for _, n := range exported {
		_, skip := notOnDashboard[n]
		switch {
		case !shown[n] && !skip:
			missing = append(missing, n)
		case shown[n] && skip:
			t.Errorf("%s is on the dashboard and in notOnDashboard: drop it from the list", n)
		}
	}
	sort.Strings(missing)
	for _, n := range missing {
		t.Errorf("%s has no panel in %s (add one, or list it in notOnDashboard with the reason)", n, dashboardPath)
	}
	for n, why := range notOnDashboard {
		if !slices.Contains(exported, n) || why == "" {
			t.Errorf("notOnDashboard: %s is not exported or has no reason", n)
		}
	}
}

// TestDashboardQueryCheck: the checks of TestDashboard catch what they are
// for.
func TestDashboardQueryCheck(t *testing.T) {
	names, err := metricsOf(`histogram_quantile(0.99, sum by (le) (rate(sesrelay_pipeline_duration_seconds_bucket{job=~"$job", tenant=~"${tenant}"}[$__rate_interval]))) / on() {__name__="sesrelay_queue_bytes"}`)
	if err != nil || !slices.Equal(names, []string{"sesrelay_pipeline_duration_seconds", "sesrelay_queue_bytes"}) {
		t.Fatalf("names %v, err %v", names, err)
	}
	if _, err := metricsOf(`sum by (tenant (rate(sesrelay_messages_total[5m]))`); err == nil {
		t.Fatal("a broken expression parsed")
	}
}

// TestChartDashboard: the Helm chart ships the dashboard unchanged (Helm
// reads only files inside the chart, hence the copy).
func TestChartDashboard(t *testing.T) {
	_, raw := readDashboard(t)
	chart, err := os.ReadFile(chartDashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, chart) {
		t.Fatalf("%s differs from %s: cp deploy/%s deploy/%s", chartDashboardPath, dashboardPath, dashboardPath, chartDashboardPath)
	}
}

// TestRenderedDashboard: the chart renders the dashboard ConfigMap with the
// sidecar label only when grafanaDashboard.enabled, and its JSON is the
// dashboard's.
func TestRenderedDashboard(t *testing.T) {
	dir := os.Getenv(renderedDirEnv)
	if dir == "" {
		t.Skipf("%s is not set: run .ci/deploy-check.sh, which renders the Helm chart and runs this test", renderedDirEnv)
	}
	_, raw := readDashboard(t)
	for name, want := range map[string]bool{"default": false, "all-optional": true} {
		var found []object
		for _, o := range ofKind(readManifests(t, filepath.Join(dir, name+".yaml")), "ConfigMap") {
			if strings.HasSuffix(o.Name, "-dashboard") {
				found = append(found, o)
			}
		}
		if !want {
			if len(found) != 0 {
				t.Errorf("%s: the dashboard ConfigMap must be off by default", name)
			}
			continue
		}
		if len(found) != 1 {
			t.Fatalf("%s: %d dashboard ConfigMaps, want 1", name, len(found))
		}
		cm := found[0].Body
		if str(get(cm, "metadata", "labels", "grafana_dashboard")) != "1" {
			t.Errorf("%s: no grafana_dashboard: \"1\" label: %v", name, get(cm, "metadata", "labels"))
		}
		if got := str(get(cm, "data", "sesrelay.json")); got != strings.TrimSuffix(string(raw), "\n") {
			t.Errorf("%s: the ConfigMap's sesrelay.json is not %s", name, dashboardPath)
		}
	}
}

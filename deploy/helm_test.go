package deploy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// renderedDirEnv names the directory of `helm template` outputs, one
// manifest stream per *.yaml file. .ci/deploy-check.sh renders default.yaml
// (chart defaults) and all-optional.yaml (every optional resource on).
const renderedDirEnv = "SESRELAY_RENDERED_DIR"

type object struct {
	Kind, Name string
	Body       map[string]any
}

// get walks maps by string key and lists by int index; nil when absent.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func readManifests(t *testing.T, path string) []object {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []object
	dec := yaml.NewDecoder(f)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: not YAML: %v", path, err)
		}
		if m == nil {
			continue
		}
		objs = append(objs, object{Kind: str(m["kind"]), Name: str(get(m, "metadata", "name")), Body: m})
	}
	return objs
}

func ofKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// selects reports whether a label selector's matchLabels (or a Service's
// plain selector map) all appear in labels.
func selects(selector, labels any) bool {
	sel, ok := selector.(map[string]any)
	if !ok || len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if str(get(labels, k)) != str(v) {
			return false
		}
	}
	return true
}

func TestRenderedChart(t *testing.T) {
	dir := os.Getenv(renderedDirEnv)
	if dir == "" {
		t.Skipf("%s is not set: run .ci/deploy-check.sh, which renders the Helm chart and runs this test", renderedDirEnv)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("%s=%s holds no *.yaml manifests", renderedDirEnv, dir)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			objs := readManifests(t, f)
			checkChart(t, objs)
			switch name {
			case "default":
				for _, kind := range []string{"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy", "Ingress"} {
					if len(ofKind(objs, kind)) != 0 {
						t.Errorf("%s must be off by default", kind)
					}
				}
				if len(ofKind(objs, "PodDisruptionBudget")) != 1 {
					t.Error("the PodDisruptionBudget must be on by default")
				}
			case "suppression-embedded":
				if len(ofKind(objs, "PersistentVolumeClaim")) != 1 {
					t.Error("want the suppression PersistentVolumeClaim")
				}
			case "all-optional":
				for _, kind := range []string{"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy", "PodDisruptionBudget", "ServiceAccount", "Ingress"} {
					if len(ofKind(objs, kind)) != 1 {
						t.Errorf("want one %s with every option on, got %d", kind, len(ofKind(objs, kind)))
					}
				}
				checkAllOptional(t, objs)
			case "queue", "queue-autoscaled":
				checkQueueVolume(t, objs, name == "queue-autoscaled")
			default:
				if len(ofKind(objs, "PersistentVolumeClaim")) != 0 {
					t.Error("a PersistentVolumeClaim without queue.persistence")
				}
			}
			if !strings.HasPrefix(name, "queue") && len(ofKind(objs, "StatefulSet")) != 0 {
				t.Error("a StatefulSet without queue.persistence: the relay keeps no per-pod state")
			}
		})
	}
}

// pod is what the checks need from the workload.
type pod struct {
	template  map[string]any
	spec      map[string]any
	container map[string]any
	ports     map[string]int // container port name → number
}

// workloads are the kinds that run the relay pods: a Deployment, or a
// StatefulSet when the queue has a claim per replica.
var workloads = []string{"Deployment", "StatefulSet"}

// workload returns the one object that runs the relay pods.
func workload(t *testing.T, objs []object) object {
	t.Helper()
	var found []object
	for _, kind := range workloads {
		found = append(found, ofKind(objs, kind)...)
	}
	if len(found) != 1 {
		t.Fatalf("want one Deployment or StatefulSet, got %d", len(found))
	}
	return found[0]
}

func checkChart(t *testing.T, objs []object) {
	dep := workload(t, objs)
	p := pod{ports: map[string]int{}}
	p.template, _ = get(dep.Body, "spec", "template").(map[string]any)
	p.spec, _ = get(p.template, "spec").(map[string]any)
	if !selects(get(dep.Body, "spec", "selector", "matchLabels"), get(p.template, "metadata", "labels")) {
		t.Errorf("the %s's selector does not match its pod labels", dep.Kind)
	}
	for _, c := range list(p.spec["containers"]) {
		if str(get(c, "name")) == "sesrelay" {
			p.container, _ = c.(map[string]any)
		}
	}
	if p.container == nil {
		t.Fatal("no container named sesrelay")
	}
	for _, port := range list(p.container["ports"]) {
		n, _ := get(port, "containerPort").(int)
		p.ports[str(get(port, "name"))] = n
	}
	for name, want := range map[string]int{"smtp": 2587, "smtps": 2465, "admin": 9090} {
		if p.ports[name] != want {
			t.Errorf("container port %s = %d, want %d", name, p.ports[name], want)
		}
	}

	checkProbes(t, p)
	checkSecurity(t, p)
	cfg := checkConfigMount(t, objs, p)
	checkConfigMatchesPod(t, cfg, p)
	checkRollout(t, objs, dep, p, cfg)
	checkSuppression(t, objs, dep, p, cfg)
	checkServices(t, objs, p)
	checkUnsubscribe(t, objs, cfg, p)
	checkOptional(t, objs, dep, p)
}

func checkProbes(t *testing.T, p pod) {
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		hg := get(p.container, probe, "httpGet")
		if hg == nil {
			t.Errorf("%s is not an HTTP GET", probe)
			continue
		}
		if got := str(get(hg, "path")); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		port := get(hg, "port")
		if n, ok := port.(int); ok && n != p.ports["admin"] || !ok && str(port) != "admin" {
			t.Errorf("%s port %v, want the admin port", probe, port)
		}
	}
}

// boolAt reads a securityContext field from the container, falling back to
// the pod's as Kubernetes does.
func boolAt(p pod, field string) (bool, bool) {
	if v, ok := get(p.container, "securityContext", field).(bool); ok {
		return v, true
	}
	v, ok := get(p.spec, "securityContext", field).(bool)
	return v, ok
}

func checkSecurity(t *testing.T, p pod) {
	if v, _ := boolAt(p, "runAsNonRoot"); !v {
		t.Error("runAsNonRoot is not true")
	}
	uid := get(p.container, "securityContext", "runAsUser")
	if uid == nil {
		uid = get(p.spec, "securityContext", "runAsUser")
	}
	if uid != nil && uid != 65532 {
		t.Errorf("runAsUser %v, want the image's 65532", uid)
	}
	if v, _ := get(p.container, "securityContext", "readOnlyRootFilesystem").(bool); !v {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if v, ok := get(p.container, "securityContext", "allowPrivilegeEscalation").(bool); !ok || v {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if v, _ := get(p.container, "securityContext", "privileged").(bool); v {
		t.Error("the container is privileged")
	}
	drop := list(get(p.container, "securityContext", "capabilities", "drop"))
	if !slices.ContainsFunc(drop, func(v any) bool { return str(v) == "ALL" }) {
		t.Errorf("capabilities.drop %v lacks ALL", drop)
	}
	if add := list(get(p.container, "securityContext", "capabilities", "add")); len(add) > 0 {
		t.Errorf("capabilities added: %v", add)
	}
	sec := str(get(p.container, "securityContext", "seccompProfile", "type"))
	if sec == "" {
		sec = str(get(p.spec, "securityContext", "seccompProfile", "type"))
	}
	if sec != "RuntimeDefault" {
		t.Errorf("seccompProfile %q, want RuntimeDefault", sec)
	}
	if v, ok := p.spec["automountServiceAccountToken"].(bool); !ok || v {
		t.Error("the pod mounts a Kubernetes API token it never uses")
	}
	if v, ok := p.spec["enableServiceLinks"].(bool); !ok || v {
		t.Error("service links are on: their variables share the SESRELAY_ prefix of configuration overrides")
	}
	for _, m := range list(p.container["volumeMounts"]) {
		mp := str(get(m, "mountPath"))
		if strings.HasPrefix(mp, "/etc/sesrelay") {
			if v, _ := get(m, "readOnly").(bool); !v {
				t.Errorf("%s is mounted writable", mp)
			}
		}
	}
	for _, v := range list(p.spec["volumes"]) {
		if mode, ok := get(v, "secret", "defaultMode").(int); ok && mode&0o037 != 0 {
			t.Errorf("secret volume %s has mode %o: group write or any access for others", str(get(v, "name")), mode)
		}
	}
}

// checkConfigMount follows /etc/sesrelay/config.yaml to its ConfigMap and
// returns the configuration file it holds, parsed.
func checkConfigMount(t *testing.T, objs []object, p pod) map[string]any {
	args := list(p.container["args"])
	if i := slices.IndexFunc(args, func(v any) bool { return str(v) == "--config" }); i < 0 || i+1 >= len(args) || str(args[i+1]) != "/etc/sesrelay/config.yaml" || str(args[0]) != "serve" {
		t.Errorf("args %v, want serve --config /etc/sesrelay/config.yaml", args)
	}
	var mount map[string]any
	for _, m := range list(p.container["volumeMounts"]) {
		if str(get(m, "mountPath")) == "/etc/sesrelay/config.yaml" {
			mount, _ = m.(map[string]any)
		}
	}
	if mount == nil {
		t.Fatal("nothing is mounted at /etc/sesrelay/config.yaml")
	}
	var vol any
	for _, v := range list(p.spec["volumes"]) {
		if str(get(v, "name")) == str(mount["name"]) {
			vol = v
		}
	}
	cmName := str(get(vol, "configMap", "name"))
	if cmName == "" {
		t.Fatalf("volume %q mounted at /etc/sesrelay/config.yaml is not a ConfigMap", mount["name"])
	}
	key := str(mount["subPath"])
	if key == "" {
		t.Fatal("the config mount has no subPath: /etc/sesrelay/config.yaml would be a directory")
	}
	for _, cm := range ofKind(objs, "ConfigMap") {
		if cm.Name != cmName {
			continue
		}
		text := str(get(cm.Body, "data", key))
		if text == "" {
			t.Fatalf("ConfigMap %s has no key %q", cmName, key)
		}
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
			t.Fatalf("ConfigMap %s key %s is not YAML: %v", cmName, key, err)
		}
		return cfg
	}
	t.Fatalf("the config volume names ConfigMap %q, which the chart does not render", cmName)
	return nil
}

func portOf(t *testing.T, what, addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s %q: %v", what, addr, err)
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// checkConfigMatchesPod: the probes and Services point at container ports;
// the relay must listen on exactly those.
func checkConfigMatchesPod(t *testing.T, cfg map[string]any, p pod) {
	if got := portOf(t, "admin.address", str(get(cfg, "admin", "address"))); got != p.ports["admin"] {
		t.Errorf("admin.address listens on %d, the probes use %d", got, p.ports["admin"])
	}
	listen := map[int]bool{}
	for i, l := range list(get(cfg, "server", "listeners")) {
		listen[portOf(t, fmt.Sprintf("server.listeners[%d].address", i), str(get(l, "address")))] = true
	}
	for _, name := range []string{"smtp", "smtps"} {
		if !listen[p.ports[name]] {
			t.Errorf("no server.listeners entry on container port %s (%d)", name, p.ports[name])
		}
	}
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func checkRollout(t *testing.T, objs []object, dep object, p pod, cfg map[string]any) {
	if sum := str(get(p.template, "metadata", "annotations", "checksum/config")); !sha256Hex.MatchString(sum) {
		t.Errorf("pod annotation checksum/config = %q, want a sha256: configuration changes would not roll out", sum)
	}
	shutdown := 30 * time.Second // the relay's default
	if s := str(get(cfg, "server", "shutdown_timeout")); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("server.shutdown_timeout %q: %v", s, err)
		}
		shutdown = d
	}
	preStop, _ := get(p.container, "lifecycle", "preStop", "sleep", "seconds").(int)
	grace, ok := p.spec["terminationGracePeriodSeconds"].(int)
	if !ok {
		grace = 30
	}
	if time.Duration(grace)*time.Second <= shutdown+time.Duration(preStop)*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d does not exceed preStop sleep %ds + shutdown_timeout %v", grace, preStop, shutdown)
	}

	var replicasEnv string
	found := false
	for _, e := range list(p.container["env"]) {
		if str(get(e, "name")) == "SESRELAY_SES_REPLICAS" {
			replicasEnv, found = str(get(e, "value")), true
		}
	}
	n, err := strconv.Atoi(replicasEnv)
	if !found || err != nil || n < 1 {
		t.Fatalf("SESRELAY_SES_REPLICAS = %q (set %v): ses.max_send_rate auto needs the replica count", replicasEnv, found)
	}
	// Dividing the account rate by more replicas than run is safe (other
	// clusters may share the account); by fewer, the replicas together
	// exceed the SES rate and get throttled.
	if hpas := ofKind(objs, "HorizontalPodAutoscaler"); len(hpas) > 0 {
		if max, _ := get(hpas[0].Body, "spec", "maxReplicas").(int); n < max {
			t.Errorf("SESRELAY_SES_REPLICAS %d with an autoscaler up to %d: the replicas together could exceed the SES rate", n, max)
		}
		if get(dep.Body, "spec", "replicas") != nil {
			t.Errorf("the %s sets replicas although an autoscaler owns them", dep.Kind)
		}
	} else if r, _ := get(dep.Body, "spec", "replicas").(int); n < r {
		t.Errorf("SESRELAY_SES_REPLICAS %d below the %s's %d replicas: together they would exceed the SES rate", n, dep.Kind, r)
	}
	if dep.Kind == "StatefulSet" {
		// A StatefulSet replaces a pod after the old one stopped (its claim
		// is ReadWriteOnce); OnDelete would never roll out a new config.
		if ty := str(get(dep.Body, "spec", "updateStrategy", "type")); ty != "" && ty != "RollingUpdate" {
			t.Errorf("StatefulSet updateStrategy %q: configuration changes would not roll out", ty)
		}
	} else if str(get(dep.Body, "spec", "strategy", "type")) == "Recreate" {
		// Only a one-pod volume justifies stopping the old pod first: the
		// embedded suppression store (checkSuppression).
		if !embeddedSuppression(cfg) {
			t.Error("the Recreate strategy without the embedded suppression store: every rollout drops all replicas")
		}
	} else if get(dep.Body, "spec", "strategy", "rollingUpdate", "maxUnavailable") != 0 {
		t.Error("a rolling update may drop below the desired replicas (maxUnavailable != 0)")
	}
}

// embeddedSuppression reports whether the configuration keeps suppressions
// in a file (store embedded, its default, with a dir).
func embeddedSuppression(cfg map[string]any) bool {
	store := str(get(cfg, "suppression", "store"))
	return (store == "" || store == "embedded") && str(get(cfg, "suppression", "dir")) != ""
}

// checkSuppression: the embedded suppression store runs as one replica, on
// a persistent volume mounted at suppression.dir that outlives the release.
func checkSuppression(t *testing.T, objs []object, dep object, p pod, cfg map[string]any) {
	if !embeddedSuppression(cfg) {
		return
	}
	if r, _ := get(dep.Body, "spec", "replicas").(int); r != 1 || len(ofKind(objs, "HorizontalPodAutoscaler")) != 0 {
		t.Errorf("embedded suppression store with %d replicas (autoscalers: %d): an unsubscribe would hold on one replica only", r, len(ofKind(objs, "HorizontalPodAutoscaler")))
	}
	// A StatefulSet always stops a pod before starting its successor.
	if ty := str(get(dep.Body, "spec", "strategy", "type")); dep.Kind == "Deployment" && ty != "Recreate" {
		t.Errorf("strategy %q with the embedded store: the new pod would wait for the old one's file lock", ty)
	}
	dir := str(get(cfg, "suppression", "dir"))
	var volume string
	for _, m := range list(p.container["volumeMounts"]) {
		if str(get(m, "mountPath")) == dir {
			volume = str(get(m, "name"))
		}
	}
	if volume == "" {
		t.Fatalf("nothing is mounted at suppression.dir %s", dir)
	}
	var claim string
	for _, v := range list(p.spec["volumes"]) {
		if str(get(v, "name")) == volume {
			claim = str(get(v, "persistentVolumeClaim", "claimName"))
		}
	}
	if claim == "" {
		t.Fatalf("volume %s at suppression.dir is not a PersistentVolumeClaim: unsubscribes would be lost with the pod", volume)
	}
	for _, pvc := range ofKind(objs, "PersistentVolumeClaim") {
		if pvc.Name == claim && str(get(pvc.Body, "metadata", "annotations", "helm.sh/resource-policy")) != "keep" {
			t.Errorf("PersistentVolumeClaim %s is deleted with the release: the unsubscribes go with it", claim)
		}
	}
}

func checkServices(t *testing.T, objs []object, p pod) {
	podLabels := get(p.template, "metadata", "labels")
	var smtp, admin, unsub *object
	for i, s := range ofKind(objs, "Service") {
		if !selects(get(s.Body, "spec", "selector"), podLabels) {
			t.Errorf("Service %s does not select the relay pods", s.Name)
		}
		switch {
		case strings.HasSuffix(s.Name, "-admin"):
			admin = &ofKind(objs, "Service")[i]
		case strings.HasSuffix(s.Name, "-unsub"):
			unsub = &ofKind(objs, "Service")[i]
		default:
			smtp = &ofKind(objs, "Service")[i]
		}
	}
	if smtp == nil || admin == nil {
		t.Fatal("want an SMTP Service and an -admin Service")
	}
	type port struct {
		port   int
		target string
	}
	ports := func(s *object) map[string]port {
		out := map[string]port{}
		for _, sp := range list(get(s.Body, "spec", "ports")) {
			if pr := str(get(sp, "protocol")); pr != "" && pr != "TCP" {
				t.Errorf("Service %s port %s protocol %s", s.Name, get(sp, "name"), pr)
			}
			n, _ := get(sp, "port").(int)
			out[str(get(sp, "name"))] = port{n, str(get(sp, "targetPort"))}
		}
		return out
	}
	got := ports(smtp)
	want := map[string]port{"submission": {587, "smtp"}, "submissions": {465, "smtps"}}
	if len(got) != len(want) {
		t.Errorf("SMTP Service ports %v, want exactly %v (metrics stay off the load balancer)", got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("SMTP Service port %s = %+v, want %+v", name, got[name], w)
		}
		if p.ports[w.target] == 0 {
			t.Errorf("SMTP Service targets %q, which the container does not name", w.target)
		}
	}
	if a := ports(admin)["admin"]; a.target != "admin" || a.port == 0 {
		t.Errorf("admin Service port %+v, want one targeting the container's admin port", a)
	}
	if ty := str(get(admin.Body, "spec", "type")); ty != "" && ty != "ClusterIP" {
		t.Errorf("admin Service type %s: metrics and health must stay inside the cluster", ty)
	}
	// The unsubscribe endpoint: a Service of its own exactly when the relay
	// listens for it, with the one port only.
	switch {
	case p.ports["unsubscribe"] == 0 && unsub != nil:
		t.Errorf("Service %s without an unsubscribe container port", unsub.Name)
	case p.ports["unsubscribe"] != 0 && unsub == nil:
		t.Error("the unsubscribe endpoint is on but has no -unsub Service")
	case unsub != nil:
		got := ports(unsub)
		if u := got["unsubscribe"]; len(got) != 1 || u.target != "unsubscribe" || u.port == 0 {
			t.Errorf("unsubscribe Service ports %v, want only one targeting the container's unsubscribe port", got)
		}
	}
}

// checkUnsubscribe: the container port of the unsubscribe endpoint is the
// port config.unsubscribe_server.address listens on, and is named only when
// the endpoint is on; an Ingress routes /u/ to the -unsub Service.
func checkUnsubscribe(t *testing.T, objs []object, cfg map[string]any, p pod) {
	addr := str(get(cfg, "unsubscribe_server", "address"))
	switch {
	case addr == "" && p.ports["unsubscribe"] != 0:
		t.Error("an unsubscribe container port without unsubscribe_server.address")
	case addr != "":
		if got := portOf(t, "unsubscribe_server.address", addr); got == 0 || got != p.ports["unsubscribe"] {
			t.Errorf("unsubscribe_server.address listens on %d, the container port unsubscribe is %d", got, p.ports["unsubscribe"])
		}
	}
	for _, ing := range ofKind(objs, "Ingress") {
		rules := list(get(ing.Body, "spec", "rules"))
		if len(rules) == 0 {
			t.Errorf("Ingress %s has no rules", ing.Name)
		}
		for _, r := range rules {
			for _, path := range list(get(r, "http", "paths")) {
				be := get(path, "backend", "service")
				if str(get(path, "path")) != "/u/" || str(get(path, "pathType")) != "Prefix" {
					t.Errorf("Ingress %s path %v %v, want Prefix /u/ (the one-click links only)", ing.Name, get(path, "pathType"), get(path, "path"))
				}
				if !strings.HasSuffix(str(get(be, "name")), "-unsub") || str(get(be, "port", "name")) != "unsubscribe" {
					t.Errorf("Ingress %s routes to %v, want the -unsub Service's unsubscribe port", ing.Name, be)
				}
			}
		}
	}
}

// checkOptional checks whichever optional resources are rendered.
func checkOptional(t *testing.T, objs []object, dep object, p pod) {
	podLabels := get(p.template, "metadata", "labels")
	for _, pdb := range ofKind(objs, "PodDisruptionBudget") {
		if !selects(get(pdb.Body, "spec", "selector", "matchLabels"), podLabels) {
			t.Error("the PodDisruptionBudget does not select the relay pods")
		}
	}
	for _, hpa := range ofKind(objs, "HorizontalPodAutoscaler") {
		if ref := get(hpa.Body, "spec", "scaleTargetRef"); str(get(ref, "kind")) != dep.Kind || str(get(ref, "name")) != dep.Name {
			t.Errorf("the autoscaler targets %v, not %s %s", ref, dep.Kind, dep.Name)
		}
		if get(p.container, "resources", "requests", "cpu") == nil {
			t.Error("CPU autoscaling without a CPU request cannot compute utilization")
		}
	}
	for _, sm := range ofKind(objs, "ServiceMonitor") {
		ep := get(sm.Body, "spec", "endpoints", 0)
		if str(get(ep, "port")) != "admin" || str(get(ep, "path")) != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %v, want port admin path /metrics", ep)
		}
		var admin any
		for _, s := range ofKind(objs, "Service") {
			if strings.HasSuffix(s.Name, "-admin") {
				admin = get(s.Body, "metadata", "labels")
			}
		}
		if !selects(get(sm.Body, "spec", "selector", "matchLabels"), admin) {
			t.Error("the ServiceMonitor does not select the admin Service")
		}
	}
	for _, np := range ofKind(objs, "NetworkPolicy") {
		if !selects(get(np.Body, "spec", "podSelector", "matchLabels"), podLabels) {
			t.Error("the NetworkPolicy does not select the relay pods")
		}
		in := map[string]bool{}
		for _, rule := range list(get(np.Body, "spec", "ingress")) {
			for _, pt := range list(get(rule, "ports")) {
				in[str(get(pt, "port"))] = true
			}
		}
		for _, name := range []string{"smtp", "smtps", "admin"} {
			if !in[name] {
				t.Errorf("the NetworkPolicy admits nothing on port %s", name)
			}
		}
		if on := p.ports["unsubscribe"] != 0; in["unsubscribe"] != on {
			t.Errorf("the NetworkPolicy admits the unsubscribe port: %v, the endpoint is on: %v", in["unsubscribe"], on)
		}
		out := map[string]bool{}
		for _, rule := range list(get(np.Body, "spec", "egress")) {
			for _, pt := range list(get(rule, "ports")) {
				out[str(get(pt, "port"))+"/"+str(get(pt, "protocol"))] = true
			}
		}
		for _, need := range []string{"53/UDP", "53/TCP", "443/TCP"} {
			if !out[need] {
				t.Errorf("the NetworkPolicy lets no egress out on %s (DNS and the SES API)", need)
			}
		}
	}
}

func checkAllOptional(t *testing.T, objs []object) {
	sa := ofKind(objs, "ServiceAccount")
	if len(sa) == 1 && !strings.HasPrefix(str(get(sa[0].Body, "metadata", "annotations", "eks.amazonaws.com/role-arn")), "arn:aws:iam::") {
		t.Error("the ServiceAccount lacks the IRSA annotation eks.amazonaws.com/role-arn")
	}
	var lb *object
	for i, s := range ofKind(objs, "Service") {
		if str(get(s.Body, "spec", "type")) == "LoadBalancer" {
			lb = &ofKind(objs, "Service")[i]
		}
	}
	if lb == nil {
		t.Fatal("no LoadBalancer Service")
	}
	if got := str(get(lb.Body, "spec", "externalTrafficPolicy")); got != "Local" {
		t.Errorf("externalTrafficPolicy %q, want Local", got)
	}
	// The PROXY protocol is on at the load balancer, so every listener
	// must read the header, and trust only the VPC: with client IP
	// preservation on, the peer would be the (untrusted) client.
	if ann := str(get(lb.Body, "metadata", "annotations", "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol")); ann != "*" {
		t.Errorf("aws-load-balancer-proxy-protocol annotation %q, want \"*\" (service.proxyProtocol)", ann)
	}
	if tg := str(get(lb.Body, "metadata", "annotations", "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes")); strings.Contains(tg, "preserve_client_ip.enabled=true") {
		t.Error("client IP preservation is on with the PROXY protocol: the relay would see clients, not the load balancer, as peers")
	}
	var cfg map[string]any
	for _, cm := range ofKind(objs, "ConfigMap") {
		if raw := str(get(cm.Body, "data", "config.yaml")); raw != "" {
			if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	listeners := list(get(cfg, "server", "listeners"))
	if len(listeners) == 0 {
		t.Fatal("no listeners in the rendered configuration")
	}
	for i, l := range listeners {
		if pp := str(get(l, "proxy_protocol")); pp != "required" || len(list(get(l, "proxy_protocol_trusted"))) == 0 {
			t.Errorf("listener %d: proxy_protocol %q with trusted %v, want required with the VPC range", i, pp, get(l, "proxy_protocol_trusted"))
		}
	}
	dep := workload(t, objs)
	spec := get(dep.Body, "spec", "template", "spec")
	mounts := map[string]bool{}
	for _, m := range list(get(spec, "containers", 0, "volumeMounts")) {
		mounts[str(get(m, "mountPath"))] = true
	}
	for _, mp := range []string{"/etc/sesrelay/tls", "/etc/sesrelay/dkim/sesrelay-dkim-shop", "/etc/sesrelay/unsubscribe/sesrelay-unsub-shop", "/etc/sesrelay/passwords/sesrelay-passwords"} {
		if !mounts[mp] {
			t.Errorf("no Secret mounted at %s", mp)
		}
	}
}

// checkQueueVolume: with queue.persistence the relay runs as a StatefulSet
// and the queue directory of the configuration is each replica's own
// PersistentVolumeClaim from the claim template (never an emptyDir, never a
// volume shared by replicas), retained when its pod is scaled away or the
// StatefulSet deleted.
func checkQueueVolume(t *testing.T, objs []object, autoscaled bool) {
	sts := workload(t, objs)
	if sts.Kind != "StatefulSet" {
		t.Fatalf("the queue on a volume runs as a %s, want a StatefulSet (one claim per replica)", sts.Kind)
	}
	if len(ofKind(objs, "PersistentVolumeClaim")) != 0 {
		t.Error("a standalone PersistentVolumeClaim next to the StatefulSet's claim template")
	}
	if autoscaled {
		if len(ofKind(objs, "HorizontalPodAutoscaler")) != 1 {
			t.Error("autoscaling.enabled with the queue renders no HorizontalPodAutoscaler")
		}
	} else if r, _ := get(sts.Body, "spec", "replicas").(int); r != 2 {
		t.Errorf("%d replicas: ci/queue-values.yaml asks for 2 (the queue no longer limits the replica count)", r)
	}
	for _, when := range []string{"whenDeleted", "whenScaled"} {
		if v := str(get(sts.Body, "spec", "persistentVolumeClaimRetentionPolicy", when)); v != "Retain" {
			t.Errorf("persistentVolumeClaimRetentionPolicy.%s = %q, want Retain: queued mail would be deleted with the pod", when, v)
		}
	}
	if p := str(get(sts.Body, "spec", "podManagementPolicy")); p != "Parallel" {
		t.Errorf("podManagementPolicy %q, want Parallel: one stuck pod would hold back the others", p)
	}
	svc := str(get(sts.Body, "spec", "serviceName"))
	if !slices.ContainsFunc(ofKind(objs, "Service"), func(o object) bool { return o.Name == svc }) {
		t.Errorf("serviceName %q names no rendered Service", svc)
	}
	var cfg map[string]any
	for _, cm := range ofKind(objs, "ConfigMap") {
		if err := yaml.Unmarshal([]byte(str(get(cm.Body, "data", "config.yaml"))), &cfg); err != nil {
			t.Fatal(err)
		}
	}
	dir := str(get(cfg, "queue", "dir"))
	if dir == "" {
		t.Fatal("config.yaml has no queue.dir")
	}
	spec := get(sts.Body, "spec", "template", "spec")
	vol := ""
	for _, c := range list(get(spec, "containers")) {
		for _, m := range list(get(c, "volumeMounts")) {
			if str(get(m, "mountPath")) == dir {
				vol = str(get(m, "name"))
			}
		}
	}
	if vol == "" {
		t.Fatalf("nothing is mounted at queue.dir %s", dir)
	}
	for _, v := range list(get(spec, "volumes")) {
		if str(get(v, "name")) == vol {
			t.Errorf("queue.dir is pod volume %s (%v), want the claim template %s: one volume per replica", vol, v, vol)
		}
	}
	var claim any
	for _, c := range list(get(sts.Body, "spec", "volumeClaimTemplates")) {
		if str(get(c, "metadata", "name")) == vol {
			claim = c
		}
	}
	if claim == nil {
		t.Fatalf("no volumeClaimTemplate %s for the mount at queue.dir %s", vol, dir)
	}
	if m := list(get(claim, "spec", "accessModes")); len(m) != 1 || str(m[0]) != "ReadWriteOnce" {
		t.Errorf("claim template access modes %v, want [ReadWriteOnce]", m)
	}
	if size := str(get(claim, "spec", "resources", "requests", "storage")); size != "20Gi" {
		t.Errorf("claim template requests %q, want queue.persistence.size 20Gi", size)
	}
	if sc := str(get(claim, "spec", "storageClassName")); sc != "gp3" {
		t.Errorf("claim template storage class %q, want queue.persistence.storageClass gp3", sc)
	}
	// The claim template cannot change after creation: a label that
	// changes with the chart version would make every upgrade fail.
	if l := get(claim, "metadata", "labels", "helm.sh/chart"); l != nil {
		t.Errorf("claim template label helm.sh/chart %v: StatefulSet claim templates are immutable, upgrades would fail", l)
	}
}

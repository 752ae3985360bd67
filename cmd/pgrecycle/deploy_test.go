package main

// Checks of deploy/: the Kubernetes manifests and the systemd unit. YAML is
// checked line by line (the module has no YAML dependency, and the
// manifests keep to block style), then, where the tools exist, by PyYAML,
// kubectl and systemd-analyze.

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/proxy/auth"
)

// deployDir is deploy/ at the repository root.
var deployDir = filepath.Join("..", "..", "deploy")

// manifestDoc is one YAML document of a manifest file.
type manifestDoc struct {
	file  string
	line  int // first line, 1-based
	lines []string
}

func (d manifestDoc) String() string { return d.file + ":" + strconv.Itoa(d.line) }

// readManifests splits every deploy/*.yaml file into documents.
func readManifests(t *testing.T) []manifestDoc {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", deployDir)
	}
	var docs []manifestDoc
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cur := manifestDoc{file: f, line: 1}
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		for n := 1; sc.Scan(); n++ {
			l := sc.Text()
			if l == "---" || strings.HasPrefix(l, "--- ") {
				docs = append(docs, cur)
				cur = manifestDoc{file: f, line: n + 1}
				continue
			}
			cur.lines = append(cur.lines, l)
		}
		docs = append(docs, cur)
	}
	// Drop documents made only of comments and blank lines.
	var out []manifestDoc
	for _, d := range docs {
		if slices.ContainsFunc(d.lines, isYAMLContent) {
			out = append(out, d)
		}
	}
	return out
}

func isYAMLContent(l string) bool {
	s := strings.TrimSpace(l)
	return s != "" && !strings.HasPrefix(s, "#")
}

func indentOf(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }

var yamlKeyLine = regexp.MustCompile(`^( *)(- )?([A-Za-z0-9_.\-/]+):( +(.*))?$`)

// field returns the scalar value of a key at a path of block mappings
// ("metadata", "name"), or ok false.
func (d manifestDoc) field(path ...string) (string, bool) {
	depth, want := 0, -1 // want: indentation of the mapping being searched
	for i := 0; i < len(d.lines); i++ {
		l := d.lines[i]
		if !isYAMLContent(l) {
			continue
		}
		ind := indentOf(l)
		if want >= 0 && ind < want {
			return "", false // left the parent mapping
		}
		m := yamlKeyLine.FindStringSubmatch(l)
		if m == nil || m[2] != "" || (depth == 0 && ind != 0) || (depth > 0 && ind != want) {
			continue
		}
		if m[3] != path[depth] {
			continue
		}
		if depth == len(path)-1 {
			return strings.Trim(strings.TrimSpace(m[5]), `"'`), true
		}
		// Descend: the child mapping is the next content line's indentation.
		depth++
		want = -1
		for j := i + 1; j < len(d.lines); j++ {
			if isYAMLContent(d.lines[j]) {
				want = indentOf(d.lines[j])
				break
			}
		}
		if want <= ind {
			return "", false
		}
	}
	return "", false
}

// blockScalar returns the text of a `key: |` block scalar found under a
// top-level mapping (data, stringData), dedented.
func (d manifestDoc) blockScalar(parent, key string) (string, bool) {
	in := false
	for i, l := range d.lines {
		if isYAMLContent(l) && indentOf(l) == 0 {
			in = strings.HasPrefix(l, parent+":")
			continue
		}
		if !in || strings.TrimSpace(l) != key+": |" {
			continue
		}
		keyIndent := indentOf(l)
		var body []string
		blockIndent := -1
		for _, b := range d.lines[i+1:] {
			if strings.TrimSpace(b) == "" {
				body = append(body, "")
				continue
			}
			if indentOf(b) <= keyIndent {
				break
			}
			if blockIndent < 0 {
				blockIndent = indentOf(b)
			}
			if indentOf(b) < blockIndent {
				return "", false
			}
			body = append(body, b[blockIndent:])
		}
		return strings.TrimRight(strings.Join(body, "\n"), "\n") + "\n", true
	}
	return "", false
}

// text is the document without comments, for contains-checks.
func (d manifestDoc) text() string {
	var b strings.Builder
	for _, l := range d.lines {
		if isYAMLContent(l) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestDeployManifests(t *testing.T) {
	docs := readManifests(t)
	kinds := map[string]int{}
	configs := map[string]*config.Config{} // ConfigMap name → its pgrecycle.toml
	for _, d := range docs {
		for i, l := range d.lines {
			if strings.Contains(l, "\t") {
				t.Errorf("%s+%d: tab in YAML", d, i)
			}
			if isYAMLContent(l) && indentOf(l)%2 != 0 {
				t.Errorf("%s+%d: odd indentation", d, i)
			}
		}
		kind, okKind := d.field("kind")
		api, okAPI := d.field("apiVersion")
		name, okName := d.field("metadata", "name")
		if !okKind || kind == "" || !okAPI || api == "" || !okName || name == "" {
			t.Errorf("%s: want apiVersion, kind and metadata.name; got %q %q %q", d, api, kind, name)
			continue
		}
		kinds[kind]++
		switch kind {
		case "ConfigMap":
			toml, ok := d.blockScalar("data", "pgrecycle.toml")
			if !ok {
				t.Errorf("%s: ConfigMap %s has no data.pgrecycle.toml", d, name)
				continue
			}
			cfg, err := config.Parse([]byte(toml), "")
			if err != nil {
				t.Errorf("%s: ConfigMap %s: pgrecycle.toml: %v", d, name, err)
				continue
			}
			if cfg.Metrics.Addr != "0.0.0.0:9930" {
				t.Errorf("%s: metrics.addr = %q, want 0.0.0.0:9930 (probes reach the pod's IP)", d, cfg.Metrics.Addr)
			}
			configs[name] = cfg
		case "Secret":
			ul, ok := d.blockScalar("stringData", "userlist.txt")
			if !ok {
				t.Errorf("%s: Secret %s has no stringData.userlist.txt", d, name)
				continue
			}
			if _, err := auth.ParseUserList(strings.NewReader(ul)); err != nil {
				t.Errorf("%s: Secret %s: userlist.txt: %v", d, name, err)
			}
		case "Deployment":
			text := d.text()
			for _, want := range []string{
				"readinessProbe:", "livenessProbe:", "path: /healthz", "containerPort: 9930",
				"runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false",
				"resources:", "requests:", "limits:", `args: ["-config", "/etc/pgrecycle/pgrecycle.toml"]`,
			} {
				if !strings.Contains(text, want) {
					t.Errorf("%s: Deployment %s lacks %q", d, name, want)
				}
			}
		}
	}
	for _, k := range []string{"ConfigMap", "Secret", "Deployment", "Service"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}

	// The drain (listen.shutdown_timeout) fits in the pod's grace period.
	for _, d := range docs {
		if kind, _ := d.field("kind"); kind != "Deployment" {
			continue
		}
		grace, ok := d.field("spec", "template", "spec", "terminationGracePeriodSeconds")
		if !ok {
			t.Errorf("%s: no terminationGracePeriodSeconds", d)
			continue
		}
		g, err := strconv.Atoi(grace)
		if err != nil {
			t.Errorf("%s: terminationGracePeriodSeconds %q", d, grace)
			continue
		}
		text := d.text()
		for name, cfg := range configs {
			if !strings.Contains(text, "name: "+name+"\n") {
				continue
			}
			if need := cfg.Listen.ShutdownTimeout.D() + 5*time.Second; time.Duration(g)*time.Second <= need {
				t.Errorf("%s: terminationGracePeriodSeconds %d leaves no room for shutdown_timeout %v and a preStop pause", d, g, cfg.Listen.ShutdownTimeout.D())
			}
		}
	}

	// A sidecar example: pgrecycle next to an application container.
	sidecar := false
	for _, d := range docs {
		text := d.text()
		sidecar = sidecar || (strings.Contains(text, "initContainers:") && strings.Contains(text, "restartPolicy: Always") &&
			strings.Contains(text, "containers:") && strings.Contains(text, "127.0.0.1"))
	}
	if !sidecar {
		t.Error("no sidecar example (pgrecycle as a native sidecar next to an application container)")
	}
}

// TestDeployManifestsPyYAML parses the manifests with a real YAML parser
// where one is installed, and compares what it finds with the line-based
// reading above.
func TestDeployManifestsPyYAML(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	var want []string
	for _, d := range readManifests(t) {
		kind, _ := d.field("kind")
		name, _ := d.field("metadata", "name")
		want = append(want, filepath.Base(d.file)+" "+kind+" "+name)
	}
	files, _ := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	script := `
import os, sys
try:
    import yaml
except ImportError:
    sys.exit(3)
for f in sys.argv[1:]:
    with open(f) as fh:
        for d in yaml.safe_load_all(fh):
            if d is None:
                continue
            print(os.path.basename(f), d["kind"], d["metadata"]["name"])
`
	out, err := exec.Command(py, append([]string{"-c", script}, files...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 3 {
		t.Skip("PyYAML not installed")
	}
	if err != nil {
		t.Fatalf("PyYAML: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if !slices.Equal(got, want) {
		t.Errorf("PyYAML reads\n%s\nthe line-based check reads\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDeployKubectl validates the manifests with kubectl's client-side dry
// run where kubectl and a cluster to ask for the schemas are available.
func TestDeployKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	files, _ := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	for _, f := range files {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		out, err := exec.CommandContext(ctx, kubectl, "apply", "--dry-run=client", "--request-timeout=20s", "-f", f).CombinedOutput()
		cancel()
		if err != nil {
			s := string(out)
			for _, noCluster := range []string{"connection refused", "unable to recognize", "failed to download openapi", "no configuration has been provided", "dial tcp", "i/o timeout", "no such host"} {
				if strings.Contains(s, noCluster) {
					t.Skipf("kubectl has no cluster to fetch the schemas from: %s", firstLine(s))
				}
			}
			t.Errorf("kubectl apply --dry-run=client -f %s: %v\n%s", f, err, out)
		}
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// systemdUnit reads a unit file: directive → values, in order.
func systemdUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	section := ""
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Errorf("%s: not a directive: %q", path, l)
				continue
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

func TestDeploySystemdUnit(t *testing.T) {
	path := filepath.Join(deployDir, "pgrecycle.service")
	u := systemdUnit(t, path)
	for key, want := range map[string]string{
		"Service.Type":            "notify",
		"Service.ExecStart":       "/usr/local/bin/pgrecycle -config /etc/pgrecycle/pgrecycle.toml",
		"Service.ExecReload":      "/bin/kill -HUP $MAINPID",
		"Service.KillSignal":      "SIGTERM",
		"Service.NoNewPrivileges": "yes",
		"Service.ProtectSystem":   "strict",
		"Service.LimitNOFILE":     "65536",
		"Install.WantedBy":        "multi-user.target",
	} {
		if got := u[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if len(u["Service.User"]) == 0 && !slices.Contains(u["Service.DynamicUser"], "yes") {
		t.Error("the unit runs as root: want User= or DynamicUser=yes")
	}
	stop := u["Service.TimeoutStopSec"]
	if len(stop) != 1 {
		t.Fatalf("TimeoutStopSec = %q", stop)
	}
	d, err := time.ParseDuration(stop[0])
	if err != nil {
		d, err = time.ParseDuration(stop[0] + "s")
	}
	if err != nil {
		t.Fatalf("TimeoutStopSec %q: %v", stop[0], err)
	}
	if def := config.Default().Listen.ShutdownTimeout.D(); d <= def {
		t.Errorf("TimeoutStopSec %v must exceed listen.shutdown_timeout (%v), or systemd kills a draining pgrecycle", d, def)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	// verify wants ExecStart's binary to exist: point it at one that does.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "pgrecycle.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/pgrecycle", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, analyze, "verify", unit).CombinedOutput(); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestManifestField(t *testing.T) {
	d := manifestDoc{file: "x.yaml", line: 1, lines: strings.Split(`# comment
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    name: not-this-one
  name: "web"
spec:
  template:
    spec:
      containers:
        - name: app
      terminationGracePeriodSeconds: 45
data:
  pgrecycle.toml: |
    [listen]
    addr = "x"

    [log]
  other: 1
`, "\n")}
	for _, tc := range []struct {
		path []string
		want string
		ok   bool
	}{
		{[]string{"kind"}, "Deployment", true},
		{[]string{"metadata", "name"}, "web", true},
		{[]string{"spec", "template", "spec", "terminationGracePeriodSeconds"}, "45", true},
		{[]string{"spec", "name"}, "", false},
		{[]string{"name"}, "", false},
	} {
		got, ok := d.field(tc.path...)
		if got != tc.want || ok != tc.ok {
			t.Errorf("field(%v) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := d.blockScalar("data", "pgrecycle.toml"); !ok || got != "[listen]\naddr = \"x\"\n\n[log]\n" {
		t.Errorf("blockScalar = %q, %v", got, ok)
	}
	if _, ok := (manifestDoc{lines: []string{"kind: Service", "metadata:", "  labels: {}"}}).field("metadata", "name"); ok {
		t.Error("found a metadata.name that is not there")
	}
}

// Package helm checks the Helm chart deployments/helm/sriov-dra against the
// kustomize base deployments/base. It is its own Go module so that the
// product module never depends on Helm or kustomize.
//
// The chart is rendered with the Helm Go library as `helm template` does
// (client-only install, dry run) and the base with kustomize's krusty as
// `kubectl kustomize` does. Both are compared object by object, keyed by
// apiVersion, kind, namespace and name, after normalising each object to
// JSON with sorted keys. The one difference allowed: the chart puts Helm's
// release labels (helmLabels) on every object's metadata.labels; they are
// removed before comparing. Nothing else is ignored.
package helm

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "../../deployments/helm/sriov-dra"
	baseDir  = "../../deployments/base"
)

// helmLabels are the labels only the chart sets (Helm conventions).
var helmLabels = []string{
	"app.kubernetes.io/instance",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/version",
	"helm.sh/chart",
}

type object = map[string]any

// render renders the chart like `helm template sriov-dra <chart> -n <ns>`.
func render(t *testing.T, vals map[string]any, releaseNamespace string) (string, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.DryRunOption = "client"
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = "sriov-dra"
	install.Namespace = releaseNamespace
	kv, err := chartutil.ParseKubeVersion("v1.34.0")
	if err != nil {
		t.Fatal(err)
	}
	install.KubeVersion = kv
	if vals == nil {
		vals = map[string]any{}
	}
	rel, err := install.Run(chrt, vals)
	if err != nil {
		return "", err
	}
	return rel.Manifest, nil
}

func renderObjects(t *testing.T, vals map[string]any, releaseNamespace string) map[string]object {
	t.Helper()
	m, err := render(t, vals, releaseNamespace)
	if err != nil {
		t.Fatalf("render chart: %v", err)
	}
	return parse(t, "chart", m)
}

// kustomizeBase builds the base like `kubectl kustomize deployments/base`.
func kustomizeBase(t *testing.T) map[string]object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), baseDir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", baseDir, err)
	}
	y, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, "kustomize", string(y))
}

func key(o object) string {
	md, _ := o["metadata"].(map[string]any)
	return fmt.Sprintf("%v %v %v/%v", o["apiVersion"], o["kind"], md["namespace"], md["name"])
}

// parse splits a multi-document YAML stream into objects keyed by key().
func parse(t *testing.T, what, stream string) map[string]object {
	t.Helper()
	out := map[string]object{}
	for _, doc := range strings.Split("\n"+stream, "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, doc)
		}
		if o == nil {
			continue
		}
		k := key(o)
		if _, dup := out[k]; dup {
			t.Fatalf("%s: %s twice", what, k)
		}
		out[k] = o
	}
	return out
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// normalise removes Helm's labels and returns the object as JSON with
// sorted keys.
func normalise(t *testing.T, o object) string {
	t.Helper()
	var c object
	b, _ := json.Marshal(o)
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if md, ok := c["metadata"].(map[string]any); ok {
		if labels, ok := md["labels"].(map[string]any); ok {
			for _, l := range helmLabels {
				delete(labels, l)
			}
		}
	}
	out, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// The default values render exactly the base's objects. The release
// namespace does not matter: the objects' namespace is a value.
func TestChartMatchesKustomizeBase(t *testing.T) {
	want := kustomizeBase(t)
	if len(want) < 10 {
		t.Fatalf("the base has only %d objects", len(want))
	}
	for _, ns := range []string{"sriov-dra", "default"} {
		t.Run("release namespace "+ns, func(t *testing.T) {
			got := renderObjects(t, nil, ns)
			for _, k := range slices.Sorted(maps.Keys(want)) {
				g, ok := got[k]
				if !ok {
					t.Errorf("chart lacks %s", k)
					continue
				}
				if gs, ws := normalise(t, g), normalise(t, want[k]); gs != ws {
					t.Errorf("%s differs\nchart:\n%s\nkustomize:\n%s", k, gs, ws)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(got)) {
				if _, ok := want[k]; !ok {
					t.Errorf("chart has %s, the base does not", k)
				}
			}
			// The Helm labels are there (so ignoring them hides nothing else).
			for k, o := range got {
				labels, _ := o["metadata"].(map[string]any)["labels"].(map[string]any)
				for _, l := range helmLabels {
					if _, ok := labels[l]; !ok {
						t.Errorf("%s lacks label %s", k, l)
					}
				}
			}
		})
	}
}

func TestChartValues(t *testing.T) {
	kinds := func(objs map[string]object) map[string]int {
		n := map[string]int{}
		for _, o := range objs {
			n[o["kind"].(string)]++
		}
		return n
	}
	t.Run("switches", func(t *testing.T) {
		got := kinds(renderObjects(t, map[string]any{
			"createNamespace": false,
			"deviceClasses":   map[string]any{"create": false},
			"admissionPolicy": map[string]any{"create": false},
		}, "sriov-dra"))
		for _, k := range []string{"Namespace", "DeviceClass", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
			if got[k] != 0 {
				t.Errorf("%d %s rendered although switched off", got[k], k)
			}
		}
		for _, k := range []string{"DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
			if got[k] != 1 {
				t.Errorf("%d %s, want 1", got[k], k)
			}
		}
	})
	t.Run("namespace and service account follow the values everywhere", func(t *testing.T) {
		m, err := render(t, map[string]any{"namespace": "net-drivers", "serviceAccount": map[string]any{"name": "sriov"}}, "default")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"name: net-drivers",
			"system:serviceaccount:net-drivers:sriov'",
			"serviceAccountName: sriov",
		} {
			if !strings.Contains(m, want) {
				t.Errorf("rendered chart lacks %q", want)
			}
		}
		if strings.Contains(m, "namespace: sriov-dra") || strings.Contains(m, "serviceaccount:sriov-dra") {
			t.Error("the default namespace or service account is still rendered somewhere")
		}
	})
	t.Run("host paths and args", func(t *testing.T) {
		objs := renderObjects(t, map[string]any{
			"host":           map[string]any{"kubeletPluginsDir": "/data/kubelet/plugins", "netnsDir": "/run/netns", "root": "/srv/host/"},
			"extraArgs":      []any{"-v=4"},
			"extraEnv":       []any{map[string]any{"name": "EXTRA", "value": "1"}},
			"passthroughPFs": []any{"ens5f0", "0000:af:00.1"},
			"deviceMetadata": false,
			"metricsPort":    9500,
			"image":          map[string]any{"repository": "registry.example/sriov-dra", "tag": "v0.1.0"},
		}, "sriov-dra")
		ds := objs["apps/v1 DaemonSet sriov-dra/sriov-dra"]
		b, _ := json.Marshal(ds)
		s := string(b)
		for _, want := range []string{
			`"mountPath":"/data/kubelet/plugins"`, `"path":"/data/kubelet/plugins"`,
			`{"name":"KUBELET_PLUGINS_DIR","value":"/data/kubelet/plugins/sriov.dra.dev"}`,
			`"mountPath":"/run/netns"`, `"path":"/run/netns"`,
			`"args":["driver","-v=4"]`, `{"name":"EXTRA","value":"1"}`,
			`{"name":"METRICS_ADDR","value":"127.0.0.1:9500"}`,
			`{"name":"PASSTHROUGH_PFS","value":"ens5f0,0000:af:00.1"}`,
			`{"name":"DEVICE_METADATA","value":"false"}`,
			`"path":"/srv/host/sys"`, `"path":"/srv/host/proc/irq"`, `"path":"/srv/host/proc/sys/kernel/random"`, `"path":"/srv/host/dev"`,
			`"image":"registry.example/sriov-dra:v0.1.0"`,
		} {
			if !strings.Contains(s, want) {
				t.Errorf("DaemonSet lacks %s:\n%s", want, s)
			}
		}
	})
	t.Run("vfConfig renders the NodeConfig", func(t *testing.T) {
		objs := renderObjects(t, map[string]any{
			"vfConfig": map[string]any{"pfs": []any{
				map[string]any{"interfaceName": "ens1f0", "numVfs": 8},
				map[string]any{"vendor": "8086", "device": "1521", "numVfs": 0, "vfDriver": "vfio-pci"},
			}},
		}, "sriov-dra")
		cm := objs["v1 ConfigMap sriov-dra/sriov-dra-vf-config"]
		if cm == nil {
			t.Fatalf("no ConfigMap sriov-dra-vf-config among %d objects", len(objs))
		}
		got := cm["data"].(map[string]any)["config.yaml"].(string)
		want := "apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\npfs:\n- interfaceName: ens1f0\n  numVfs: 8\n- device: \"1521\"\n  numVfs: 0\n  vendor: \"8086\"\n  vfDriver: vfio-pci"
		if got != want {
			t.Errorf("config.yaml =\n%s\nwant\n%s", got, want)
		}
	})
}

// Least privilege: the host's / is not mounted, metrics stay on the
// loopback unless the values expose them, and tolerations are the values'.
func TestChartLeastPrivilege(t *testing.T) {
	ds := func(t *testing.T, vals map[string]any) map[string]any {
		t.Helper()
		return renderObjects(t, vals, "sriov-dra")["apps/v1 DaemonSet sriov-dra/sriov-dra"]
	}
	podSpec := func(d map[string]any) map[string]any {
		return d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	}
	env := func(t *testing.T, d map[string]any, name string) string {
		t.Helper()
		for _, e := range podSpec(d)["containers"].([]any)[0].(map[string]any)["env"].([]any) {
			if e.(map[string]any)["name"] == name {
				return e.(map[string]any)["value"].(string)
			}
		}
		t.Fatalf("no env %s", name)
		return ""
	}
	def := ds(t, nil)
	for _, v := range podSpec(def)["volumes"].([]any) {
		hp, ok := v.(map[string]any)["hostPath"].(map[string]any)
		if ok && (hp["path"] == "/" || hp["path"] == "/proc" || hp["path"] == "/etc" || hp["path"] == "/var") {
			t.Errorf("volume %v mounts the host's %s", v.(map[string]any)["name"], hp["path"])
		}
	}
	if _, ok := podSpec(def)["tolerations"]; ok {
		t.Errorf("default tolerations %v, want none", podSpec(def)["tolerations"])
	}
	for _, tc := range []struct {
		host any
		want string
	}{{nil, "127.0.0.1:9478"}, {"", ":9478"}, {"::1", "[::1]:9478"}, {"10.0.0.5", "10.0.0.5:9478"}} {
		vals := map[string]any{}
		if tc.host != nil {
			vals["metricsHost"] = tc.host
		}
		if got := env(t, ds(t, vals), "METRICS_ADDR"); got != tc.want {
			t.Errorf("metricsHost %v: METRICS_ADDR %q, want %q", tc.host, got, tc.want)
		}
	}
	tol := []any{map[string]any{"key": "sriov.dra.dev/node", "operator": "Exists", "effect": "NoSchedule"}}
	d := ds(t, map[string]any{"tolerations": tol, "nodeSelector": map[string]any{"sriov.dra.dev/node": "true"}})
	b, _ := json.Marshal(podSpec(d))
	for _, want := range []string{`"tolerations":[{"effect":"NoSchedule","key":"sriov.dra.dev/node","operator":"Exists"}]`, `"nodeSelector":{"kubernetes.io/os":"linux","sriov.dra.dev/node":"true"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pod spec lacks %s", want)
		}
	}
}

// The overlay deployments/sriov-nodes is the base on labeled nodes only.
func TestSRIOVNodesOverlay(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), "../../deployments/sriov-nodes")
	if err != nil {
		t.Fatal(err)
	}
	y, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, "overlay", string(y))
	base := kustomizeBase(t)
	if len(objs) != len(base) {
		t.Errorf("%d objects, the base has %d", len(objs), len(base))
	}
	ds := objs["apps/v1 DaemonSet sriov-dra/sriov-dra"]
	sel := ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["nodeSelector"]
	b, _ := json.Marshal(sel)
	if string(b) != `{"kubernetes.io/os":"linux","sriov.dra.dev/node":"true"}` {
		t.Errorf("nodeSelector %s", b)
	}
}

// values.schema.json turns bad values away before anything renders.
func TestChartSchemaRejects(t *testing.T) {
	tests := []struct {
		name string
		vals map[string]any
		want string // in the error
	}{
		{"pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "pullPolicy"},
		{"port", map[string]any{"metricsPort": 0}, "metricsPort"},
		{"metrics host", map[string]any{"metricsHost": "0.0.0.0:80/x"}, "metricsHost"},
		{"relative host path", map[string]any{"host": map[string]any{"root": "host"}}, "root"},
		{"unknown key (typo)", map[string]any{"nodeSelecter": map[string]any{"a": "b"}}, "nodeSelecter"},
		{"namespace not a DNS label", map[string]any{"namespace": "SRIOV_DRA"}, "namespace"},
		{"extra args not strings", map[string]any{"extraArgs": []any{map[string]any{"v": 4}}}, "extraArgs"},
		{"negative VF count", map[string]any{"vfConfig": map[string]any{"pfs": []any{map[string]any{"interfaceName": "ens1f0", "numVfs": -1}}}}, "numVfs"},
		{"VF config key typo", map[string]any{"vfConfig": map[string]any{"pfs": []any{map[string]any{"interfaceName": "ens1f0", "numVFs": 2}}}}, "numVFs"},
		{"passthrough PF with a comma", map[string]any{"passthroughPFs": []any{"ens5f0,ens5f1"}}, "passthroughPFs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.vals, "sriov-dra")
			if err == nil {
				t.Fatalf("values %v accepted", tc.vals)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

// The chart's documentation matches it: every top-level value is in the schema.
func TestSchemaCoversValues(t *testing.T) {
	var vals, schema map[string]any
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &vals); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	props := schema["properties"].(map[string]any)
	for k := range vals {
		if _, ok := props[k]; !ok {
			t.Errorf("value %s is not in values.schema.json", k)
		}
	}
	for k := range props {
		if _, ok := vals[k]; !ok {
			t.Errorf("values.schema.json has %s, values.yaml does not", k)
		}
	}
}

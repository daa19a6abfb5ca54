//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// repoRoot is the repository checkout the tests run from (go test runs in
// the package folder test/cluster/e2e).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "deployments", "base", "kustomization.yaml")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

// decodeObjects splits a multi-document YAML stream into objects, skipping
// empty documents (comments only).
func decodeObjects(t *testing.T, what string, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("%s: decode YAML: %v", what, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// dryRunner applies objects with a server-side dry run: the API server
// decodes, defaults, validates and admits each one (ValidatingAdmissionPolicies
// included) exactly as for a real apply, and stores nothing.
type dryRunner struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

func (e *env) dryRunner(t *testing.T) *dryRunner {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(dc)
	if err != nil {
		t.Fatalf("API discovery: %v", err)
	}
	dyn, err := dynamic.NewForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &dryRunner{dyn: dyn, mapper: restmapper.NewDiscoveryRESTMapper(groups)}
}

// apply server-side-applies obj with dryRun=All; a namespaced object
// without a namespace goes to defaultNS (as `kubectl apply -n` does).
func (d *dryRunner) apply(ctx context.Context, obj *unstructured.Unstructured, defaultNS string) error {
	gvk := obj.GroupVersionKind()
	m, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("%s %s: the API server does not serve it: %w", gvk, obj.GetName(), err)
	}
	var ri dynamic.ResourceInterface = d.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			obj = obj.DeepCopy()
			obj.SetNamespace(defaultNS)
		}
		ri = d.dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
	}
	body, err := json.Marshal(obj.Object)
	if err != nil {
		return err
	}
	force := true
	got, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		DryRun: []string{metav1.DryRunAll}, FieldManager: "sriov-dra-e2e-dry-run", Force: &force,
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", gvk.Kind, objectRef(obj), err)
	}
	if got.GetName() != obj.GetName() || got.GetKind() != obj.GetKind() {
		return fmt.Errorf("%s %s: dry run returned %s %s", gvk.Kind, objectRef(obj), got.GetKind(), got.GetName())
	}
	return nil
}

func objectRef(o *unstructured.Unstructured) string {
	if o.GetNamespace() != "" {
		return o.GetNamespace() + "/" + o.GetName()
	}
	return o.GetName()
}

func countKinds(objs []*unstructured.Unstructured) string {
	n := map[string]int{}
	for _, o := range objs {
		n[o.GetKind()]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%d %s", n[k], k))
	}
	return strings.Join(parts, ", ")
}

// 8. Every manifest the project ships is accepted by the real API server
// (server-side dry run): the kustomize base with its DeviceClasses and
// policy, the policy on its own, every example, and the Helm chart rendered
// for its default values. A broken manifest is also refused, so the dry run
// does validate.
func TestManifestsDryRun(t *testing.T) {
	e := setup(t)
	root := repoRoot(t)
	d := e.dryRunner(t)
	ctx := context.Background()

	kustomize := func(dir string) func(*testing.T) []byte {
		return func(t *testing.T) []byte {
			out, err := e.kubectlOut("kustomize", filepath.Join(root, dir))
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
			}
			return []byte(out)
		}
	}
	file := func(path string) func(*testing.T) []byte {
		return func(t *testing.T) []byte {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	type source struct {
		name string
		read func(*testing.T) []byte
		// kinds the source must contain (so an empty render does not pass).
		want map[string]int
	}
	sources := []source{
		{"deployments/base", kustomize("deployments/base"), map[string]int{
			"Namespace": 1, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "DaemonSet": 1,
			"DeviceClass": 4, "ValidatingAdmissionPolicy": 4, "ValidatingAdmissionPolicyBinding": 4,
		}},
		{"deployments/policy", kustomize("deployments/policy"), map[string]int{
			"ValidatingAdmissionPolicy": 4, "ValidatingAdmissionPolicyBinding": 4,
		}},
		{"deployments/sriov-nodes", kustomize("deployments/sriov-nodes"), map[string]int{
			"DaemonSet": 1, "DeviceClass": 4, "ValidatingAdmissionPolicy": 4,
		}},
	}
	examples, _ := filepath.Glob(filepath.Join(root, "deployments", "examples", "*.yaml"))
	if len(examples) < 5 {
		t.Fatalf("only %d examples in deployments/examples", len(examples))
	}
	for _, f := range examples {
		// An example that needs VF policy fields brings its admin's DeviceClass.
		want := map[string]int{"ResourceClaimTemplate": 1, "Pod": 1}
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "\nkind: DeviceClass\n") {
			want["DeviceClass"] = 1
			// A class with an extendedResourceName serves a pod's
			// resources.limits: the pod needs no template.
			if strings.Contains(string(b), "\n  extendedResourceName: ") {
				want["ResourceClaimTemplate"] = 0
			}
		}
		sources = append(sources, source{"deployments/examples/" + filepath.Base(f), file(f), want})
	}
	if m := os.Getenv("E2E_HELM_MANIFEST"); m != "" {
		sources = append(sources, source{"deployments/helm/sriov-dra (default values)", file(m), map[string]int{
			"Namespace": 1, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "DaemonSet": 1,
			"DeviceClass": 4, "ValidatingAdmissionPolicy": 4, "ValidatingAdmissionPolicyBinding": 4,
		}})
	} else {
		t.Errorf("E2E_HELM_MANIFEST not set: the Helm chart is not checked (e2e.sh renders it with test/cluster/helmrender)")
	}

	total := 0
	for _, s := range sources {
		objs := decodeObjects(t, s.name, s.read(t))
		for _, o := range objs {
			if err := d.apply(ctx, o, e.namespace); err != nil {
				t.Errorf("%s: refused: %v", s.name, err)
			}
		}
		have := map[string]int{}
		for _, o := range objs {
			have[o.GetKind()]++
		}
		for k, n := range s.want {
			if have[k] != n {
				t.Errorf("%s: %d %s objects, want %d", s.name, have[k], k, n)
			}
		}
		total += len(objs)
		t.Logf("%s: %d objects accepted (%s)", s.name, len(objs), countKinds(objs))
	}
	t.Logf("%d manifests, %d objects in all, accepted by a server-side dry run", len(sources), total)

	// Dry run stored nothing: the examples' pods and templates are not there.
	if pods, err := e.cs.CoreV1().Pods(e.namespace).List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) != 0 {
		t.Errorf("after the dry run %s has pods (%v)", e.namespace, err)
	}
	if tm, err := e.cs.ResourceV1().ResourceClaimTemplates(e.namespace).List(ctx, metav1.ListOptions{}); err != nil || len(tm.Items) != 0 {
		t.Errorf("after the dry run %s has ResourceClaimTemplates (%v)", e.namespace, err)
	}

	// The control: a DeviceClass whose CEL does not compile is refused.
	bad := decodeObjects(t, "bad class", []byte(`
apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: e2e-broken.sriov.dra.dev}
spec:
  selectors:
  - cel: {expression: "device.attributes['sriov.dra.dev'].kind =="}
`))
	err := d.apply(ctx, bad[0], "")
	if !apierrors.IsInvalid(err) {
		t.Errorf("a DeviceClass with a broken CEL expression: got %v, want Invalid", err)
	}
}

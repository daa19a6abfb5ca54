// Package policy holds the ValidatingAdmissionPolicies of sriov-dra: the
// driver's service account keeps to its own node's ResourceSlices and
// claim status, and namespace users' claims keep to what their DeviceClass
// allows. These tests evaluate each policy's CEL (match conditions,
// variables, validations, message expressions) the way the API server
// applies them, in Kubernetes' own CEL environment for new expressions of
// the oldest supported API server (1.34, whose compatibility version is
// 1.33: an expression that needs a later library is refused when the
// policy is created there), on
// admission requests built here, with untyped (dyn) objects: they check
// the logic. The API server's type check of the expressions runs when the
// cluster e2e applies the manifests.
package policy

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"
)

const (
	driverUser = "system:serviceaccount:sriov-dra:sriov-dra"
	sliceFile  = "resourceslice-policy.yaml"
)

// oldestCompatibility is the CEL compatibility version of the oldest API
// server the docs support: 1.34 validates new expressions for 1.33.
var oldestCompatibility = version.MajorMinor(1, 33)

// load returns the policy and the binding of that name in file.
func load(t *testing.T, file, name string) (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	var (
		pol *admissionv1.ValidatingAdmissionPolicy
		bnd *admissionv1.ValidatingAdmissionPolicyBinding
	)
	for _, doc := range docs(t, file) {
		var meta struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ValidatingAdmissionPolicy":
			p := &admissionv1.ValidatingAdmissionPolicy{}
			if err := yaml.UnmarshalStrict(doc, p); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if p.Name == name {
				pol = p
			}
		case "ValidatingAdmissionPolicyBinding":
			b := &admissionv1.ValidatingAdmissionPolicyBinding{}
			if err := yaml.UnmarshalStrict(doc, b); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if b.Name == name {
				bnd = b
			}
		default:
			t.Fatalf("%s: unexpected kind %q", file, meta.Kind)
		}
	}
	if pol == nil || bnd == nil {
		t.Fatalf("%s: want a policy and a binding named %s", file, name)
	}
	if bnd.Spec.PolicyName != pol.Name {
		t.Fatalf("binding %s names policy %q", bnd.Name, bnd.Spec.PolicyName)
	}
	return pol, bnd
}

// docs splits a YAML file into its documents (comments-only ones dropped).
func docs(t *testing.T, file string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, doc := range strings.Split(string(data), "\n---\n") {
		if strings.TrimSpace(stripComments(doc)) != "" {
			out = append(out, []byte(doc))
		}
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

// evaluator runs a policy's CEL like the API server's admission plugin.
type evaluator struct {
	t   *testing.T
	env *cel.Env
	pol *admissionv1.ValidatingAdmissionPolicy
}

func newEvaluator(t *testing.T, pol *admissionv1.ValidatingAdmissionPolicy) *evaluator {
	env, err := environment.MustBaseEnvSet(oldestCompatibility).NewExpressionsEnv().Extend(
		cel.Variable("request", cel.DynType),
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("params", cel.DynType),
		cel.Variable("variables", cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		t.Fatal(err)
	}
	return &evaluator{t: t, env: env, pol: pol}
}

func (e *evaluator) eval(expr string, act map[string]any) (any, error) {
	e.t.Helper()
	ast, iss := e.env.Compile(expr)
	if iss.Err() != nil {
		e.t.Fatalf("compile %q: %v", expr, iss.Err())
	}
	prg, err := e.env.Program(ast)
	if err != nil {
		e.t.Fatal(err)
	}
	out, _, err := prg.Eval(act)
	if err != nil {
		return nil, err
	}
	return out.Value(), nil
}

// admit returns "" when the request is allowed, else the denial message
// of the first failing validation (the API server reports the first).
// A request the match conditions exclude is allowed.
func (e *evaluator) admit(req map[string]any, object, oldObject any) string {
	e.t.Helper()
	return e.admitWith(req, object, oldObject, nil)
}

func (e *evaluator) admitWith(req map[string]any, object, oldObject, params any) string {
	e.t.Helper()
	vars := map[string]any{}
	act := map[string]any{"request": req, "object": object, "oldObject": oldObject, "params": params, "variables": vars}
	for _, mc := range e.pol.Spec.MatchConditions {
		v, err := e.eval(mc.Expression, act)
		if err != nil {
			return "match condition " + mc.Name + ": " + err.Error() // failurePolicy Fail
		}
		if v != true {
			return ""
		}
	}
	for _, v := range e.pol.Spec.Variables {
		val, err := e.eval(v.Expression, act)
		if err != nil {
			return "variable " + v.Name + ": " + err.Error()
		}
		vars[v.Name] = val
	}
	for _, val := range e.pol.Spec.Validations {
		ok, err := e.eval(val.Expression, act)
		if err != nil {
			return "validation error: " + err.Error()
		}
		if ok == true {
			continue
		}
		if val.MessageExpression != "" {
			msg, err := e.eval(val.MessageExpression, act)
			if err != nil {
				e.t.Fatalf("messageExpression of %q: %v", val.Expression, err)
			}
			return msg.(string)
		}
		return val.Message
	}
	return ""
}

func slice(node string) map[string]any { return driverSlice(node, "sriov.dra.dev") }

func driverSlice(node, driver string) map[string]any {
	spec := map[string]any{"driver": driver, "pool": map[string]any{"name": node, "generation": 1}}
	if node != "" {
		spec["nodeName"] = node
	} else {
		spec["allNodes"] = true
	}
	return map[string]any{"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "spec": spec}
}

func request(op, user, tokenNode string) map[string]any {
	extra := map[string]any{}
	if tokenNode != "" {
		extra["authentication.kubernetes.io/node-name"] = []any{tokenNode}
		extra["authentication.kubernetes.io/node-uid"] = []any{"uid-" + tokenNode}
	}
	return map[string]any{
		"operation": op,
		"userInfo":  map[string]any{"username": user, "extra": extra},
	}
}

func TestPolicy(t *testing.T) {
	pol, _ := load(t, sliceFile, "sriov-dra-resourceslices")
	e := newEvaluator(t, pol)
	tests := []struct {
		name        string
		op, user    string
		tokenNode   string
		noExtra     bool
		object, old any
		denied      bool
		msgHas      []string
	}{
		{name: "create own node", op: "CREATE", user: driverUser, tokenNode: "a", object: slice("a")},
		{name: "update own node", op: "UPDATE", user: driverUser, tokenNode: "a", object: slice("a"), old: slice("a")},
		{name: "delete own node", op: "DELETE", user: driverUser, tokenNode: "a", old: slice("a")},
		{name: "create other node", op: "CREATE", user: driverUser, tokenNode: "a", object: slice("b"), denied: true,
			msgHas: []string{"node a", "spec.nodeName a", "not b"}},
		{name: "create for all nodes", op: "CREATE", user: driverUser, tokenNode: "a", object: slice(""), denied: true,
			msgHas: []string{"without spec.nodeName"}},
		{name: "update other node", op: "UPDATE", user: driverUser, tokenNode: "a", object: slice("b"), old: slice("b"), denied: true,
			msgHas: []string{"not b"}},
		{name: "take over another node's slice", op: "UPDATE", user: driverUser, tokenNode: "a", object: slice("a"), old: slice("b"), denied: true,
			msgHas: []string{"change or delete", "of node b"}},
		{name: "give own slice to another node", op: "UPDATE", user: driverUser, tokenNode: "a", object: slice("b"), old: slice("a"), denied: true,
			msgHas: []string{"not b"}},
		{name: "delete other node", op: "DELETE", user: driverUser, tokenNode: "a", old: slice("b"), denied: true,
			msgHas: []string{"of node b"}},
		{name: "delete a slice for all nodes", op: "DELETE", user: driverUser, tokenNode: "a", old: slice(""), denied: true,
			msgHas: []string{"without spec.nodeName"}},
		{name: "token not bound to a pod", op: "CREATE", user: driverUser, object: slice("a"), denied: true,
			msgHas: []string{"bound to a pod"}},
		// A client certificate or a legacy secret token has no extras at
		// all: the request's userInfo then has no extra field.
		{name: "credential without any extras", op: "CREATE", user: driverUser, noExtra: true, object: slice("a"), denied: true,
			msgHas: []string{"bound to a pod"}},
		{name: "another driver's slice on its own node", op: "CREATE", user: driverUser, tokenNode: "a", object: driverSlice("a", "gpu.example.com"), denied: true,
			msgHas: []string{"only write ResourceSlices of driver sriov.dra.dev, not of gpu.example.com"}},
		{name: "turn its slice into another driver's", op: "UPDATE", user: driverUser, tokenNode: "a", object: driverSlice("a", "gpu.example.com"), old: slice("a"), denied: true,
			msgHas: []string{"not of gpu.example.com"}},
		{name: "take over another driver's slice", op: "UPDATE", user: driverUser, tokenNode: "a", object: slice("a"), old: driverSlice("a", "gpu.example.com"), denied: true,
			msgHas: []string{"change or delete ResourceSlices of driver sriov.dra.dev, not of gpu.example.com"}},
		{name: "delete another driver's slice on its own node", op: "DELETE", user: driverUser, tokenNode: "a", old: driverSlice("a", "gpu.example.com"), denied: true,
			msgHas: []string{"not of gpu.example.com"}},
		{name: "another user is not this policy's business", op: "CREATE", user: "system:serviceaccount:other:gpu", tokenNode: "a", object: slice("b")},
		{name: "a node's kubelet is not matched", op: "DELETE", user: "system:node:a", old: slice("b")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			req := request(tc.op, tc.user, tc.tokenNode)
			if tc.noExtra {
				delete(req["userInfo"].(map[string]any), "extra")
			}
			msg := e.admit(req, tc.object, tc.old)
			if !tc.denied {
				if msg != "" {
					t.Fatalf("denied: %s", msg)
				}
				return
			}
			if msg == "" {
				t.Fatal("allowed, want denied")
			}
			for _, w := range tc.msgHas {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

// The policy applies to every write of resourceslices and is enforced.
func TestPolicyScopeAndBinding(t *testing.T) {
	pol, bnd := load(t, sliceFile, "sriov-dra-resourceslices")
	if pol.Spec.FailurePolicy == nil || *pol.Spec.FailurePolicy != admissionv1.Fail {
		t.Error("failurePolicy must be Fail: an error must not let a write through")
	}
	rules := pol.Spec.MatchConstraints.ResourceRules
	if len(rules) != 1 {
		t.Fatalf("%d resource rules, want 1", len(rules))
	}
	r := rules[0]
	if !slices.Equal(r.APIGroups, []string{"resource.k8s.io"}) || !slices.Equal(r.Resources, []string{"resourceslices"}) || !slices.Equal(r.APIVersions, []string{"*"}) {
		t.Errorf("rule %+v does not cover resourceslices of every version", r.Rule)
	}
	for _, op := range []admissionv1.OperationType{admissionv1.Create, admissionv1.Update, admissionv1.Delete} {
		if !slices.Contains(r.Operations, op) {
			t.Errorf("operation %s not covered", op)
		}
	}
	if bnd.Spec.PolicyName != pol.Name {
		t.Errorf("binding names policy %q, want %q", bnd.Spec.PolicyName, pol.Name)
	}
	if !slices.Equal(bnd.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
		t.Errorf("binding actions %v, want [Deny]", bnd.Spec.ValidationActions)
	}
	if !strings.Contains(pol.Spec.MatchConditions[0].Expression, "'"+driverUser+"'") {
		t.Errorf("match condition %q does not name the base's service account %s", pol.Spec.MatchConditions[0].Expression, driverUser)
	}
}

// The base installs the policy.
func TestInBase(t *testing.T) {
	b, err := os.ReadFile("../base/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct{ Resources []string }
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(k.Resources, "../policy") {
		t.Errorf("deployments/base/kustomization.yaml resources %v lack ../policy", k.Resources)
	}
}

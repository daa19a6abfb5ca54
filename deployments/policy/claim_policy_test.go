package policy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	resourceapi "k8s.io/api/resource/v1"
	"sigs.k8s.io/yaml"
)

const (
	claimFile  = "claim-policy.yaml"
	statusFile = "resourceclaim-status-policy.yaml"
	ethClass   = "vf-ethernet.sriov.dra.dev"
	claimLabel = "sriov.dra.dev/claim-policy"
)

// obj decodes a YAML snippet into the untyped form the API server's CEL sees.
func obj(t *testing.T, y string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	// Numbers as the API server's unstructured converter gives them.
	b, _ := json.Marshal(m)
	var out map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return intify(out).(map[string]any)
}

func intify(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = intify(e)
		}
	case []any:
		for i, e := range x {
			x[i] = intify(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// class is a DeviceClass with optional config entries (YAML list items).
func class(t *testing.T, name, configs string) map[string]any {
	t.Helper()
	y := "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: " + name + "}\nspec:\n  selectors: [{cel: {expression: 'true'}}]\n"
	if configs != "" {
		y += "  config:\n" + configs
	}
	return obj(t, y)
}

// claim is a ResourceClaim with the given devices (YAML under spec.devices).
func claim(t *testing.T, devices string) map[string]any {
	t.Helper()
	return obj(t, "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: c, namespace: tenant}\nspec:\n  devices:\n"+devices)
}

// template wraps a claim's spec into a ResourceClaimTemplate.
func template(c map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
		"metadata": map[string]any{"name": "c", "namespace": "tenant"},
		"spec":     map[string]any{"spec": c["spec"]},
	}
}

func claimRequest(op, resource string) map[string]any {
	return map[string]any{
		"operation": op,
		"resource":  map[string]any{"group": "resource.k8s.io", "version": "v1", "resource": resource},
		"userInfo":  map[string]any{"username": "system:serviceaccount:tenant:default"},
	}
}

// One request "vf" of the class, and one config for it with these parameters.
func vfClaim(t *testing.T, class, params string) map[string]any {
	t.Helper()
	return claim(t, `    requests:
    - name: vf
      exactly: {deviceClassName: `+class+`}
    config:
    - requests: [vf]
      opaque:
        driver: sriov.dra.dev
        parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, `+params+`}
`)
}

// A class config (YAML list item) of kind VfConfig with these parameters.
func classConfig(params string) string {
	return "  - opaque:\n      driver: sriov.dra.dev\n      parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, " + params + "}\n"
}

func TestClaimClassPolicy(t *testing.T) {
	pol, _ := load(t, claimFile, "sriov-dra-claim-classes")
	e := newEvaluator(t, pol)
	shipped := class(t, ethClass, "")
	vlan100 := class(t, "vf-ethernet-vlan100", classConfig(
		"vlan: 100, spoofChk: true, policy: {claimMaySet: [mac], maxMTU: 9000, ipam: [{type: host-local, claimKeys: [ranges]}, {type: static}]}"))
	mayVLAN := class(t, "vf-ethernet-any-vlan", classConfig("policy: {claimMaySet: [vlan, spoofChk]}"))
	// The later config's policy replaces the earlier one's; a policy in
	// another driver's config is not this driver's business.
	layered := class(t, "vf-layered", classConfig("policy: {claimMaySet: [vlan]}")+classConfig("mtu: 1500, policy: {claimMaySet: [trust]}")+
		"  - opaque: {driver: other.example.com, parameters: {policy: {claimMaySet: [vlan]}}}\n")
	pfClass := class(t, "pf.sriov.dra.dev", "")
	noIPAM := class(t, "vf-no-ipam", classConfig("policy: {ipam: []}"))

	twoClasses := `    requests:
    - name: a
      exactly: {deviceClassName: vf-ethernet.sriov.dra.dev}
    - name: b
      exactly: {deviceClassName: vf-ethernet-any-vlan}
`
	firstAvailable := `    requests:
    - name: r
      firstAvailable:
      - {name: fast, deviceClassName: vf-ethernet-any-vlan}
      - {name: slow, deviceClassName: vf-ethernet.sriov.dra.dev}
`
	cfg := func(requests, params string) string {
		r := ""
		if requests != "" {
			r = "requests: [" + requests + "], "
		}
		return "    - {" + r + "opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: VfConfig, " + params + "}}}\n"
	}

	tests := []struct {
		name     string
		class    map[string]any
		claim    map[string]any
		template bool
		op       string
		old      map[string]any
		want     string // "" = allowed; else the whole message
	}{
		{name: "pod-local fields on the shipped class", class: shipped,
			claim: vfClaim(t, ethClass, "ifName: net1, mtu: 9000, irqAffinity: container, routes: [{dst: 10.0.0.0/8}], "+
				"ipam: {type: host-local, ranges: [[{subnet: 10.1.0.0/24}]], Routes: [{dst: 0.0.0.0/0}]}")},
		{name: "vlan on the shipped class", class: shipped, claim: vfClaim(t, ethClass, "vlan: 200"),
			want: "spec.devices.config[0]: a claim may not set vlan: DeviceClass vf-ethernet.sriov.dra.dev does not allow it (policy.claimMaySet)"},
		{name: "template: the path is spec.spec", class: shipped, claim: vfClaim(t, ethClass, "spoofChk: false"), template: true,
			want: "spec.spec.devices.config[0]: a claim may not set spoofChk: DeviceClass vf-ethernet.sriov.dra.dev does not allow it (policy.claimMaySet)"},
		{name: "every VF policy field is one", class: shipped,
			claim: vfClaim(t, ethClass, `mac: "02:00:00:00:00:01", vlan: 1, vlanQoS: 1, vlanProto: 802.1Q, spoofChk: false, trust: true, linkState: enable, `+
				`minTxRate: 1, maxTxRate: 2, guid: auto, pkey: "0x8001", driver: vfio-pci, rdmaIsolation: true`),
			want: strings.Join([]string{"mac", "vlan", "vlanQoS", "vlanProto", "spoofChk", "trust", "linkState", "minTxRate", "maxTxRate", "guid", "pkey", "driver", "rdmaIsolation"}, "|")},
		{name: "a class that pins vlan 100", class: vlan100, claim: vfClaim(t, "vf-ethernet-vlan100", "vlan: 200"),
			want: "spec.devices.config[0]: a claim may not set vlan: DeviceClass vf-ethernet-vlan100 does not allow it (policy.claimMaySet)"},
		{name: "what the class allows", class: vlan100, claim: vfClaim(t, "vf-ethernet-vlan100", `mac: "02:00:00:00:00:01", mtu: 9000`)},
		{name: "a class allowing vlan", class: mayVLAN, claim: vfClaim(t, "vf-ethernet-any-vlan", "vlan: 200, spoofChk: false")},
		{name: "the later class policy counts", class: layered, claim: vfClaim(t, "vf-layered", "vlan: 200"),
			want: "spec.devices.config[0]: a claim may not set vlan: DeviceClass vf-layered does not allow it (policy.claimMaySet)"},
		{name: "the later class policy allows trust", class: layered, claim: vfClaim(t, "vf-layered", "trust: true")},
		{name: "a config for another class's request is not this class's", class: mayVLAN,
			claim: claim(t, twoClasses+"    config:\n"+cfg("a", "vlan: 5"))},
		{name: "... but is checked against its own class", class: shipped,
			claim: claim(t, twoClasses+"    config:\n"+cfg("b", "ifName: x")+cfg("a", "vlan: 5")),
			want:  "spec.devices.config[1]: a claim may not set vlan: DeviceClass vf-ethernet.sriov.dra.dev does not allow it (policy.claimMaySet)"},
		{name: "a config without requests applies to every request", class: shipped,
			claim: claim(t, twoClasses+"    config:\n"+cfg("", "trust: true")),
			want:  "spec.devices.config[0]: a claim may not set trust: DeviceClass vf-ethernet.sriov.dra.dev does not allow it (policy.claimMaySet)"},
		{name: "firstAvailable: the parent request covers every subrequest", class: shipped,
			claim: claim(t, firstAvailable+"    config:\n"+cfg("r", "vlan: 7")),
			want:  "spec.devices.config[0]: a claim may not set vlan: DeviceClass vf-ethernet.sriov.dra.dev does not allow it (policy.claimMaySet)"},
		{name: "firstAvailable: the subrequest of the class", class: shipped,
			claim: claim(t, firstAvailable+"    config:\n"+cfg("r/slow", "vlan: 7")),
			want:  "spec.devices.config[0]: a claim may not set vlan"},
		{name: "firstAvailable: the subrequest of another class", class: shipped,
			claim: claim(t, firstAvailable+"    config:\n"+cfg("r/fast", "vlan: 7"))},
		{name: "firstAvailable: the allowing class", class: mayVLAN,
			claim: claim(t, firstAvailable+"    config:\n"+cfg("r", "vlan: 7"))},
		{name: "a claim without configs", class: shipped, claim: claim(t, twoClasses)},
		{name: "another driver's config", class: shipped,
			claim: claim(t, twoClasses+"    config:\n    - opaque: {driver: gpu.example.com, parameters: {vlan: 5, policy: {}}}\n")},
		{name: "PfConfig: driver is a policy field", class: pfClass,
			claim: claim(t, "    requests: [{name: pf, exactly: {deviceClassName: pf.sriov.dra.dev}}]\n    config:\n"+
				"    - {opaque: {driver: sriov.dra.dev, parameters: {apiVersion: sriov.dra.dev/v1alpha1, kind: PfConfig, ifName: net1, driver: vfio-pci}}}\n"),
			want: "spec.devices.config[0]: a claim may not set driver: DeviceClass pf.sriov.dra.dev does not allow it (policy.claimMaySet)"},
		{name: "mtu above the class's maxMTU", class: vlan100, claim: vfClaim(t, "vf-ethernet-vlan100", "mtu: 9001"),
			want: "spec.devices.config[0]: mtu 9001 is above 9000, the largest MTU DeviceClass vf-ethernet-vlan100 allows (policy.maxMTU)"},
		{name: "bridge as IPAM plugin", class: shipped, claim: vfClaim(t, ethClass, "ipam: {type: bridge, bridge: cni0}"),
			want: "spec.devices.config[0]: ipam.type bridge is not allowed: DeviceClass vf-ethernet.sriov.dra.dev lets claims name only host-local, static (policy.ipam)"},
		{name: "whereabouts reading a host file", class: shipped,
			claim: vfClaim(t, ethClass, "ipam: {type: whereabouts, configuration_path: /host/etc/shadow, range: 10.0.0.0/24}"),
			want:  "spec.devices.config[0]: ipam.type whereabouts is not allowed"},
		{name: "ipam without a type", class: shipped, claim: vfClaim(t, ethClass, "ipam: {ranges: []}"),
			want: "spec.devices.config[0]: ipam.type (unset) is not allowed"},
		{name: "host-local datadir (a case variant of dataDir)", class: shipped,
			claim: vfClaim(t, ethClass, "ipam: {type: host-local, datadir: /host/etc, ranges: [[{subnet: 10.1.0.0/24}]]}"),
			want: "spec.devices.config[0]: a claim may not set ipam.datadir for host-local: DeviceClass vf-ethernet.sriov.dra.dev allows only ranges, routes, subnet, rangeStart, rangeEnd, gateway " +
				"(policy.ipam); keys naming host paths or credentials come from the class"},
		{name: "host-local dataDir", class: shipped, claim: vfClaim(t, ethClass, "ipam: {type: host-local, dataDir: /tmp}"),
			want: "spec.devices.config[0]: a claim may not set ipam.dataDir for host-local"},
		{name: "static resolvConf-like key", class: shipped, claim: vfClaim(t, ethClass, "ipam: {type: static, addresses: [], capabilities: {}}"),
			want: "spec.devices.config[0]: a claim may not set ipam.capabilities for static: DeviceClass vf-ethernet.sriov.dra.dev allows only addresses, routes, dns"},
		{name: "the class's IPAM allowlist", class: vlan100, claim: vfClaim(t, "vf-ethernet-vlan100", "ipam: {type: host-local, ranges: [], routes: []}"),
			want: "spec.devices.config[0]: a claim may not set ipam.routes for host-local: DeviceClass vf-ethernet-vlan100 allows only ranges (policy.ipam)"},
		{name: "an allowlist entry without claimKeys allows only type", class: vlan100,
			claim: vfClaim(t, "vf-ethernet-vlan100", "ipam: {type: static, addresses: []}"),
			want:  "spec.devices.config[0]: a claim may not set ipam.addresses for static: DeviceClass vf-ethernet-vlan100 allows only type (policy.ipam)"},
		{name: "an empty allowlist", class: noIPAM, claim: vfClaim(t, "vf-no-ipam", "ipam: {type: host-local}"),
			want: "spec.devices.config[0]: ipam.type host-local is not allowed: DeviceClass vf-no-ipam lets claims name only no IPAM plugin (policy.ipam)"},
		{name: "several violations in one message", class: shipped,
			claim: claim(t, twoClasses+"    config:\n"+cfg("a", "vlan: 5")+cfg("a", "trust: true")),
			want:  "spec.devices.config[0]: a claim may not set vlan: DeviceClass vf-ethernet.sriov.dra.dev does not allow it (policy.claimMaySet); spec.devices.config[1]: a claim may not set trust"},
		{name: "update that leaves the spec alone", class: shipped, op: "UPDATE",
			claim: vfClaim(t, ethClass, "vlan: 5"), old: vfClaim(t, ethClass, "vlan: 5")},
		{name: "update that changes the spec", class: shipped, op: "UPDATE",
			claim: vfClaim(t, ethClass, "vlan: 5"), old: vfClaim(t, ethClass, "ifName: a"), want: "spec.devices.config[0]: a claim may not set vlan"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			resource, object, old := "resourceclaims", any(tc.claim), any(tc.old)
			if tc.template {
				resource, object = "resourceclaimtemplates", template(tc.claim)
			}
			op := tc.op
			if op == "" {
				op = "CREATE"
			}
			if tc.old == nil {
				old = nil
			}
			msg := e.admitWith(claimRequest(op, resource), object, old, tc.class)
			checkMessage(t, msg, tc.want)
		})
	}
}

// checkMessage: want "" is allowed; a want with "|" lists parts the message
// must all contain; else the message must start with want.
func checkMessage(t *testing.T, msg, want string) {
	t.Helper()
	switch {
	case want == "" && msg != "":
		t.Fatalf("denied: %s", msg)
	case want == "":
	case msg == "":
		t.Fatalf("allowed, want denied with %q", want)
	case strings.Contains(want, "|"):
		for _, w := range strings.Split(want, "|") {
			if !strings.Contains(msg, "a claim may not set "+w+":") {
				t.Errorf("message %q does not name %s", msg, w)
			}
		}
	case !strings.HasPrefix(msg, want):
		t.Errorf("message\n%q\nwant it to start with\n%q", msg, want)
	}
}

func TestClaimPolicy(t *testing.T) {
	pol, _ := load(t, claimFile, "sriov-dra-claims")
	e := newEvaluator(t, pol)
	tests := []struct {
		name     string
		claim    map[string]any
		template bool
		want     string
	}{
		{name: "policy in a claim", claim: vfClaim(t, ethClass, "policy: {claimMaySet: [vlan]}, vlan: 5"),
			want: "spec.devices.config[0]: a claim may not set policy: only a DeviceClass config sets policy"},
		{name: "policy in a template", claim: vfClaim(t, "any-class", "policy: {}"), template: true,
			want: "spec.spec.devices.config[0]: a claim may not set policy"},
		{name: "a field name in another case", claim: vfClaim(t, ethClass, "VLAN: 5"),
			want: "spec.devices.config[0]: parameters key VLAN differs from the field vlan only in case; field names are case-sensitive"},
		{name: "policy in another case", claim: vfClaim(t, ethClass, "Policy: {}"),
			want: "spec.devices.config[0]: parameters key Policy differs from the field policy only in case"},
		{name: "IPAM in another case", claim: vfClaim(t, ethClass, "IPAM: {type: bridge}"),
			want: "spec.devices.config[0]: parameters key IPAM differs from the field ipam only in case"},
		{name: "pod-local fields", claim: vfClaim(t, ethClass, "ifName: net1, mtu: 1500, ipam: {type: static}")},
		{name: "VF policy fields are the class policy's business", claim: vfClaim(t, ethClass, "vlan: 5")},
		{name: "another driver's config", claim: claim(t, "    requests: [{name: g, exactly: {deviceClassName: gpu}}]\n    config:\n"+
			"    - opaque: {driver: gpu.example.com, parameters: {policy: {}, VLAN: 1}}\n")},
		{name: "no devices", claim: obj(t, "kind: ResourceClaim\nmetadata: {name: c}\nspec: {}\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			resource, object := "resourceclaims", any(tc.claim)
			if tc.template {
				resource, object = "resourceclaimtemplates", template(tc.claim)
			}
			checkMessage(t, e.admit(claimRequest("CREATE", resource), object, nil), tc.want)
		})
	}
}

// Both claim policies cover claims and templates of every served version
// (converted to v1), on create and update, fail closed and deny; the class
// policy runs once per labeled DeviceClass, and the shipped classes carry
// the label.
func TestClaimPoliciesScope(t *testing.T) {
	for _, name := range []string{"sriov-dra-claims", "sriov-dra-claim-classes"} {
		t.Run(name, func(t *testing.T) {
			pol, bnd := load(t, claimFile, name)
			if pol.Spec.FailurePolicy == nil || *pol.Spec.FailurePolicy != admissionv1.Fail {
				t.Error("failurePolicy must be Fail")
			}
			if mp := pol.Spec.MatchConstraints.MatchPolicy; mp != nil && *mp != admissionv1.Equivalent {
				t.Errorf("matchPolicy %s: requests of v1beta1/v1beta2 must be converted to v1", *mp)
			}
			rules := pol.Spec.MatchConstraints.ResourceRules
			if len(rules) != 1 {
				t.Fatalf("%d rules, want 1", len(rules))
			}
			r := rules[0]
			if !slices.Equal(r.APIGroups, []string{"resource.k8s.io"}) || !slices.Equal(r.APIVersions, []string{"v1"}) ||
				!slices.Equal(r.Resources, []string{"resourceclaims", "resourceclaimtemplates"}) ||
				!slices.Equal(r.Operations, []admissionv1.OperationType{admissionv1.Create, admissionv1.Update}) {
				t.Errorf("rule %+v", r.Rule)
			}
			if !slices.Equal(bnd.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
				t.Errorf("binding actions %v, want [Deny]", bnd.Spec.ValidationActions)
			}
			if name == "sriov-dra-claims" {
				if pol.Spec.ParamKind != nil || bnd.Spec.ParamRef != nil {
					t.Error("sriov-dra-claims must not depend on a param")
				}
				return
			}
			if pk := pol.Spec.ParamKind; pk == nil || pk.APIVersion != "resource.k8s.io/v1" || pk.Kind != "DeviceClass" {
				t.Errorf("paramKind %+v, want resource.k8s.io/v1 DeviceClass", pk)
			}
			pr := bnd.Spec.ParamRef
			if pr == nil || pr.Selector == nil || pr.Selector.MatchLabels[claimLabel] != "true" || len(pr.Selector.MatchLabels) != 1 ||
				pr.ParameterNotFoundAction == nil || *pr.ParameterNotFoundAction != admissionv1.AllowAction || pr.Name != "" {
				t.Errorf("paramRef %+v, want the selector %s=true and parameterNotFoundAction Allow", pr, claimLabel)
			}
		})
	}
	n := 0
	for _, doc := range docs(t, "../base/deviceclasses.yaml") {
		var dc resourceapi.DeviceClass
		if err := yaml.UnmarshalStrict(doc, &dc); err != nil {
			t.Fatal(err)
		}
		n++
		if dc.Labels[claimLabel] != "true" {
			t.Errorf("shipped DeviceClass %s lacks the label %s: \"true\"", dc.Name, claimLabel)
		}
	}
	if n < 4 {
		t.Errorf("%d shipped DeviceClasses, want 4", n)
	}
}

// claimOnNodes is a claim allocated with sriov.dra.dev devices of these
// nodes' pools (none: not allocated), with optional status.devices entries
// "driver/pool/device".
func claimOnNodes(t *testing.T, nodes []string, entries ...string) map[string]any {
	t.Helper()
	c := obj(t, "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: c, namespace: tenant}\nspec: {}\n")
	status := map[string]any{}
	if nodes != nil {
		var results []any
		for i, n := range nodes {
			results = append(results, map[string]any{"request": "vf", "driver": "sriov.dra.dev", "pool": n, "device": "dev" + string(rune('0'+i))})
		}
		results = append(results, map[string]any{"request": "gpu", "driver": "gpu.example.com", "pool": "x", "device": "g0"})
		status["allocation"] = map[string]any{"devices": map[string]any{"results": results}}
		status["reservedFor"] = []any{map[string]any{"resource": "pods", "name": "p", "uid": "1"}}
	}
	if len(entries) > 0 {
		var ds []any
		for _, e := range entries {
			p := strings.Split(e, "/")
			ds = append(ds, map[string]any{"driver": p[0], "pool": p[1], "device": p[2], "conditions": []any{map[string]any{"type": "Ready", "status": "True"}}})
		}
		status["devices"] = ds
	}
	c["status"] = status
	return c
}

func TestClaimStatusPolicy(t *testing.T) {
	pol, bnd := load(t, statusFile, "sriov-dra-resourceclaim-status")
	e := newEvaluator(t, pol)
	own := []string{"a"}
	tests := []struct {
		name      string
		user      string
		tokenNode string
		old, new  map[string]any
		want      string
	}{
		{name: "its node's claim", user: driverUser, tokenNode: "a", old: claimOnNodes(t, own), new: claimOnNodes(t, own, "sriov.dra.dev/a/dev0")},
		{name: "clear its entries", user: driverUser, tokenNode: "a", old: claimOnNodes(t, own, "sriov.dra.dev/a/dev0"), new: claimOnNodes(t, own)},
		{name: "another node's claim", user: driverUser, tokenNode: "a", old: claimOnNodes(t, []string{"b"}), new: claimOnNodes(t, []string{"b"}, "sriov.dra.dev/b/dev0"),
			want: "sriov-dra on node a may only write the status of claims allocated on node a; claim tenant/c has sriov.dra.dev devices of node b"},
		{name: "clear another node's entries", user: driverUser, tokenNode: "a", old: claimOnNodes(t, []string{"b"}, "sriov.dra.dev/b/dev0"), new: claimOnNodes(t, []string{"b"}),
			want: "sriov-dra on node a may only write the status of claims allocated on node a"},
		{name: "a claim with devices of two nodes", user: driverUser, tokenNode: "b", old: claimOnNodes(t, []string{"a", "b"}), new: claimOnNodes(t, []string{"a", "b"}, "sriov.dra.dev/b/dev1")},
		{name: "a deallocated claim: leave no entries", user: driverUser, tokenNode: "a", old: claimOnNodes(t, nil), new: claimOnNodes(t, nil)},
		{name: "a deallocated claim: add entries", user: driverUser, tokenNode: "a", old: claimOnNodes(t, nil), new: claimOnNodes(t, nil, "sriov.dra.dev/a/dev0"),
			want: "sriov-dra on node a may only write the status of claims allocated on node a; claim tenant/c has no sriov.dra.dev device"},
		{name: "another driver's entries", user: driverUser, tokenNode: "a", old: claimOnNodes(t, own), new: claimOnNodes(t, own, "gpu.example.com/x/g0"),
			want: "the sriov-dra service account may change only its own entries in status.devices"},
		{name: "the allocation", user: driverUser, tokenNode: "a", old: claimOnNodes(t, own), new: claimOnNodes(t, []string{"a", "a"}),
			want: "the sriov-dra service account may change only its own entries"},
		{name: "the consumers", user: driverUser, tokenNode: "a", old: claimOnNodes(t, own), new: func() map[string]any {
			c := claimOnNodes(t, own)
			delete(c["status"].(map[string]any), "reservedFor")
			return c
		}(), want: "the sriov-dra service account may change only its own entries in status.devices, not status.allocation, status.reservedFor"},
		{name: "a token without a node", user: driverUser, old: claimOnNodes(t, own), new: claimOnNodes(t, own, "sriov.dra.dev/a/dev0"),
			want: "the sriov-dra service account may write claim status only with a token bound to a pod on a node"},
		{name: "another user", user: "system:serviceaccount:kube-system:resourceclaim-controller", tokenNode: "a", old: claimOnNodes(t, []string{"b"}), new: claimOnNodes(t, nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			req := request("UPDATE", tc.user, tc.tokenNode)
			req["resource"] = map[string]any{"group": "resource.k8s.io", "version": "v1", "resource": "resourceclaims"}
			req["subResource"] = "status"
			checkMessage(t, e.admit(req, tc.new, tc.old), tc.want)
		})
	}

	r := pol.Spec.MatchConstraints.ResourceRules
	if len(r) != 1 || !slices.Equal(r[0].Resources, []string{"resourceclaims/status"}) ||
		!slices.Equal(r[0].Operations, []admissionv1.OperationType{admissionv1.Update}) {
		t.Errorf("rules %+v, want UPDATE of resourceclaims/status (patches are updates to admission)", r)
	}
	if pol.Spec.FailurePolicy == nil || *pol.Spec.FailurePolicy != admissionv1.Fail ||
		!slices.Equal(bnd.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
		t.Error("the status policy must fail closed and deny")
	}
}

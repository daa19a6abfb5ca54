//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
)

// The admission policies of deployments/policy.
var policyNames = []string{
	"sriov-dra-resourceslices", "sriov-dra-resourceclaim-status", "sriov-dra-claims", "sriov-dra-claim-classes",
}

const (
	claimsPolicy     = "sriov-dra-claims"
	classPolicy      = "sriov-dra-claim-classes"
	statusPolicy     = "sriov-dra-resourceclaim-status"
	claimPolicyLabel = "sriov.dra.dev/claim-policy"
	ibClass          = "vf-infiniband.sriov.dra.dev"
)

// tenant returns a client of a namespace user: a ServiceAccount of the
// test's namespace, bound to a Role that allows claims, claim templates
// and pods there and reading events, used through its own token (so none
// of the admin's rights reach its requests).
func (e *env) tenant(t *testing.T) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	const name = "tenant"
	if _, err := e.cs.CoreV1().ServiceAccounts(e.namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("tenant service account: %v", err)
	}
	rw := []string{"create", "get", "list", "watch", "delete"}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"resource.k8s.io"}, Resources: []string{"resourceclaims", "resourceclaimtemplates"}, Verbs: rw},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: rw},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	if _, err := e.cs.RbacV1().Roles(e.namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("tenant role: %v", err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: e.namespace}},
	}
	if _, err := e.cs.RbacV1().RoleBindings(e.namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("tenant role binding: %v", err)
	}
	tr, err := e.cs.CoreV1().ServiceAccounts(e.namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("tenant token: %v", err)
	}
	cs := e.withToken(t, tr.Status.Token)
	// RBAC reaches the role's objects only after the binding is in the
	// authorizer's cache.
	waitFor(t, 30*time.Second, "tenant RBAC", func() (bool, error) {
		_, err := cs.ResourceV1().ResourceClaimTemplates(e.namespace).List(ctx, metav1.ListOptions{})
		return err == nil, err
	})
	return cs
}

// deviceClass creates an admin DeviceClass selecting the simulated
// Ethernet VFs, with one VfConfig of these parameters (none: no config),
// labeled for the claim admission policy or not; deleted when the test ends.
func (e *env) deviceClass(t *testing.T, name string, labeled bool, params map[string]any) {
	t.Helper()
	dc := &resourceapi.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourceapi.DeviceClassSpec{Selectors: []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{
			Expression: `device.driver == 'sriov.dra.dev' && device.attributes['sriov.dra.dev'].kind == 'vf' && ` +
				`'linkType' in device.attributes['sriov.dra.dev'] && device.attributes['sriov.dra.dev'].linkType == 'ethernet'`,
		}}}},
	}
	if labeled {
		dc.Labels = map[string]string{claimPolicyLabel: "true"}
	}
	if params != nil {
		dc.Spec.Config = []resourceapi.DeviceClassConfiguration{{DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: config("VfConfig", params)}}}
	}
	ctx := context.Background()
	if _, err := e.cs.ResourceV1().DeviceClasses().Create(ctx, dc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create DeviceClass %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = e.cs.ResourceV1().DeviceClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// claimSpec is one request "dev" of the class and one config for it; with
// firstAvailable the request has subrequests "other" (the shipped Ethernet
// class) and "mine" (the class), and the config names "dev/mine".
func claimSpec(class string, params map[string]any, firstAvailable bool) resourceapi.ResourceClaimSpec {
	req := resourceapi.DeviceRequest{Name: "dev", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: class}}
	target := "dev"
	if firstAvailable {
		req = resourceapi.DeviceRequest{Name: "dev", FirstAvailable: []resourceapi.DeviceSubRequest{
			{Name: "other", DeviceClassName: vfClass}, {Name: "mine", DeviceClassName: class},
		}}
		target = "dev/mine"
	}
	return resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
		Requests: []resourceapi.DeviceRequest{req},
		Config: []resourceapi.DeviceClaimConfiguration{{
			Requests:            []string{target},
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: config("VfConfig", params)},
		}},
	}}
}

// wantRefused checks that err is the denial of the named policy with a
// message containing each of want.
func wantRefused(t *testing.T, what string, err error, policy string, want ...string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: accepted, want refused by %s", what, policy)
		return
	case !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err):
		t.Errorf("%s: %v, want a denial by %s", what, err, policy)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, "ValidatingAdmissionPolicy '"+policy+"'") {
		t.Errorf("%s: refused by something else than %s: %s", what, policy, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: message %q lacks %q", what, msg, w)
		}
	}
	t.Logf("%s: refused: %s", what, msg)
}

// checkPolicyTypes waits for the API server's type check of each policy
// and fails on any warning (a wrong field name is only a warning there,
// and then a runtime error that denies every request the policy matches).
func (e *env) checkPolicyTypes(t *testing.T, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		waitFor(t, 30*time.Second, "type check of policy "+name, func() (bool, error) {
			p, err := e.cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if p.Status.ObservedGeneration != p.Generation || p.Status.TypeChecking == nil {
				return false, nil
			}
			for _, w := range p.Status.TypeChecking.ExpressionWarnings {
				t.Errorf("policy %s type check: %s: %s", name, w.FieldRef, w.Warning)
			}
			return true, nil
		})
	}
}

// hostLinks is what the host shows of the simulated netdevs: name, MAC,
// MTU, up or not. A refused attack must leave it as it was.
func hostLinks(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	names := []string{simPF, simPassPF}
	for i := 0; i < simVFs; i++ {
		names = append(names, fmt.Sprintf("%s%d", simVFPrefix, i))
	}
	for _, n := range names {
		l, err := netlink.LinkByName(n)
		if err != nil {
			out[n] = "missing"
			continue
		}
		a := l.Attrs()
		out[n] = fmt.Sprintf("mac=%s mtu=%d up=%v", a.HardwareAddr, a.MTU, a.Flags&net.FlagUp != 0)
	}
	return out
}

// warningOn waits for a Warning Event on the claim and returns its message.
func (e *env) warningOn(t *testing.T, cs kubernetes.Interface, claim string) string {
	t.Helper()
	var msg string
	waitFor(t, 90*time.Second, "Warning event on claim "+claim, func() (bool, error) {
		evs, err := cs.CoreV1().Events(e.namespace).List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=ResourceClaim,involvedObject.name=" + claim,
		})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Type == corev1.EventTypeWarning {
				msg = ev.Reason + ": " + ev.Message
				return true, nil
			}
		}
		return false, nil
	})
	return msg
}

// 13. A hostile tenant: a user with only namespaced RBAC (claims, claim
// templates, pods, reading events in one namespace) tries, through real
// claims and templates, to set what only the admin's DeviceClass may:
// another VLAN than its class pins, spoof checking off, trust on, a
// foreign GUID, an IPAM plugin that reads a host file
// (whereabouts configuration_path), a case variant of host-local's
// dataDir, the bridge plugin, a policy of its own. The admission policies
// refuse each with a message naming the field and the class; where
// admission cannot see the class (a DeviceClass without the policy label)
// Prepare refuses them, with a Warning Event naming the field, and the pod
// never runs with the device. Then a token of the driver's service
// account bound to a pod on another node tries to write the status of a
// claim allocated on this node. The host's links are unchanged
// throughout, and the tenant's own pod-local settings still work.
func TestHostileTenant(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.checkPolicyTypes(t, policyNames...)
	before := hostLinks(t)
	tenant := e.tenant(t)
	suffix := rand.String(4)

	// The tenant's rights end at its namespace.
	probe := &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: "e2e-tenant-class-" + suffix}}
	if _, err := tenant.ResourceV1().DeviceClasses().Create(ctx, probe, metav1.CreateOptions{DryRun: dryRun}); !apierrors.IsForbidden(err) {
		t.Fatalf("the tenant may create a DeviceClass (%v): it is not a namespace user", err)
	}

	// The admin's classes: one pins VLAN 100 (and lets claims set nothing
	// more), one lacks the label, so admission does not check its claims.
	pinned := "e2e-vf-ethernet-vlan100-" + suffix
	e.deviceClass(t, pinned, true, map[string]any{
		"vlan": 100, "spoofChk": true, "trust": false,
		"policy": map[string]any{"claimMaySet": []string{}, "maxMTU": 9000},
	})
	unlabeled := "e2e-vf-ethernet-unlabeled-" + suffix
	e.deviceClass(t, unlabeled, false, nil)
	// The policy sees a new class once its param informer has it.
	waitFor(t, 30*time.Second, "the claim policy to see class "+pinned, func() (bool, error) {
		_, err := tenant.ResourceV1().ResourceClaims(e.namespace).Create(ctx, &resourceapi.ResourceClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: claimSpec(pinned, map[string]any{"vlan": 200}, false),
		}, metav1.CreateOptions{DryRun: dryRun})
		return err != nil, nil
	})

	shadow := "/host/etc/shadow"
	dataDir := filepath.Join(os.TempDir(), "e2e-tenant-datadir-"+suffix)
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	sub := func(class string) string {
		return "spec.spec.devices.config[0]: a claim may not set %s: DeviceClass " + class
	}

	t.Run("refused at admission", func(t *testing.T) {
		tests := []struct {
			name           string
			class          string
			params         map[string]any
			claim          bool // a ResourceClaim, not a template
			firstAvailable bool
			policy         string
			want           []string
		}{
			{name: "VLAN of another class", class: pinned, params: map[string]any{"vlan": 200}, policy: classPolicy,
				want: []string{fmt.Sprintf(sub(pinned), "vlan") + " does not allow it (policy.claimMaySet)"}},
			{name: "VLAN, as a ResourceClaim", class: pinned, params: map[string]any{"vlan": 200}, claim: true, policy: classPolicy,
				want: []string{"spec.devices.config[0]: a claim may not set vlan: DeviceClass " + pinned}},
			{name: "VLAN, through a firstAvailable subrequest", class: pinned, params: map[string]any{"vlan": 200}, firstAvailable: true,
				policy: classPolicy, want: []string{"a claim may not set vlan: DeviceClass " + pinned}},
			{name: "VLAN on the shipped class", class: vfClass, params: map[string]any{"vlan": 100, "vlanQoS": 7}, policy: classPolicy,
				want: []string{fmt.Sprintf(sub(vfClass), "vlan"), fmt.Sprintf(sub(vfClass), "vlanQoS")}},
			{name: "spoof checking off", class: vfClass, params: map[string]any{"spoofChk": false}, policy: classPolicy,
				want: []string{fmt.Sprintf(sub(vfClass), "spoofChk")}},
			{name: "trust on", class: pinned, params: map[string]any{"trust": true}, policy: classPolicy,
				want: []string{fmt.Sprintf(sub(pinned), "trust")}},
			{name: "a foreign GUID", class: ibClass, params: map[string]any{"guid": "0c:42:a1:03:00:11:22:33"}, policy: classPolicy,
				want: []string{fmt.Sprintf(sub(ibClass), "guid")}},
			{name: "the whole PF's bandwidth", class: vfClass, params: map[string]any{"minTxRate": 100000}, policy: classPolicy,
				want: []string{fmt.Sprintf(sub(vfClass), "minTxRate")}},
			{name: "MTU above the class's limit", class: pinned, params: map[string]any{"mtu": 9216}, policy: classPolicy,
				want: []string{"spec.spec.devices.config[0]: mtu 9216 is above 9000, the largest MTU DeviceClass " + pinned + " allows (policy.maxMTU)"}},
			{name: "whereabouts reading a host file", class: vfClass, policy: classPolicy,
				params: map[string]any{"ipam": map[string]any{"type": "whereabouts", "range": "10.9.0.0/24", "configuration_path": shadow}},
				want:   []string{"spec.spec.devices.config[0]: ipam.type whereabouts is not allowed: DeviceClass " + vfClass + " lets claims name only host-local, static (policy.ipam)"}},
			{name: "whereabouts' path key on host-local", class: vfClass, policy: classPolicy,
				params: map[string]any{"ipam": map[string]any{"type": "host-local", "configuration_path": shadow, "ranges": [][]map[string]any{{{"subnet": "10.9.0.0/24"}}}}},
				want:   []string{"a claim may not set ipam.configuration_path for host-local: DeviceClass " + vfClass}},
			{name: "datadir, a case variant of host-local's dataDir", class: vfClass, policy: classPolicy,
				params: map[string]any{"ipam": map[string]any{"type": "host-local", "datadir": dataDir, "ranges": [][]map[string]any{{{"subnet": "10.9.0.0/24"}}}}},
				want:   []string{"spec.spec.devices.config[0]: a claim may not set ipam.datadir for host-local: DeviceClass " + vfClass + " allows only ranges, routes, subnet, rangeStart, rangeEnd, gateway (policy.ipam)"}},
			{name: "bridge as IPAM plugin", class: vfClass, policy: classPolicy,
				params: map[string]any{"ipam": map[string]any{"type": "bridge", "bridge": "cni0"}},
				want:   []string{"ipam.type bridge is not allowed"}},
			{name: "a policy of its own", class: pinned, policy: claimsPolicy,
				params: map[string]any{"policy": map[string]any{"claimMaySet": []string{"vlan"}}},
				want:   []string{"spec.spec.devices.config[0]: a claim may not set policy: only a DeviceClass config sets policy"}},
			{name: "a case variant of a field name", class: pinned, policy: claimsPolicy, params: map[string]any{"VLAN": 200},
				want: []string{"parameters key VLAN differs from the field vlan only in case"}},
		}
		for i, tc := range tests {
			name := fmt.Sprintf("attack-%d", i)
			spec := claimSpec(tc.class, tc.params, tc.firstAvailable)
			var err error
			if tc.claim {
				_, err = tenant.ResourceV1().ResourceClaims(e.namespace).Create(ctx,
					&resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{})
			} else {
				_, err = tenant.ResourceV1().ResourceClaimTemplates(e.namespace).Create(ctx,
					&resourceapi.ResourceClaimTemplate{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: resourceapi.ResourceClaimTemplateSpec{Spec: spec}},
					metav1.CreateOptions{})
			}
			wantRefused(t, tc.name, err, tc.policy, tc.want...)
		}
		// Nothing of it was stored.
		tm, err := e.cs.ResourceV1().ResourceClaimTemplates(e.namespace).List(ctx, metav1.ListOptions{})
		if err != nil || len(tm.Items) != 0 {
			t.Errorf("refused templates stored: %v %v", tm, err)
		}
		cl, err := e.cs.ResourceV1().ResourceClaims(e.namespace).List(ctx, metav1.ListOptions{})
		if err != nil || len(cl.Items) != 0 {
			t.Errorf("refused claims stored: %v %v", cl, err)
		}
	})

	// What the tenant may do still works: pod-local fields on the pinned
	// class are accepted, and a pod with a VF of the shipped class runs
	// (the driver writes its claim status under the status policy).
	var ownClaim *resourceapi.ResourceClaim
	t.Run("allowed", func(t *testing.T) {
		ok := claimSpec(pinned, map[string]any{"ifName": "net1", "mtu": 9000, "ipam": hostLocal("10.9.1.0/24", "", "")}, false)
		if _, err := tenant.ResourceV1().ResourceClaimTemplates(e.namespace).Create(ctx,
			&resourceapi.ResourceClaimTemplate{ObjectMeta: metav1.ObjectMeta{Name: "pinned-ok"}, Spec: resourceapi.ResourceClaimTemplateSpec{Spec: ok}},
			metav1.CreateOptions{DryRun: dryRun}); err != nil {
			t.Errorf("pod-local fields on %s: %v", pinned, err)
		}
		tmpl := &resourceapi.ResourceClaimTemplate{ObjectMeta: metav1.ObjectMeta{Name: "own"}, Spec: resourceapi.ResourceClaimTemplateSpec{Spec: resourceapi.ResourceClaimSpec{
			Devices: resourceapi.DeviceClaim{
				Requests: []resourceapi.DeviceRequest{{Name: "dev", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: vfClass,
					Selectors: []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: vfSelector}}}}}},
				Config: []resourceapi.DeviceClaimConfiguration{{Requests: []string{"dev"}, DeviceConfiguration: resourceapi.DeviceConfiguration{
					Opaque: config("VfConfig", map[string]any{"ifName": "net1", "ipam": hostLocal("10.9.2.0/24", "", "")}),
				}}},
			},
		}}}
		if _, err := tenant.ResourceV1().ResourceClaimTemplates(e.namespace).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
			t.Fatalf("tenant's own template: %v", err)
		}
		e.podAs(t, tenant, "own", "own")
		e.waitRunning(t, "own", 90*time.Second)
		if got := podIPv4(e.exec(t, "own", "ip", "-o", "-4", "addr", "show"), "net1"); len(got) != 1 || !strings.HasPrefix(got[0], "10.9.2.") {
			t.Errorf("tenant's pod: net1 has %v, want one address of 10.9.2.0/24", got)
		}
		waitFor(t, 30*time.Second, "the driver's status entry on the tenant's claim", func() (bool, error) {
			ownClaim = e.claimOf(t, "own")
			return slices.ContainsFunc(ownClaim.Status.Devices, func(d resourceapi.AllocatedDeviceStatus) bool { return d.Driver == driverName }), nil
		})
	})

	// Admission cannot see the claims of a class without the label:
	// Prepare refuses the same attacks, the pod does not run with the
	// device, and the plugin never runs (no dataDir appears).
	t.Run("refused at Prepare", func(t *testing.T) {
		tests := []struct {
			pod    string
			params map[string]any
			want   []string
		}{
			{pod: "vlan", params: map[string]any{"vlan": 200},
				want: []string{"vlan: Forbidden: a claim may not set vlan: DeviceClass \"" + unlabeled + "\" does not allow it (policy.claimMaySet)"}},
			{pod: "datadir", params: map[string]any{"ipam": map[string]any{"type": "host-local", "datadir": dataDir, "ranges": [][]map[string]any{{{"subnet": "10.9.3.0/24"}}}}},
				want: []string{"ipam.datadir", "a claim may not set \"datadir\" for IPAM plugin host-local"}},
			{pod: "whereabouts", params: map[string]any{"ipam": map[string]any{"type": "whereabouts", "range": "10.9.4.0/24", "configuration_path": shadow}},
				want: []string{"ipam.type", "whereabouts"}},
		}
		for _, tc := range tests {
			tmpl := &resourceapi.ResourceClaimTemplate{ObjectMeta: metav1.ObjectMeta{Name: tc.pod},
				Spec: resourceapi.ResourceClaimTemplateSpec{Spec: claimSpec(unlabeled, tc.params, false)}}
			if _, err := tenant.ResourceV1().ResourceClaimTemplates(e.namespace).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
				t.Fatalf("%s: template of the unlabeled class refused at admission: %v", tc.pod, err)
			}
			e.podAs(t, tenant, tc.pod, tc.pod)
		}
		for _, tc := range tests {
			claim := e.claimOf(t, tc.pod)
			msg := e.warningOn(t, tenant, claim.Name)
			t.Logf("%s: %s", tc.pod, msg)
			if !strings.HasPrefix(msg, "PrepareFailed: ") {
				t.Errorf("%s: event %q, want reason PrepareFailed", tc.pod, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%s: event %q lacks %q", tc.pod, msg, w)
				}
			}
			if strings.Contains(msg, "root:") {
				t.Errorf("%s: event quotes a host file: %q", tc.pod, msg)
			}
			if p := e.getPod(t, tc.pod); podReady(p) {
				t.Errorf("%s: the pod runs", tc.pod)
			}
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Errorf("the tenant's datadir %s exists (%v): host-local ran with it", dataDir, err)
		}
	})

	// The driver's token bound to a pod on another node cannot write the
	// status of a claim allocated on this node.
	t.Run("another node's claim status", func(t *testing.T) {
		if ownClaim == nil {
			t.Skip("no allocated claim (allowed failed)")
		}
		sa, driverPod := e.driverServiceAccount(t)
		other := e.fakeNodeToken(t, sa, "e2e-fake-node-"+suffix)
		mine := e.podBoundToken(t, sa, driverPod)
		c, err := e.cs.ResourceV1().ResourceClaims(e.namespace).Get(ctx, ownClaim.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Rewriting the driver's entry (built-in checks on 1.36+ may refuse
		// it first: any denial will do).
		changed := c.DeepCopy()
		for i := range changed.Status.Devices {
			if changed.Status.Devices[i].Driver == driverName {
				changed.Status.Devices[i].NetworkData = &resourceapi.NetworkDeviceData{InterfaceName: "evil0", IPs: []string{"10.0.0.1/32"}}
			}
		}
		_, err = other.ResourceV1().ResourceClaims(e.namespace).UpdateStatus(ctx, changed, metav1.UpdateOptions{DryRun: dryRun})
		if err == nil || !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("another node's token rewrote the claim's status.devices: %v", err)
		} else {
			t.Logf("another node's token rewriting status.devices: refused: %v", err)
		}
		// Any status write, even one no built-in check looks at, is this
		// policy's business.
		_, err = other.ResourceV1().ResourceClaims(e.namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{DryRun: dryRun})
		wantRefused(t, "another node's token writing the status", err, statusPolicy,
			fmt.Sprintf("sriov-dra on node e2e-fake-node-%s may only write the status of claims allocated on node e2e-fake-node-%s; claim %s/%s has sriov.dra.dev devices of node %s",
				suffix, suffix, e.namespace, c.Name, nodeName))
		// This node's driver may.
		if _, err := mine.ResourceV1().ResourceClaims(e.namespace).UpdateStatus(ctx, changed, metav1.UpdateOptions{DryRun: dryRun}); err != nil {
			t.Errorf("the driver's own token writing its node's claim status: %v", err)
		}
	})

	// With the pods gone every VF is back on the host, as it was.
	for _, p := range []string{"own", "vlan", "datadir", "whereabouts"} {
		e.deletePod(t, p)
	}
	waitFor(t, 60*time.Second, "all simulated netdevs back on the host", func() (bool, error) {
		return len(missingHostLinks()) == 0, nil
	})
	if got := hostLinks(t); !maps.Equal(got, before) {
		t.Errorf("the host's links changed:\nbefore %v\nafter  %v", before, got)
	}
}

// podBoundToken is a client with a token of the service account bound to pod.
func (e *env) podBoundToken(t *testing.T, sa string, pod *corev1.Pod) kubernetes.Interface {
	t.Helper()
	tr, err := e.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptrTo(int64(600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s bound to pod %s: %v", sa, pod.Name, err)
	}
	return e.withToken(t, tr.Status.Token)
}

// fakeNodeToken makes a Node object no kubelet serves (without the
// kubernetes.io/os label, so the driver's DaemonSet stays off it), binds a
// pod of the driver's service account to it, and returns a client with a
// token bound to that pod: what a stolen token of the driver on another
// node would be.
func (e *env) fakeNodeToken(t *testing.T, sa, node string) kubernetes.Interface {
	t.Helper()
	ctx := context.Background()
	if _, err := e.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Node %s: %v", node, err)
	}
	t.Cleanup(func() { _ = e.cs.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-token-" + node},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: sa,
			Containers: []corev1.Container{{Name: "c", Image: e.image, ImagePullPolicy: corev1.PullNever}},
		},
	}
	p, err := e.cs.CoreV1().Pods(driverNamespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create a pod of %s on %s: %v", sa, node, err)
	}
	// No kubelet will confirm a graceful deletion: delete it at once.
	t.Cleanup(func() {
		_ = e.cs.CoreV1().Pods(driverNamespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))})
	})
	return e.podBoundToken(t, sa, p)
}

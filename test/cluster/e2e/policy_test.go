//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	driverNamespace = "sriov-dra"
	// The user-info extra a service-account token bound to a pod carries:
	// the node the pod runs on (ServiceAccountTokenPodNodeInfo).
	nodeNameExtra = "authentication.kubernetes.io/node-name"
)

// driverServiceAccount is the service account of the deployed DaemonSet
// (deployments/base), and one of its pods.
func (e *env) driverServiceAccount(t *testing.T) (string, *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	ds, err := e.cs.AppsV1().DaemonSets(driverNamespace).Get(ctx, "sriov-dra", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("driver DaemonSet: %v", err)
	}
	sa := ds.Spec.Template.Spec.ServiceAccountName
	if sa == "" {
		t.Fatal("the driver DaemonSet names no service account")
	}
	pods, err := e.cs.CoreV1().Pods(driverNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=sriov-dra"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no driver pod: %v", err)
	}
	return sa, &pods.Items[0]
}

// asServiceAccount is a client impersonating the driver's service account.
// A real pod-bound token authenticates as this user name and groups, plus
// the extras authentication.kubernetes.io/{pod-name,pod-uid,node-name,
// node-uid,credential-id}; of those the policy reads only node-name, so
// impersonation sets just that one (node "" sets none, as for a token not
// bound to a pod). The admin of the harness (system:masters) may
// impersonate users, groups and extras.
func (e *env) asServiceAccount(t *testing.T, sa, node string) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(e.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + driverNamespace + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + driverNamespace, "system:authenticated"},
	}
	if node != "" {
		cfg.Impersonate.Extra = map[string][]string{nodeNameExtra: {node}}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// withToken is a client that authenticates with a bearer token only.
func (e *env) withToken(t *testing.T, token string) kubernetes.Interface {
	t.Helper()
	cfg := rest.AnonymousClientConfig(e.cfg)
	cfg.BearerToken = token
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// testSlice is a one-device ResourceSlice of the driver; node "" makes it
// a slice for all nodes.
func testSlice(name, node string) *resourceapi.ResourceSlice {
	s := &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourceapi.ResourceSliceSpec{
			Driver:  driverName,
			Pool:    resourceapi.ResourcePool{Name: "e2e-policy", Generation: 1, ResourceSliceCount: 1},
			Devices: []resourceapi.Device{{Name: "e2e-dev0"}},
		},
	}
	if node != "" {
		s.Spec.NodeName = &node
	} else {
		all := true
		s.Spec.AllNodes = &all
	}
	return s
}

var dryRun = []string{metav1.DryRunAll}

// wantDenied checks err is the policy's denial carrying msg.
func wantDenied(t *testing.T, what string, err error, msg string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: allowed, want denied by the ValidatingAdmissionPolicy", what)
	case !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err):
		t.Errorf("%s: %v, want a policy denial", what, err)
	case !strings.Contains(err.Error(), "sriov-dra-resourceslices") || !strings.Contains(err.Error(), msg):
		t.Errorf("%s: denied with %q, want the policy sriov-dra-resourceslices saying %q", what, err, msg)
	default:
		t.Logf("%s: denied: %v", what, err)
	}
}

// 9. The ValidatingAdmissionPolicy of deployments/policy keeps the driver's
// service account to its own node's ResourceSlices (all requests are dry
// runs: admission runs, nothing is stored), and the ClusterRole of
// deployments/base refuses what the driver must not do.
func TestResourceSlicePolicyAndRBAC(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	sa, driverPod := e.driverServiceAccount(t)
	create := func(cs kubernetes.Interface, s *resourceapi.ResourceSlice) error {
		_, err := cs.ResourceV1().ResourceSlices().Create(ctx, s, metav1.CreateOptions{DryRun: dryRun})
		return err
	}

	// The API server type-checked every expression of the policy without
	// a warning (a wrong field name is only a warning there, and then a
	// runtime error that denies everything).
	waitFor(t, 30*time.Second, "type check of the policy", func() (bool, error) {
		p, err := e.cs.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "sriov-dra-resourceslices", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.ObservedGeneration != p.Generation || p.Status.TypeChecking == nil {
			return false, nil
		}
		for _, w := range p.Status.TypeChecking.ExpressionWarnings {
			t.Errorf("policy type check: %s: %s", w.FieldRef, w.Warning)
		}
		return true, nil
	})

	t.Run("impersonated", func(t *testing.T) {
		onNode := e.asServiceAccount(t, sa, nodeName)
		if err := create(onNode, testSlice("e2e-policy-own", nodeName)); err != nil {
			t.Errorf("slice for its own node %s: %v", nodeName, err)
		}
		wantDenied(t, "slice for node other-node", create(onNode, testSlice("e2e-policy-other", "other-node")),
			"sriov-dra on node localhost may only write ResourceSlices with spec.nodeName localhost, not other-node")
		wantDenied(t, "slice for all nodes", create(onNode, testSlice("e2e-policy-all", "")),
			"not a slice without spec.nodeName")
		other := testSlice("e2e-policy-other-driver", nodeName)
		other.Spec.Driver = "gpu.example.com"
		wantDenied(t, "another driver's slice on its own node", create(onNode, other),
			"sriov-dra may only write ResourceSlices of driver sriov.dra.dev, not of gpu.example.com")
		wantDenied(t, "token without a node", create(e.asServiceAccount(t, sa, ""), testSlice("e2e-policy-nonode", nodeName)),
			"the token carries no authentication.kubernetes.io/node-name")

		// The driver's real slice of this node: its own node may delete
		// it, another node's driver may not.
		slices, err := e.cs.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{
			FieldSelector: "spec.driver=" + driverName + ",spec.nodeName=" + nodeName,
		})
		if err != nil || len(slices.Items) == 0 {
			t.Fatalf("no published slice of %s: %v", nodeName, err)
		}
		real := slices.Items[0].Name
		if err := onNode.ResourceV1().ResourceSlices().Delete(ctx, real, metav1.DeleteOptions{DryRun: dryRun}); err != nil {
			t.Errorf("delete its own node's slice %s: %v", real, err)
		}
		err = e.asServiceAccount(t, sa, "other-node").ResourceV1().ResourceSlices().Delete(ctx, real, metav1.DeleteOptions{DryRun: dryRun})
		wantDenied(t, "delete the slice of localhost from other-node", err,
			"sriov-dra on node other-node may only change or delete ResourceSlices of node other-node, not of node localhost")

		// The policy matches only the driver: the admin is not limited.
		if err := create(e.cs, testSlice("e2e-policy-admin", "other-node")); err != nil {
			t.Errorf("admin creating a slice for other-node: %v", err)
		}
	})

	// The same with a real token bound to the driver's pod, as the driver
	// has: the API server puts the pod's node into the token's user info.
	t.Run("pod-bound token", func(t *testing.T) {
		tr, err := e.cs.CoreV1().ServiceAccounts(driverNamespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{
				ExpirationSeconds: ptrTo(int64(600)),
				BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: driverPod.Name, UID: driverPod.UID},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("token for %s bound to pod %s: %v", sa, driverPod.Name, err)
		}
		cs := e.withToken(t, tr.Status.Token)
		if err := create(cs, testSlice("e2e-policy-token-own", nodeName)); err != nil {
			t.Errorf("pod-bound token, slice for its node: %v", err)
		}
		wantDenied(t, "pod-bound token, slice for other-node", create(cs, testSlice("e2e-policy-token-other", "other-node")),
			"may only write ResourceSlices with spec.nodeName localhost, not other-node")

		// A token bound to no pod has no node: denied.
		tr, err = e.cs.CoreV1().ServiceAccounts(driverNamespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(600))},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("unbound token for %s: %v", sa, err)
		}
		wantDenied(t, "unbound token", create(e.withToken(t, tr.Status.Token), testSlice("e2e-policy-token-nonode", nodeName)),
			"the token carries no authentication.kubernetes.io/node-name")
	})

	t.Run("RBAC", func(t *testing.T) {
		cs := e.asServiceAccount(t, sa, nodeName)
		probe := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-rbac-probe"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: e.image}}},
		}
		claim := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: "e2e-rbac-probe"}}
		forbidden := map[string]func() error{
			"delete its own pod": func() error {
				return cs.CoreV1().Pods(driverNamespace).Delete(ctx, driverPod.Name, metav1.DeleteOptions{DryRun: dryRun})
			},
			"create a pod": func() error {
				_, err := cs.CoreV1().Pods(e.namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: dryRun})
				return err
			},
			"list secrets": func() error {
				_, err := cs.CoreV1().Secrets(driverNamespace).List(ctx, metav1.ListOptions{})
				return err
			},
			"update its node": func() error {
				n, err := e.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
				if err != nil {
					return err
				}
				_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{DryRun: dryRun})
				return err
			},
			"create a ResourceClaim": func() error {
				_, err := cs.ResourceV1().ResourceClaims(e.namespace).Create(ctx, claim, metav1.CreateOptions{DryRun: dryRun})
				return err
			},
			"delete a DeviceClass": func() error {
				return cs.ResourceV1().DeviceClasses().Delete(ctx, vfClass, metav1.DeleteOptions{DryRun: dryRun})
			},
		}
		for what, call := range forbidden {
			if err := call(); !apierrors.IsForbidden(err) {
				t.Errorf("driver service account may %s: got %v, want Forbidden", what, err)
			}
		}
		allowed := map[string]func() error{
			"get its node": func() error {
				_, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
				return err
			},
			"list ResourceClaims": func() error {
				_, err := cs.ResourceV1().ResourceClaims("").List(ctx, metav1.ListOptions{Limit: 1})
				return err
			},
			"watch ResourceSlices": func() error {
				w, err := cs.ResourceV1().ResourceSlices().Watch(ctx, metav1.ListOptions{TimeoutSeconds: ptrTo(int64(1))})
				if err == nil {
					w.Stop()
				}
				return err
			},
			"create an Event": func() error {
				ev := &corev1.Event{
					ObjectMeta:     metav1.ObjectMeta{Name: "e2e-rbac-probe", Namespace: e.namespace},
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: e.namespace, Name: "x"},
					Reason:         "Probe", Message: "probe", Type: corev1.EventTypeNormal,
					FirstTimestamp: metav1.NewTime(time.Now()), LastTimestamp: metav1.NewTime(time.Now()), Count: 1,
				}
				_, err := cs.CoreV1().Events(e.namespace).Create(ctx, ev, metav1.CreateOptions{DryRun: dryRun})
				return err
			},
		}
		for what, call := range allowed {
			if err := call(); err != nil {
				t.Errorf("driver service account cannot %s: %v", what, err)
			}
		}
	})
}

func ptrTo[T any](v T) *T { return &v }

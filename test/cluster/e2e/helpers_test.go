//go:build e2e

// Package e2e runs the driver on the harness's one-node cluster (real
// apiserver, scheduler, kubelet, containerd with NRI) on a simulated SR-IOV
// node whose VF netdevs are real veth links. Run it with `make e2e`, which
// brings the cluster up, deploys the driver and sets the environment:
//
//	E2E_KUBECONFIG  admin kubeconfig of the cluster
//	E2E_KUBECTL     kubectl binary (for exec)
//	E2E_TEST_IMAGE  the locally imported busybox image
//	E2E_CDI_DIR     the CDI spec folder containerd reads
//	E2E_BINARY      bin/sriov-dra (the `devices` subcommand is run against the cluster)
//	E2E_HELM_MANIFEST  the Helm chart rendered for its default values
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	driverName = "sriov.dra.dev"
	nodeName   = "localhost"
	// The simulated node (test/cluster/simnode): Ethernet PF sdpf0 with VFs
	// sdvf0..sdvf3 on NUMA 0, and PF sdpf1 (no VFs) on NUMA 1, which
	// test/cluster/driver.sh opts in for passthrough (PASSTHROUGH_PFS).
	simPF       = "sdpf0"
	simPassPF   = "sdpf1"
	simVFPrefix = "sdvf"
	simVFs      = 4
)

type env struct {
	cs        kubernetes.Interface
	cfg       *rest.Config
	kubectl   string
	config    string
	image     string
	cdiDir    string
	namespace string
}

func setup(t *testing.T) *env {
	t.Helper()
	cfgPath := os.Getenv("E2E_KUBECONFIG")
	if cfgPath == "" {
		t.Skip("E2E_KUBECONFIG not set: run through `make e2e` (test/cluster/e2e.sh)")
	}
	if os.Geteuid() != 0 {
		t.Skip("e2e checks host links through netlink and needs root")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cfgPath)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", cfgPath, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		cs: cs, cfg: cfg, config: cfgPath, kubectl: os.Getenv("E2E_KUBECTL"),
		image: os.Getenv("E2E_TEST_IMAGE"), cdiDir: os.Getenv("E2E_CDI_DIR"),
	}
	if e.kubectl == "" || e.image == "" {
		t.Fatal("E2E_KUBECTL and E2E_TEST_IMAGE must be set")
	}
	e.namespace = "e2e-" + strings.ToLower(strings.ReplaceAll(t.Name(), "_", "-"))
	if len(e.namespace) > 50 {
		e.namespace = e.namespace[:50]
	}
	e.namespace = strings.TrimRight(e.namespace, "-") + "-" + rand.String(4)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	// The default service account must exist before pods can be created.
	waitFor(t, 30*time.Second, "default service account", func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(e.namespace).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	t.Cleanup(func() { e.deleteNamespace(t) })
	return e
}

// deleteNamespace deletes the test's pods first and waits for them to be
// gone (so the devices are back on the host for the next test), then the
// namespace.
func (e *env) deleteNamespace(t *testing.T) {
	ctx := context.Background()
	if t.Failed() {
		e.dumpState(t)
	}
	_ = e.cs.CoreV1().Pods(e.namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := e.cs.CoreV1().Pods(e.namespace).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("pods of %s not gone after 90 s", e.namespace)
	}
	_ = e.cs.CoreV1().Namespaces().Delete(ctx, e.namespace, metav1.DeleteOptions{})
	// Claims are deleted with their pods (owner references); wait until the
	// driver has unprepared every device: all VF links back on the host.
	waitFor(t, 60*time.Second, "all simulated netdevs back on the host", func() (bool, error) {
		return len(missingHostLinks()) == 0, nil
	})
}

func (e *env) dumpState(t *testing.T) {
	for _, args := range [][]string{
		{"get", "pods,resourceclaims", "-n", e.namespace, "-o", "wide"},
		{"get", "events", "-n", e.namespace, "--sort-by=.lastTimestamp"},
		{"logs", "-n", "sriov-dra", "-l", "app.kubernetes.io/name=sriov-dra", "--tail=60"},
	} {
		out, _ := e.kubectlOut(args...)
		t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, err := cond()
		last = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, last)
	}
}

func (e *env) kubectlOut(args ...string) (string, error) {
	cmd := exec.Command(e.kubectl, append([]string{"--kubeconfig", e.config}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// exec runs a command in the pod's container and returns its output.
func (e *env) exec(t *testing.T, pod string, cmd ...string) string {
	t.Helper()
	out, err := e.kubectlOut(append([]string{"exec", "-n", e.namespace, pod, "--"}, cmd...)...)
	if err != nil {
		t.Fatalf("exec %v in %s: %v\n%s", cmd, pod, err, out)
	}
	return out
}

// vfConfig is a VfConfig (or PfConfig) as opaque parameters.
func config(kind string, fields map[string]any) *resourceapi.OpaqueDeviceConfiguration {
	obj := map[string]any{"apiVersion": "sriov.dra.dev/v1alpha1", "kind": kind}
	for k, v := range fields {
		obj[k] = v
	}
	raw, _ := json.Marshal(obj)
	return &resourceapi.OpaqueDeviceConfiguration{Driver: driverName, Parameters: runtime.RawExtension{Raw: raw}}
}

func hostLocal(subnet, start, end string) map[string]any {
	r := map[string]any{"subnet": subnet}
	if start != "" {
		r["rangeStart"], r["rangeEnd"] = start, end
	}
	return map[string]any{"type": "host-local", "ranges": [][]map[string]any{{r}}}
}

// template makes a ResourceClaimTemplate with one request of the class,
// an optional CEL selector and config.
func (e *env) template(t *testing.T, name, class, cel string, cfg *resourceapi.OpaqueDeviceConfiguration) {
	t.Helper()
	req := resourceapi.DeviceRequest{Name: "dev", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: class}}
	if cel != "" {
		req.Exactly.Selectors = []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: cel}}}
	}
	spec := resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{req}}}
	if cfg != nil {
		spec.Devices.Config = []resourceapi.DeviceClaimConfiguration{{
			Requests:            []string{"dev"},
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: cfg},
		}}
	}
	tmpl := &resourceapi.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace},
		Spec:       resourceapi.ResourceClaimTemplateSpec{Spec: spec},
	}
	if _, err := e.cs.ResourceV1().ResourceClaimTemplates(e.namespace).Create(context.Background(), tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ResourceClaimTemplate %s: %v", name, err)
	}
}

// pod creates a pod using the template's claim (no claim when template is "").
func (e *env) pod(t *testing.T, name, template string) {
	t.Helper()
	e.podAs(t, e.cs, name, template)
}

// podAs is pod, created as the user of cs.
func (e *env) podAs(t *testing.T, cs kubernetes.Interface, name, template string) {
	t.Helper()
	grace := int64(2)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.namespace},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			DNSPolicy:                     corev1.DNSNone,
			DNSConfig:                     &corev1.PodDNSConfig{Nameservers: []string{"127.0.0.1"}},
			Containers: []corev1.Container{{
				Name: "app", Image: e.image, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"},
			}},
		},
	}
	if template != "" {
		tmpl := template
		p.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "net", ResourceClaimTemplateName: &tmpl}}
		p.Spec.Containers[0].Resources.Claims = []corev1.ResourceClaim{{Name: "net"}}
	}
	if _, err := cs.CoreV1().Pods(e.namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", name, err)
	}
}

// waitNetworkData waits up to 30s for the driver to write the status of
// device, with networkData, into claim's status and returns it.
func (e *env) waitNetworkData(t *testing.T, claim, device string) *resourceapi.AllocatedDeviceStatus {
	t.Helper()
	var st *resourceapi.AllocatedDeviceStatus
	waitFor(t, 30*time.Second, "claim status.devices with networkData", func() (bool, error) {
		c, err := e.cs.ResourceV1().ResourceClaims(e.namespace).Get(context.Background(), claim, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for i := range c.Status.Devices {
			if c.Status.Devices[i].Device == device && c.Status.Devices[i].NetworkData != nil {
				st = &c.Status.Devices[i]
				return true, nil
			}
		}
		return false, nil
	})
	return st
}

func (e *env) getPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p, err := e.cs.CoreV1().Pods(e.namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	return p
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (e *env) waitRunning(t *testing.T, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	waitFor(t, timeout, "pod "+name+" Running", func() (bool, error) {
		var err error
		p, err = e.cs.CoreV1().Pods(e.namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, fmt.Errorf("pod failed: %s", p.Status.Message)
		}
		return podReady(p), nil
	})
	return p
}

func (e *env) deletePod(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	if err := e.cs.CoreV1().Pods(e.namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete pod %s: %v", name, err)
	}
	waitFor(t, 60*time.Second, "pod "+name+" gone", func() (bool, error) {
		_, err := e.cs.CoreV1().Pods(e.namespace).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// claimOf returns the pod's generated ResourceClaim.
func (e *env) claimOf(t *testing.T, pod string) *resourceapi.ResourceClaim {
	t.Helper()
	var name string
	waitFor(t, 30*time.Second, "claim of "+pod, func() (bool, error) {
		p := e.getPod(t, pod)
		for _, s := range p.Status.ResourceClaimStatuses {
			if s.ResourceClaimName != nil {
				name = *s.ResourceClaimName
				return true, nil
			}
		}
		return false, nil
	})
	c, err := e.cs.ResourceV1().ResourceClaims(e.namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get claim %s: %v", name, err)
	}
	return c
}

// publishedDevices returns this driver's devices on the node, by name.
func publishedDevices(t *testing.T, cs kubernetes.Interface) map[string]resourceapi.Device {
	t.Helper()
	slices, err := cs.ResourceV1().ResourceSlices().List(context.Background(), metav1.ListOptions{
		FieldSelector: "spec.driver=" + driverName + ",spec.nodeName=" + nodeName,
	})
	if err != nil {
		t.Fatalf("list ResourceSlices: %v", err)
	}
	out := map[string]resourceapi.Device{}
	for _, s := range slices.Items {
		for _, d := range s.Spec.Devices {
			out[d.Name] = d
		}
	}
	return out
}

func strAttr(d resourceapi.Device, name string) string {
	if a, ok := d.Attributes[resourceapi.QualifiedName(driverName+"/"+name)]; ok && a.StringValue != nil {
		return *a.StringValue
	}
	return ""
}

// allocatedIfName is the host netdev name of the claim's first device.
func allocatedIfName(t *testing.T, cs kubernetes.Interface, c *resourceapi.ResourceClaim) (string, string) {
	t.Helper()
	if c.Status.Allocation == nil || len(c.Status.Allocation.Devices.Results) == 0 {
		t.Fatalf("claim %s is not allocated", c.Name)
	}
	r := c.Status.Allocation.Devices.Results[0]
	d, ok := publishedDevices(t, cs)[r.Device]
	if !ok {
		t.Fatalf("allocated device %s is not published", r.Device)
	}
	return r.Device, strAttr(d, "ifName")
}

// missingHostLinks lists the simulated netdevs that are not in the host netns.
func missingHostLinks() []string {
	want := []string{simPF, simPassPF}
	for i := 0; i < simVFs; i++ {
		want = append(want, fmt.Sprintf("%s%d", simVFPrefix, i))
	}
	var missing []string
	for _, n := range want {
		if _, err := netlink.LinkByName(n); err != nil {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	return missing
}

// podIPv4 returns "addr/len" of the interface in the pod, from `ip -o -4 addr`.
func podIPv4(out, ifName string) []string {
	var addrs []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// "3: net1    inet 192.168.50.10/24 brd ... scope global net1"
		if len(f) >= 4 && strings.TrimSuffix(f[1], ":") == ifName && f[2] == "inet" {
			addrs = append(addrs, f[3])
		}
	}
	return addrs
}

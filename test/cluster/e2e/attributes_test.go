//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Standard attribute names (k8s.io/dynamic-resource-allocation/deviceattribute).
const (
	attrPCIeRoot = "resource.kubernetes.io/pcieRoot"
	attrPCIBusID = "resource.kubernetes.io/pciBusID"
	attrNUMANode = "resource.kubernetes.io/numaNode"
)

// waitUnschedulable waits until the scheduler reports the pod
// unschedulable, then checks it stays Pending with its claim unallocated.
func (e *env) waitUnschedulable(t *testing.T, pod string) {
	t.Helper()
	waitFor(t, 60*time.Second, "pod "+pod+" reported unschedulable", func() (bool, error) {
		for _, c := range e.getPod(t, pod).Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return true, nil
			}
		}
		return false, nil
	})
	time.Sleep(3 * time.Second)
	if p := e.getPod(t, pod); p.Status.Phase != corev1.PodPending {
		t.Errorf("pod %s is %s, want Pending", pod, p.Status.Phase)
	}
	if c := e.claimOf(t, pod); c.Status.Allocation != nil {
		t.Errorf("claim %s of pod %s was allocated %v", c.Name, pod, c.Status.Allocation.Devices.Results)
	}
}

// Standard attributes: every published device carries pciBusID (its PCI
// address) and numaNode (its NUMA node) under resource.kubernetes.io,
// besides pcieRoot; CEL selectors on them are honoured by the real
// scheduler (a pciBusID picks exactly that VF, a NUMA node no device is on
// leaves the pod pending), and the example that constrains two requests
// with matchAttribute on pcieRoot and numaNode runs, while the same
// constraint across devices on different NUMA nodes cannot be met.
func TestStandardAttributes(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	devs := publishedDevices(t, e.cs)
	byIf := map[string]resourceapi.Device{}
	for _, d := range devs {
		byIf[strAttr(d, "ifName")] = d
		bus := d.Attributes[attrPCIBusID]
		if bus.StringValue == nil || *bus.StringValue != strAttr(d, "pciAddress") {
			t.Errorf("%s: %s = %v, want the device's PCI address %q", d.Name, attrPCIBusID, bus.StringValue, strAttr(d, "pciAddress"))
		}
		own, std := d.Attributes[driverName+"/numaNode"], d.Attributes[attrNUMANode]
		if own.IntValue == nil || std.IntValue == nil || *own.IntValue != *std.IntValue {
			t.Errorf("%s: %s = %v, want sriov.dra.dev/numaNode %v", d.Name, attrNUMANode, std.IntValue, own.IntValue)
		}
		if r := d.Attributes[attrPCIeRoot]; r.StringValue == nil || *r.StringValue == "" {
			t.Errorf("%s: no %s", d.Name, attrPCIeRoot)
		}
	}
	// The simulated node: VFs of sdpf0 on NUMA 0, PF sdpf1 on NUMA 1.
	if a := byIf[simPassPF].Attributes[attrNUMANode]; a.IntValue == nil || *a.IntValue != 1 {
		t.Errorf("PF %s: %s = %v, want 1", simPassPF, attrNUMANode, a.IntValue)
	}
	target, ok := byIf[simVFPrefix+"2"]
	if !ok {
		t.Fatalf("VF %s2 not published: %v", simVFPrefix, keys(devs))
	}
	if t.Failed() {
		return
	}

	t.Run("selector on pciBusID", func(t *testing.T) {
		bus := strAttr(target, "pciAddress")
		e.template(t, "by-bus", vfClass, fmt.Sprintf("device.attributes['resource.kubernetes.io'].pciBusID == '%s'", bus), nil)
		e.pod(t, "by-bus", "by-bus")
		e.waitRunning(t, "by-bus", 90*time.Second)
		if dev, _ := allocatedIfName(t, e.cs, e.claimOf(t, "by-bus")); dev != target.Name {
			t.Errorf("claim selecting pciBusID %s got %s, want %s", bus, dev, target.Name)
		}
		e.deletePod(t, "by-bus")
	})

	t.Run("selector on a numaNode no device has", func(t *testing.T) {
		e.template(t, "numa7", vfClass, "'numaNode' in device.attributes['resource.kubernetes.io'] && device.attributes['resource.kubernetes.io'].numaNode == 7", nil)
		e.pod(t, "numa7", "numa7")
		e.waitUnschedulable(t, "numa7")
		e.deletePod(t, "numa7")
	})

	t.Run("example same-pcie-root", func(t *testing.T) {
		e.runExample(t, "same-pcie-root")
		e.waitRunning(t, "same-pcie-root", 90*time.Second)
		c := e.claimOf(t, "same-pcie-root")
		if c.Status.Allocation == nil || len(c.Status.Allocation.Devices.Results) != 2 {
			t.Fatalf("claim %s: allocation %+v, want two devices", c.Name, c.Status.Allocation)
		}
		pub := publishedDevices(t, e.cs)
		var roots, numas []string
		for _, r := range c.Status.Allocation.Devices.Results {
			d := pub[r.Device]
			roots = append(roots, *d.Attributes[attrPCIeRoot].StringValue)
			numas = append(numas, fmt.Sprint(*d.Attributes[attrNUMANode].IntValue))
		}
		if roots[0] != roots[1] || numas[0] != numas[1] {
			t.Errorf("devices %v: pcieRoot %v, numaNode %v; want equal", c.Status.Allocation.Devices.Results, roots, numas)
		}
		out := e.exec(t, "same-pcie-root", "ls", "/sys/class/net")
		for _, ifName := range []string{"net1", "net2"} {
			if !slices.Contains(strings.Fields(out), ifName) {
				t.Errorf("pod lacks %s:\n%s", ifName, out)
			}
		}
		e.deletePod(t, "same-pcie-root")
	})

	t.Run("matchAttribute numaNode across NUMA nodes", func(t *testing.T) {
		// A VF (NUMA 0) and the whole PF sdpf1 (NUMA 1): no pair matches.
		tmpl := &resourceapi.ResourceClaimTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "split", Namespace: e.namespace},
			Spec: resourceapi.ResourceClaimTemplateSpec{Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
				Requests: []resourceapi.DeviceRequest{
					{Name: "vf", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: vfClass}},
					{Name: "pf", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: "pf.sriov.dra.dev"}},
				},
				Constraints: []resourceapi.DeviceConstraint{{
					Requests: []string{"vf", "pf"}, MatchAttribute: ptrTo(resourceapi.FullyQualifiedName(attrNUMANode)),
				}},
			}}},
		}
		if _, err := e.cs.ResourceV1().ResourceClaimTemplates(e.namespace).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ResourceClaimTemplate split: %v", err)
		}
		e.pod(t, "split", "split")
		e.waitUnschedulable(t, "split")
		e.deletePod(t, "split")
	})
}

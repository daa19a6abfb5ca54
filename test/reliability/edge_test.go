package reliability

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
)

// hostAsBefore is the check after a refused hook: VF admin state, links,
// IPAM, CDI spec as right after Prepare, and no attach marker.
func (n *node) hostAsBefore(t testing.TB, dm *daemon, before hostView, left string) error {
	t.Helper()
	var errs []error
	if after := n.view(t, dm.pf); mustJSON(after) != mustJSON(before) {
		errs = append(errs, fmt.Errorf("host changed:\nbefore %s\nafter  %s", mustJSON(before), mustJSON(after)))
	}
	if l := strings.Join(n.leftovers(t), ","); l != left {
		errs = append(errs, fmt.Errorf("IPAM/CDI/markers changed: %s -> %s", left, l))
	}
	return errors.Join(errs...)
}

// withNetns is pod 0's sandbox with its network namespace at path.
func withNetns(n *node, path string) *api.PodSandbox {
	pod := n.sandbox(0)
	pod.Linux.Namespaces[0].Path = path
	return pod
}

// TestRuntimeBadInput: what the runtime may hand the NRI plugin that it
// should not, each on a fresh node with pod 0's claim prepared. A bad
// sandbox must be refused (the hook's error fails the sandbox, so no
// container starts) with an error naming what was wrong, and nothing on
// the host may change; events that do not fit the pod's life are no-ops.
// Every case ends with the pod torn down and the claim unprepared, and
// the host as the test found it.
func TestRuntimeBadInput(t *testing.T) {
	type env struct {
		t      *testing.T
		n      *node
		dm     *daemon
		ctx    context.Context
		before hostView // right after Prepare
		left   string   // IPAM/CDI leftovers right after Prepare
	}
	// refused runs RunPodSandbox for pod and wants an error containing
	// every one of want, and the host as right after Prepare.
	refused := func(e env, pod *api.PodSandbox, want ...string) (string, error) {
		err := e.dm.plugin.RunPodSandbox(e.ctx, pod)
		if err == nil {
			return "", errors.New("RunPodSandbox accepted the sandbox")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				return "", fmt.Errorf("error %q does not name %q", err, w)
			}
		}
		if herr := e.n.hostAsBefore(e.t, e.dm, e.before, e.left); herr != nil {
			return "", herr
		}
		msg := strings.ReplaceAll(err.Error(), e.n.Dir, "<dir>")
		msg = strings.ReplaceAll(msg, e.n.ID, "<id>")
		return "refused, host unchanged: " + shorten(msg), nil
	}
	cases := []struct {
		name string
		run  func(e env) (string, error)
	}{
		{"netns path is a plain file (the runtime's netns mount not propagated into the driver)", func(e env) (string, error) {
			path := filepath.Join(e.n.Dir, "not-a-netns")
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				return "", err
			}
			return refused(e, withNetns(e.n, path), path, "not a network namespace")
		}},
		{"netns path is a directory", func(e env) (string, error) {
			return refused(e, withNetns(e.n, e.n.Dir), e.n.Dir, "not a network namespace")
		}},
		{"netns path does not exist (deleted before the hook)", func(e env) (string, error) {
			path := "/var/run/netns/" + e.n.netnsName(0) + "-gone"
			return refused(e, withNetns(e.n, path), path)
		}},
		{"netns path is the host's network namespace (the driver's own, /proc/self/ns/net)", func(e env) (string, error) {
			return refused(e, withNetns(e.n, "/proc/self/ns/net"), "/proc/self/ns/net", "host network namespace")
		}},
		{"RunPodSandbox delivered twice", func(e env) (string, error) {
			pod := e.n.sandbox(0)
			for i := range 2 {
				if err := e.dm.plugin.RunPodSandbox(e.ctx, pod); err != nil {
					return "", fmt.Errorf("RunPodSandbox %d: %w", i+1, err)
				}
			}
			e.dm.checkInPod(e.t, 0)
			if e.t.Failed() {
				return "", errors.New("pod interface wrong after a repeated RunPodSandbox")
			}
			return "second is a no-op; the pod has its device once", nil
		}},
		{"StopPodSandbox and RemovePodSandbox before RunPodSandbox", func(e env) (string, error) {
			pod := e.n.sandbox(0)
			if err := e.dm.plugin.StopPodSandbox(e.ctx, pod); err != nil {
				return "", fmt.Errorf("StopPodSandbox: %w", err)
			}
			if err := e.dm.plugin.RemovePodSandbox(e.ctx, pod); err != nil {
				return "", fmt.Errorf("RemovePodSandbox: %w", err)
			}
			if err := e.n.hostAsBefore(e.t, e.dm, e.before, e.left); err != nil {
				return "", err
			}
			// A late RunPodSandbox of the same sandbox still works.
			if err := e.dm.plugin.RunPodSandbox(e.ctx, pod); err != nil {
				return "", fmt.Errorf("RunPodSandbox after the early stop: %w", err)
			}
			e.dm.checkInPod(e.t, 0)
			return "no-ops; a later RunPodSandbox attaches as usual", nil
		}},
		{"RemovePodSandbox before StopPodSandbox", func(e env) (string, error) {
			pod := e.n.sandbox(0)
			if err := e.dm.plugin.RunPodSandbox(e.ctx, pod); err != nil {
				return "", err
			}
			if err := e.dm.plugin.RemovePodSandbox(e.ctx, pod); err != nil {
				return "", fmt.Errorf("RemovePodSandbox: %w", err)
			}
			if !e.dm.waitDetached(pod.Uid, 10*time.Second) {
				return "", errors.New("RemovePodSandbox did not return the device")
			}
			if err := e.dm.plugin.StopPodSandbox(e.ctx, pod); err != nil {
				return "", fmt.Errorf("StopPodSandbox after remove: %w", err)
			}
			return "the device is returned at RemovePodSandbox; the late StopPodSandbox is a no-op", nil
		}},
		{"a pod UID that matches no claim", func(e env) (string, error) {
			pod := e.n.sandbox(0)
			pod.Uid, pod.Id, pod.Name = "no-such-pod-uid", pod.Id+"-stranger", "stranger"
			if err := e.dm.plugin.RunPodSandbox(e.ctx, pod); err != nil {
				return "", fmt.Errorf("RunPodSandbox of a pod with no devices: %w", err)
			}
			if err := e.n.hostAsBefore(e.t, e.dm, e.before, e.left); err != nil {
				return "", err
			}
			for _, hook := range []func(context.Context, *api.PodSandbox) error{e.dm.plugin.StopPodSandbox, e.dm.plugin.RemovePodSandbox} {
				if err := hook(e.ctx, pod); err != nil {
					return "", err
				}
			}
			return "no-op, host unchanged", e.n.hostAsBefore(e.t, e.dm, e.before, e.left)
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, 1)
			initial := n.initialView(t)
			ctx := logCtx(t)
			c := n.claim(0, "")
			dm := startPrepared(t, ctx, n, newAPI(c), c)
			e := env{t: t, n: n, dm: dm, ctx: ctx, before: n.view(t, dm.pf), left: strings.Join(n.leftovers(t), ",")}
			result, err := tc.run(e)
			errs := []error{err}
			// The pod's end, as kubelet and the runtime do it.
			pod := n.sandbox(0)
			errs = append(errs, dm.plugin.StopPodSandbox(ctx, pod), dm.plugin.RemovePodSandbox(ctx, pod))
			if !dm.waitDetached(pod.Uid, 10*time.Second) {
				errs = append(errs, errors.New("device still recorded in the pod netns"))
			}
			errs = append(errs, unprepareOK(ctx, dm, c))
			errs = append(errs, n.cleanErrors(t, dm, initial)...)
			if err := errors.Join(errs...); err != nil {
				t.Error(err)
				result = "FAIL: " + firstLine(err)
			}
			results.add("runtime-input", fmt.Sprintf("%02d", i), tc.name, result)
		})
	}
	results.complete("runtime-input")
}

// TestClaimWith32Devices: one claim allocating 32 VFs is prepared and
// released whole; the same claim with its last device not on this node
// is refused and the 31 devices before it are left exactly as they were.
func TestClaimWith32Devices(t *testing.T) {
	const devs = 32
	n := newNode(t, devs)
	initial := n.initialView(t)
	ctx := logCtx(t)
	claim := func(uid, lastDevice string) *resourceapi.ResourceClaim {
		c := n.claim(0, vfConfig(`"ipam":{"type":"host-local","ranges":[[{"subnet":"10.78.0.0/16"}]]}`))
		c.UID, c.Name = types.UID("c0ffee00-0000-4000-8000-"+uid), "net-32-"+uid
		c.Status.Allocation.Devices.Results = nil
		for i := range devs {
			dev := n.device(i)
			if i == devs-1 && lastDevice != "" {
				dev = lastDevice
			}
			c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results,
				resourceapi.DeviceRequestAllocationResult{Driver: driverName, Pool: nodeName, Device: dev, Request: fmt.Sprintf("nic%d", i)})
		}
		return c
	}
	good, bad := claim("000000003200", ""), claim("000000003201", "pci-0000-99-00-1")
	dm, err := startDaemon(t, n, newAPI(good, bad))
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	var errs []error
	msg, _, err := dm.prepare(ctx, bad)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("prepare with a missing 32nd device: %w", err))
	case msg == "":
		errs = append(errs, errors.New("a claim whose 32nd device is not on this node was accepted"))
	case !strings.Contains(msg, "pci-0000-99-00-1"):
		errs = append(errs, fmt.Errorf("error %q does not name the missing device", msg))
	default:
		if e := n.cleanErrors(t, dm, initial); len(e) > 0 {
			errs = append(errs, e...)
		} else {
			steps = append(steps, "32nd device not on this node: refused, the 31 others untouched")
		}
	}
	start := time.Now()
	if msg, _, err := dm.prepare(ctx, good); err != nil || msg != "" {
		errs = append(errs, fmt.Errorf("prepare 32 devices: %v %s", err, msg))
	} else if recs := dm.d.State().Claims(); len(recs) != 1 || len(recs[0].Devices) != devs {
		errs = append(errs, fmt.Errorf("checkpoint after preparing 32 devices: %s", mustJSON(recs)))
	} else {
		steps = append(steps, "32 devices prepared in one claim")
		t.Logf("prepared 32 devices in %v", time.Since(start))
	}
	errs = append(errs, unprepareOK(ctx, dm, good))
	errs = append(errs, n.cleanErrors(t, dm, initial)...)
	result := strings.Join(steps, "; ") + "; released, host as before"
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
		result = "FAIL: " + firstLine(err)
	}
	results.add("input", "90-32", "one claim with 32 devices (and the same with the 32nd not on this node)", result)
}

// TestOtherDriversResults: a claim may hold devices of other DRA drivers
// (a VF with a GPU, say); their results are left to those drivers. A
// claim with only another driver's results prepares nothing and records
// nothing; a mixed one prepares only this driver's device.
func TestOtherDriversResults(t *testing.T) {
	n := newNode(t, 1)
	initial := n.initialView(t)
	ctx := logCtx(t)
	other := resourceapi.DeviceRequestAllocationResult{Driver: "gpu.example.com", Pool: nodeName, Device: n.device(0), Request: "gpu"}
	only := n.claim(0, "")
	only.UID, only.Name = "c0ffee00-0000-4000-8000-0000000000d1", "only-other"
	only.Status.Allocation.Devices.Results = []resourceapi.DeviceRequestAllocationResult{other}
	mixed := n.claim(0, "")
	mixed.Status.Allocation.Devices.Results = append(mixed.Status.Allocation.Devices.Results, other)
	dm, err := startDaemon(t, n, newAPI(only, mixed))
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	var steps []string
	if msg, _, err := dm.prepare(ctx, only); err != nil || msg != "" {
		errs = append(errs, fmt.Errorf("prepare a claim of another driver's device: %v %s", err, msg))
	} else if cs := dm.d.State().Claims(); len(cs) != 0 {
		errs = append(errs, fmt.Errorf("another driver's claim recorded: %s", mustJSON(cs)))
	} else if e := n.cleanErrors(t, dm, initial); len(e) > 0 {
		errs = append(errs, e...)
	} else {
		steps = append(steps, "only another driver's result (same device name): nothing prepared, host unchanged")
	}
	errs = append(errs, unprepareOK(ctx, dm, only))
	if msg, _, err := dm.prepare(ctx, mixed); err != nil || msg != "" {
		errs = append(errs, fmt.Errorf("prepare a mixed claim: %v %s", err, msg))
	} else if cs := dm.d.State().Claims(); len(cs) != 1 || len(cs[0].Devices) != 1 {
		errs = append(errs, fmt.Errorf("mixed claim recorded as %s, want one device", mustJSON(cs)))
	} else {
		steps = append(steps, "mixed: only this driver's device prepared")
	}
	errs = append(errs, unprepareOK(ctx, dm, mixed))
	errs = append(errs, n.cleanErrors(t, dm, initial)...)
	result := strings.Join(steps, "; ") + "; host as before"
	if err := errors.Join(errs...); err != nil {
		t.Error(err)
		result = "FAIL: " + firstLine(err)
	}
	results.add("input", "91-other", "a claim whose results name another driver", result)
}

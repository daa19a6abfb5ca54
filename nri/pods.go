package nri

// What the plugin knows about the runtime's pod sandboxes (name, netns,
// the containers' cpusets), remembered from the hooks; whether a netns
// still exists; and how a pod and a device are named in logs and errors.

import (
	"context"
	"fmt"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"
)

// netnsOf returns the path of the pod's network namespace, "" for a pod in
// the host network namespace.
func netnsOf(pod *api.PodSandbox) string {
	for _, ns := range pod.GetLinux().GetNamespaces() {
		if ns.GetType() == "network" {
			return ns.GetPath()
		}
	}
	return ""
}

func podRef(pod *api.PodSandbox) klog.ObjectRef {
	return klog.KRef(pod.GetNamespace(), pod.GetName())
}

// podLogger is the logger in ctx with the pod (and kv) as values.
func podLogger(ctx context.Context, pod *api.PodSandbox, kv ...any) klog.Logger {
	return klog.FromContext(ctx).WithValues(append([]any{"pod", podRef(pod), "podUID", pod.GetUid()}, kv...)...)
}

// deviceLogger is the logger in ctx with the device as values.
func deviceLogger(ctx context.Context, d PodDevice) klog.Logger {
	return klog.FromContext(ctx).WithValues("device", d.Device, "claimUID", d.ClaimUID)
}

func devRef(d PodDevice) string {
	return fmt.Sprintf("device %s (claim %s/%s, request %s)", d.Device, d.ClaimNamespace, d.ClaimName, d.Request)
}

// hostNetworkError is the error for a netdev device in a host-network pod.
func hostNetworkError(pod *api.PodSandbox, devs []PodDevice) error {
	for _, d := range devs {
		if !d.VFIO {
			return fmt.Errorf("pod %s runs in the host network namespace (hostNetwork), but %s is a netdevice that must be moved into the pod's own network namespace: run the pod without hostNetwork or use a vfio-pci device", podRef(pod), devRef(d))
		}
	}
	return nil
}

// remember records what the runtime says about the pod and returns it.
func (p *Plugin) remember(pod *api.PodSandbox) *podInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	info := p.pods[pod.GetUid()]
	if info == nil || info.sandboxID != pod.GetId() {
		info = &podInfo{cpus: map[string]string{}}
		p.pods[pod.GetUid()] = info
	}
	info.sandboxID = pod.GetId()
	info.name = pod.GetName()
	info.namespace = pod.GetNamespace()
	info.netns = netnsOf(pod)
	return info
}

// sandboxNetns is the sandbox's network namespace: the one it reports, or
// the one the same sandbox (by ID) reported while it ran. containerd 1.7
// reads a sandbox's namespaces from its task, which is gone by the time it
// sends StopPodSandbox, so that request has none while the netns still
// exists (containerd deletes it right after, with any netdev still in it).
func (p *Plugin) sandboxNetns(pod *api.PodSandbox) string {
	if ns := netnsOf(pod); ns != "" {
		return ns
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if info := p.pods[pod.GetUid()]; info != nil && info.sandboxID == pod.GetId() {
		return info.netns
	}
	return ""
}

// known returns what the runtime told about the pod, nil when nothing.
func (p *Plugin) known(uid string) *podInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pods[uid]
}

func (p *Plugin) forget(uid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pods, uid)
}

// netnsExists reports whether path is a network namespace now (see
// netattach.NetnsGone for what counts as gone). A path that cannot be
// checked counts as existing: its devices are then returned by the
// sandbox's own teardown, not as gone.
func (p *Plugin) netnsExists(path string) bool {
	gone, _, err := p.host.NetnsGone(path)
	return err != nil || !gone
}

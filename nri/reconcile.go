package nri

// The reconcile after Synchronize, and the re-deriving of attach state
// from the kernel: on every (re)connect, in the background, pods the
// runtime has get their netdevs attached, pods it no longer has get them
// returned; a hook that comes in meanwhile wins over the older pod list.
// locate finds, by identity, where a device whose attach state lives in
// memory only is after a restart.

import (
	"context"
	"time"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"
)

// runtimeView is the runtime's word in a Synchronize, grouped for the
// reconcile.
type runtimeView struct {
	// sandboxes maps a pod UID to its sandboxes.
	sandboxes map[string][]*api.PodSandbox
	// cpus maps a sandbox ID to its running containers' cpusets (by
	// container ID).
	cpus map[string]map[string]string
	// pods is how many sandboxes the runtime listed.
	pods int
}

func newRuntimeView(pods []*api.PodSandbox, ctrs []*api.Container) runtimeView {
	v := runtimeView{
		sandboxes: map[string][]*api.PodSandbox{},
		cpus:      map[string]map[string]string{},
		pods:      len(pods),
	}
	for _, pod := range pods {
		v.sandboxes[pod.GetUid()] = append(v.sandboxes[pod.GetUid()], pod)
	}
	for _, c := range ctrs {
		if c.GetState() == api.ContainerState_CONTAINER_STOPPED {
			continue
		}
		m := v.cpus[c.GetPodSandboxId()]
		if m == nil {
			m = map[string]string{}
			v.cpus[c.GetPodSandboxId()] = m
		}
		m[c.GetId()] = containerCPUs(c)
	}
	return v
}

// beginReconcile counts a Synchronize and returns its generation: hooks
// from now on mark their pods touched (touch) until it ends.
func (p *Plugin) beginReconcile() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncGen++
	p.reconciling++
	return p.syncGen
}

// reconcile brings every pod with devices in line with view, one
// reconcile at a time, skipping pods a hook handled since generation gen
// began; start is when its Synchronize came.
func (p *Plugin) reconcile(ctx context.Context, gen uint64, view runtimeView, start time.Time) {
	p.reconcileMu.Lock()
	defer p.reconcileMu.Unlock()
	var attached, detached, failed, skipped int
	for _, uid := range p.devs.Pods() {
		if p.touchedSince(uid, gen) {
			skipped++
			continue
		}
		n, d, f := p.syncPod(ctx, uid, view.sandboxes[uid], view.cpus, gen)
		attached += n
		detached += d
		failed += f
	}
	p.endReconcile(gen)
	p.observe(HookSynchronize, start, nil)
	p.syncs.Add(1)
	klog.FromContext(ctx).Info("Synchronized with the NRI runtime", "pods", view.pods, "attached", attached, "detached", detached, "failed", failed, "skipped", skipped, "duration", time.Since(start))
}

// endReconcile ends generation gen: touch marks of it and older go.
func (p *Plugin) endReconcile(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reconciling--
	for uid, g := range p.touched {
		if g <= gen {
			delete(p.touched, uid)
		}
	}
}

// touch marks the pod as handled by a hook while a reconcile is pending,
// so the reconcile, working from an older pod list, leaves it alone.
func (p *Plugin) touch(uid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reconciling > 0 {
		p.touched[uid] = p.syncGen
	}
}

func (p *Plugin) touchedSince(uid string, gen uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.touched[uid]
	return ok && g >= gen
}

// syncPod reconciles one pod with devices; it returns how many devices it
// attached and detached and how many failed.
func (p *Plugin) syncPod(ctx context.Context, uid string, candidates []*api.PodSandbox, cpus map[string]map[string]string, gen uint64) (attached, detached, failed int) {
	logger := klog.FromContext(ctx).WithValues("podUID", uid)
	ctx = klog.NewContext(ctx, logger)
	unlock := p.lockPod(uid)
	defer unlock()
	if p.touchedSince(uid, gen) {
		return 0, 0, 0 // a hook got the lock first
	}

	for _, c := range candidates {
		p.locate(ctx, uid, netnsOf(c))
	}
	devs := p.devs.ForPod(uid)
	pod := p.pickSandbox(candidates, devs)
	if pod == nil {
		detached, failed = p.syncGonePod(ctx, uid, devs)
		return 0, detached, failed
	}
	attached, failed = p.syncRunningPod(ctx, pod, devs, cpus[pod.GetId()])
	return attached, 0, failed
}

// syncGonePod forgets a pod the runtime no longer has and returns its
// devices to the host. It returns how many it returned and how many are
// still out (retried later).
func (p *Plugin) syncGonePod(ctx context.Context, uid string, devs []PodDevice) (detached, failed int) {
	p.forget(uid)
	before := countInNetns(devs)
	if err := p.detachPod(ctx, uid, ""); err != nil {
		klog.FromContext(ctx).Error(err, "Returning the devices of a pod the runtime no longer has; will retry")
	}
	after := countInNetns(p.devs.ForPod(uid))
	return before - after, after
}

// syncRunningPod remembers the sandbox pod, with its running containers'
// cpusets, and attaches its netdevs. It returns how many it attached and
// how many failed.
func (p *Plugin) syncRunningPod(ctx context.Context, pod *api.PodSandbox, devs []PodDevice, cpus map[string]string) (attached, failed int) {
	logger := klog.FromContext(ctx).WithValues("pod", podRef(pod))
	ctx = klog.NewContext(ctx, logger)
	info := p.remember(pod)
	for id, c := range cpus {
		info.cpus[id] = c
	}
	netns := info.netns
	if netns == "" {
		if err := hostNetworkError(pod, devs); err != nil {
			logger.Error(err, "Cannot attach")
			failed++
		}
		return
	}
	for _, d := range devs {
		if d.VFIO {
			continue
		}
		did, err := p.attach(ctx, d, netns)
		if err != nil {
			logger.Error(err, "Attaching a device of a running pod", "device", d.Device)
			failed++
			continue
		}
		if did {
			attached++
		}
	}
	return
}

// pickSandbox chooses, among the runtime's sandboxes of one pod UID, the
// one the devices belong to: the one whose netns they are recorded in,
// else one whose netns exists. nil means the pod is gone (no sandbox, or
// none with a network namespace left).
func (p *Plugin) pickSandbox(candidates []*api.PodSandbox, devs []PodDevice) *api.PodSandbox {
	for _, c := range candidates {
		ns := netnsOf(c)
		for _, d := range devs {
			if ns != "" && d.NetnsPath == ns && p.netnsExists(ns) {
				return c
			}
		}
	}
	for _, c := range candidates {
		ns := netnsOf(c)
		switch {
		case ns != "" && p.netnsExists(ns):
			return c
		case ns == "" && hostNetwork(c, devs):
			return c // host network: the caller refuses netdevs
		}
	}
	return nil
}

// hostNetwork reports whether a sandbox listed without a network
// namespace is a host-network pod rather than one being torn down. The
// runtime lists a stopped sandbox with no namespaces at all, and one whose
// netns it has already torn down without the network entry (containerd
// drops entries whose netns file is gone), which looks like host network.
// So it is host network only if the sandbox still runs (it has a PID) and
// none of the pod's devices was ever attached to a netns of it: a pod
// does not change between host and own network across its sandboxes.
func hostNetwork(pod *api.PodSandbox, devs []PodDevice) bool {
	if len(pod.GetLinux().GetNamespaces()) == 0 || pod.GetPid() == 0 {
		return false
	}
	for _, d := range devs {
		if !d.VFIO && d.NetnsPath != "" {
			return false
		}
	}
	return true
}

func countInNetns(devs []PodDevice) int {
	n := 0
	for _, d := range devs {
		if !d.VFIO && d.NetnsPath != "" {
			n++
		}
	}
	return n
}

// locate derives from the kernel where the pod's devices whose attach
// state is not recorded durably are (after a restart the daemon's memory
// holds no netns for them): a device found by its identity in the netns
// at netns is recorded (in memory) as an attach begun there, which the
// next attach completes in place and the next detach returns. Devices
// with a netns in memory are left alone. Caller holds the pod's lock.
func (p *Plugin) locate(ctx context.Context, uid, netns string) {
	if netns == "" {
		return
	}
	for _, d := range p.devs.ForPod(uid) {
		if d.VFIO || d.NetnsPath != "" || !fromKernel(d) {
			continue
		}
		in, err := p.host.InNetns(ctx, netns, d.Spec.PodIfName, identity(d))
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Cannot look for the device in a sandbox's netns", "device", d.Device, "claimUID", d.ClaimUID, "netns", netns, "err", err)
			continue
		}
		if !in {
			continue
		}
		if err := p.devs.Attaching(d.ClaimUID, d.Device, netns, *d.Original); err != nil {
			klog.FromContext(ctx).Error(err, "Recording a device found in a sandbox's netns", "device", d.Device, "claimUID", d.ClaimUID, "netns", netns)
			continue
		}
		klog.FromContext(ctx).Info("Found a device in a sandbox's netns (derived from the kernel after a restart)", "device", d.Device, "claimUID", d.ClaimUID, "netns", netns)
	}
}

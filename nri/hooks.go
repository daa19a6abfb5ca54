package nri

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/faults"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// The hooks below are called by the NRI stub. Their order over a pod's
// life, and what each records through Devices:
//
//	RunPodSandbox    for each netdev: hold the netns (netnshold.go) ->
//	                 Attaching(netns, original) -> [RDMA
//	                 first for InfiniBand] -> Attach -> [RDMA after for
//	                 Ethernet] -> Attached -> create the device's
//	                 "attached" marker (pkg/attachmark). Any error
//	                 detaches what this pod had attached and fails the
//	                 sandbox. With AttachStateFromKernel (the original
//	                 recorded at Prepare) the records are in memory only
//	                 and the kernel says where the device is after a
//	                 restart (locate).
//	CreateContainer  fail closed: every netdev must be in the pod netns;
//	                 attach it now if not (the plugin missed RunPodSandbox),
//	                 else refuse the container. Then, with irqAffinity,
//	                 pin the VF's IRQs to the union of the pod's cpusets.
//	StopPodSandbox,  for each netdev recorded in this sandbox's netns:
//	RemovePodSandbox remove its marker -> RDMA back -> netdev back under
//	                 its original name, MAC and MTU -> Detached (through
//	                 the hold if the runtime removed the netns first, as
//	                 CRI-O does) -> release the hold. Never
//	                 fails; returns after at most TeardownBudget; what
//	                 could not finish (netns gone, link not back yet) is
//	                 retried every RetryInterval.
//	Synchronize      on every (re)connect: in the background, pods the
//	                 runtime has get their netdevs attached, pods it no
//	                 longer has get them detached; a hook that comes in
//	                 meanwhile wins over the older pod list.
//
// The markers make "no container without its device" hold even while
// the plugin is not connected (a daemon restart between kubelet's
// Prepare and the sandbox's creation): the driver's CDI spec bind-mounts
// each netdevice's marker into every container, and the runtime cannot
// create a container whose mount source is missing. Every path that
// attaches (RunPodSandbox, CreateContainer, Synchronize) creates it,
// also for a device found attached already.
//
// Before all this, Prepare (driver) configured the VF, allocated the
// addresses and recorded the PodDevice; after it, Unprepare returns a
// netdev the runtime never let go of, and restores the VF from its
// snapshot (IRQ affinities included).

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

func (p *Plugin) forget(uid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pods, uid)
}

// RunPodSandbox attaches the pod's netdevs to its network namespace. An
// error fails the sandbox; the runtime retries with a new one.
func (p *Plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) (err error) {
	uid := pod.GetUid()
	devs := p.devs.ForPod(uid)
	if len(devs) == 0 {
		return nil
	}
	start := time.Now()
	defer func() { p.observe(HookRunPodSandbox, start, err) }()
	logger := klog.FromContext(ctx).WithValues("pod", podRef(pod), "podUID", uid)
	ctx = klog.NewContext(ctx, logger)
	unlock := p.hookLock(uid)
	defer unlock()
	devs = p.devs.ForPod(uid) // as it is now that the pod is ours

	p.remember(pod)
	netns := netnsOf(pod)
	if netns == "" {
		return hostNetworkError(pod, devs)
	}
	for _, d := range devs {
		if d.VFIO {
			continue
		}
		if _, err := p.attach(ctx, d, netns); err != nil {
			err = fmt.Errorf("pod %s: %w", podRef(pod), err)
			// The runtime deletes the netns of a failed sandbox: bring back
			// what is already in it instead of stranding it there.
			if rerr := p.detachPod(ctx, uid, netns); rerr != nil {
				logger.Error(rerr, "Rolling back the attaches of a failed sandbox; will retry")
			}
			return err
		}
	}
	logger.V(2).Info("Attached the pod's devices", "netns", netns, "devices", len(devs), "duration", time.Since(start))
	return nil
}

// CreateContainer refuses the container unless each of the pod's netdevs
// is in the pod's network namespace (attaching it first when the plugin
// missed RunPodSandbox), then pins IRQs for devices with irqAffinity.
func (p *Plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (_ *api.ContainerAdjustment, _ []*api.ContainerUpdate, err error) {
	uid := pod.GetUid()
	devs := p.devs.ForPod(uid)
	if len(devs) == 0 {
		return nil, nil, nil
	}
	start := time.Now()
	defer func() { p.observe(HookCreateContainer, start, err) }()
	logger := klog.FromContext(ctx).WithValues("pod", podRef(pod), "podUID", uid, "container", ctr.GetName())
	ctx = klog.NewContext(ctx, logger)
	unlock := p.hookLock(uid)
	defer unlock()
	devs = p.devs.ForPod(uid) // as it is now that the pod is ours

	info := p.remember(pod)
	netns := info.netns
	if netns == "" {
		if err := hostNetworkError(pod, devs); err != nil {
			return nil, nil, fmt.Errorf("refuse container %s: %w", ctr.GetName(), err)
		}
	}
	for _, d := range devs {
		if d.VFIO {
			continue
		}
		attached, err := p.attach(ctx, d, netns)
		if err != nil {
			return nil, nil, fmt.Errorf("refuse container %s of pod %s: %s is not in the pod network namespace %s and attaching it failed: %w", ctr.GetName(), podRef(pod), devRef(d), netns, err)
		}
		if attached {
			logger.Info("Attached a device at container creation (the plugin missed RunPodSandbox)", "device", d.Device, "claimUID", d.ClaimUID)
		}
	}

	info.cpus[ctr.GetId()] = containerCPUs(ctr)
	if err := p.pinIRQs(ctx, devs, info); err != nil {
		return nil, nil, fmt.Errorf("refuse container %s of pod %s: %w", ctr.GetName(), podRef(pod), err)
	}
	return nil, nil, nil
}

// UpdateContainer follows a change of the container's cpuset.
func (p *Plugin) UpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, res *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	p.updateCPUs(ctx, pod, ctr.GetId(), res.GetCpu().GetCpus(), false)
	return nil, nil
}

// RemoveContainer drops the container's cpuset from the pod's union.
func (p *Plugin) RemoveContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	p.updateCPUs(ctx, pod, ctr.GetId(), "", true)
	return nil
}

// updateCPUs changes one container's cpuset and re-pins the IRQs when the
// pod's union changed. Errors are logged: the container exists already.
func (p *Plugin) updateCPUs(ctx context.Context, pod *api.PodSandbox, ctrID, cpus string, remove bool) {
	uid := pod.GetUid()
	devs := p.devs.ForPod(uid)
	if !anyIRQAffinity(devs) {
		return
	}
	logger := klog.FromContext(ctx).WithValues("pod", podRef(pod), "podUID", uid)
	ctx = klog.NewContext(ctx, logger)
	unlock := p.hookLock(uid)
	defer unlock()
	devs = p.devs.ForPod(uid) // as it is now that the pod is ours
	p.mu.Lock()
	info := p.pods[uid]
	p.mu.Unlock()
	if info == nil {
		return
	}
	before, _ := unionCPUs(info.cpus)
	if remove {
		delete(info.cpus, ctrID)
	} else {
		info.cpus[ctrID] = cpus
	}
	after, _ := unionCPUs(info.cpus)
	if after == before {
		return
	}
	if err := p.pinIRQs(ctx, devs, info); err != nil {
		logger.Error(err, "Re-pinning IRQs after a cpuset change")
	}
}

func anyIRQAffinity(devs []PodDevice) bool {
	for _, d := range devs {
		if d.IRQAffinity {
			return true
		}
	}
	return false
}

func containerCPUs(ctr *api.Container) string {
	return ctr.GetLinux().GetResources().GetCpu().GetCpus()
}

// pinIRQs pins the IRQs of the devices with irqAffinity to the union of
// the cpusets of the pod's containers. Containers without a cpuset (no
// exclusive CPUs) add nothing; with no cpuset at all nothing is pinned.
func (p *Plugin) pinIRQs(ctx context.Context, devs []PodDevice, info *podInfo) error {
	if !anyIRQAffinity(devs) {
		return nil
	}
	cpus, err := unionCPUs(info.cpus)
	if err != nil {
		return fmt.Errorf("irqAffinity: %w", err)
	}
	if cpus == "" {
		klog.FromContext(ctx).V(2).Info("No container of the pod has a cpuset: IRQs left as they are")
		return nil
	}
	for _, d := range devs {
		if !d.IRQAffinity {
			continue
		}
		if err := p.host.PinIRQs(ctx, d.PCIAddress, cpus); err != nil {
			return fmt.Errorf("pin IRQs of %s (%s) to CPUs %s: %w", devRef(d), d.PCIAddress, cpus, err)
		}
		klog.FromContext(ctx).V(2).Info("Pinned IRQs", "device", d.Device, "pci", d.PCIAddress, "cpus", cpus)
	}
	return nil
}

// StopPodSandbox returns the pod's netdevs to the host. It never fails the
// teardown: what cannot be finished now is retried later.
func (p *Plugin) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.teardown(ctx, pod, HookStopPodSandbox)
	return nil
}

// RemovePodSandbox is StopPodSandbox for runtimes (or restarts) that skip
// it, and forgets the pod.
func (p *Plugin) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	p.teardown(ctx, pod, HookRemovePodSandbox)
	p.forget(pod.GetUid())
	return nil
}

func (p *Plugin) teardown(ctx context.Context, pod *api.PodSandbox, hook string) {
	uid := pod.GetUid()
	if len(p.devs.ForPod(uid)) == 0 {
		return
	}
	start := time.Now()
	logger := klog.FromContext(ctx).WithValues("pod", podRef(pod), "podUID", uid, "hook", hook)
	ctx = klog.NewContext(context.WithoutCancel(ctx), logger)
	p.touch(uid)
	// The detach runs on its own so that a slow kernel cannot make the
	// hook miss the runtime's deadline (which would fail the teardown):
	// after TeardownBudget the hook returns and the detach finishes in
	// the background. It takes the pod's lock there too, so a teardown
	// queued behind a slow one (RemovePodSandbox after StopPodSandbox)
	// also returns in time.
	done := make(chan struct{})
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		defer close(done)
		unlock := p.lockPod(uid)
		defer unlock()
		// Only what is in this sandbox's netns: kubelet removes an old
		// sandbox of a pod after it started a new one. A sandbox reported
		// without a network namespace (a stopped one: containerd lists
		// them without namespaces) and not seen running by this plugin
		// returns only devices recorded in a netns that is gone, never
		// those of a newer sandbox's live netns.
		var err error
		if ns := p.sandboxNetns(pod); ns != "" {
			err = p.detachPod(ctx, uid, ns)
		} else {
			err = p.detachGone(ctx, uid)
		}
		p.observe(hook, start, err)
		if err != nil {
			logger.Error(err, "Could not return every device to the host; will retry")
		}
	}()
	select {
	case <-done:
	case <-time.After(p.cfg.TeardownBudget):
		logger.Info("Detach is taking long: finishing it in the background", "budget", p.cfg.TeardownBudget)
	}
}

// Synchronize reconciles with the runtime's pods on every (re)connect:
// devices of pods that run are attached to their netns, devices recorded
// in a netns of a pod that is gone are returned to the host.
func (p *Plugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	logger := klog.FromContext(ctx)
	start := time.Now()
	byUID := map[string][]*api.PodSandbox{}
	for _, pod := range pods {
		byUID[pod.GetUid()] = append(byUID[pod.GetUid()], pod)
	}
	cpusBySandbox := map[string]map[string]string{}
	for _, c := range ctrs {
		if c.GetState() == api.ContainerState_CONTAINER_STOPPED {
			continue
		}
		m := cpusBySandbox[c.GetPodSandboxId()]
		if m == nil {
			m = map[string]string{}
			cpusBySandbox[c.GetPodSandboxId()] = m
		}
		m[c.GetId()] = containerCPUs(c)
	}

	// Reconcile in the background: attaches and detaches for many pods
	// can take longer than the runtime's request timeout, and hooks must
	// not wait for the runtime's sync lock. Hooks that arrive meanwhile
	// win: their pods are skipped (touched).
	p.mu.Lock()
	p.syncGen++
	gen := p.syncGen
	p.reconciling++
	p.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		p.reconcileMu.Lock()
		defer p.reconcileMu.Unlock()
		var attached, detached, failed, skipped int
		for _, uid := range p.devs.Pods() {
			if p.touchedSince(uid, gen) {
				skipped++
				continue
			}
			n, d, f := p.syncPod(ctx, uid, byUID[uid], cpusBySandbox, gen)
			attached += n
			detached += d
			failed += f
		}
		p.mu.Lock()
		p.reconciling--
		for uid, g := range p.touched {
			if g <= gen {
				delete(p.touched, uid)
			}
		}
		p.mu.Unlock()
		p.observe(HookSynchronize, start, nil)
		p.syncs.Add(1)
		logger.Info("Synchronized with the NRI runtime", "pods", len(pods), "attached", attached, "detached", detached, "failed", failed, "skipped", skipped, "duration", time.Since(start))
	}()
	return nil, nil
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

// hookLock is lockPod for hooks: the runtime's word on the pod is newer
// than any pending reconcile's.
func (p *Plugin) hookLock(uid string) func() {
	p.touch(uid)
	return p.lockPod(uid)
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
		p.forget(uid)
		before := countInNetns(devs)
		if err := p.detachPod(ctx, uid, ""); err != nil {
			logger.Error(err, "Returning the devices of a pod the runtime no longer has; will retry")
		}
		after := countInNetns(p.devs.ForPod(uid))
		return 0, before - after, after
	}

	logger = logger.WithValues("pod", podRef(pod))
	ctx = klog.NewContext(ctx, logger)
	info := p.remember(pod)
	for id, c := range cpus[pod.GetId()] {
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

// netnsExists reports whether path is a network namespace now (see
// netattach.NetnsGone for what counts as gone). A path that cannot be
// checked counts as existing: its devices are then returned by the
// sandbox's own teardown, not as gone.
func (p *Plugin) netnsExists(path string) bool {
	gone, _, err := p.host.NetnsGone(path)
	return err != nil || !gone
}

// identity is the device's identity as recorded: the one read before the
// move, or for a record written before identities were recorded, the
// device's PCI address from the driver's record (a link whose PCI parent
// is not that address is then never touched).
func identity(d PodDevice) netattach.Identity {
	if d.Original != nil && d.Original.Identity.Known() {
		return d.Original.Identity
	}
	return netattach.Identity{PCIAddress: d.PCIAddress}
}

// fromKernel reports whether d's attach state is derived from the kernel
// (see PodDevice.AttachStateFromKernel) rather than recorded durably.
func fromKernel(d PodDevice) bool {
	return d.AttachStateFromKernel && d.Original != nil
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

// attach brings one netdev into netns and records each step. It returns
// whether it moved anything (false: it was there already).
func (p *Plugin) attach(ctx context.Context, d PodDevice, netns string) (bool, error) {
	logger := klog.FromContext(ctx).WithValues("device", d.Device, "claimUID", d.ClaimUID)
	steps := p.stepTimer()
	ctx = p.stepContext(ctx)
	p.holdNetns(ctx, d.PodUID, netns)
	if d.Attached && d.NetnsPath == netns {
		in, err := p.host.InNetns(ctx, netns, d.Spec.PodIfName, identity(d))
		if err == nil && in {
			// The marker may be missing after a crash between the record
			// and its creation.
			return false, p.markAttached(d)
		}
		logger.Info("Device recorded as attached is not in the pod netns: attaching again", "netns", netns, "ifName", d.Spec.PodIfName, "err", err)
	}
	if d.NetnsPath != "" && d.NetnsPath != netns {
		// Recorded in the netns of an earlier sandbox of this pod.
		logger.Info("Device still recorded in an earlier sandbox's netns: returning it first", "oldNetns", d.NetnsPath)
		if err := p.detachDevice(ctx, d); err != nil {
			return false, fmt.Errorf("%s: return it from the earlier sandbox's netns %s: %w", devRef(d), d.NetnsPath, err)
		}
		d.NetnsPath, d.Attached, d.RDMAMoved = "", false, false
	}
	rdma := d.RDMAIsolation
	if rdma && d.RDMADevice == "" {
		return false, fmt.Errorf("%s: rdmaIsolation is set but the device has no RDMA device", devRef(d))
	}
	// derived: nothing says where the device is; the kernel does.
	derived := false
	switch {
	case d.NetnsPath == "" && fromKernel(d):
		// The original was recorded durably at Prepare. Read as it is
		// now (one RTM_GETLINK): when unchanged, the netns goes into
		// memory only and nothing is written inside the runtime's hook;
		// when it changed since (a VF driver adopts the MAC set through
		// its PF after a reset of its own), Devices records the new one
		// durably, as the hook did before. Not on the host under its
		// name: after a restart it may be in this netns already or back
		// on the host changed; the kernel says (Attach below).
		orig, err := p.host.ReadOriginal(ctx, d.Spec.HostIfName, d.PCIAddress)
		if err != nil {
			orig, derived = *d.Original, true
		}
		// Whether it was up is Prepare's word: a detach cut short by a
		// crash leaves it on the host down, before it is up again.
		orig.Up = d.Original.Up
		if err := p.devs.Attaching(d.ClaimUID, d.Device, netns, orig); err != nil {
			return false, fmt.Errorf("%s: record attach start: %w", devRef(d), err)
		}
		faults.Point(faults.AttachRecorded)
		d.Original = &orig
	case d.NetnsPath == "" || d.Original == nil:
		// Nothing moved yet (or nothing to restore was recorded): record
		// the original before any change.
		orig, err := p.host.ReadOriginal(ctx, d.Spec.HostIfName, d.PCIAddress)
		if err != nil {
			return false, fmt.Errorf("%s: read host netdev %s: %w", devRef(d), d.Spec.HostIfName, err)
		}
		if err := p.devs.Attaching(d.ClaimUID, d.Device, netns, orig); err != nil {
			return false, fmt.Errorf("%s: record attach start: %w", devRef(d), err)
		}
		faults.Point(faults.AttachRecorded)
		d.Original = &orig
	}
	steps.mark(StepRecordAttaching)
	id := identity(d)
	ib := d.LinkType == inventory.LinkTypeInfiniBand
	if rdma && ib {
		if err := p.host.MoveRDMA(ctx, d.RDMADevice, netns); err != nil {
			return false, fmt.Errorf("%s: move RDMA device %s into netns %s: %w", devRef(d), d.RDMADevice, netns, err)
		}
	}
	err := p.host.Attach(ctx, netns, d.Spec, id)
	if err != nil && derived {
		// Neither on the host under its name nor in this netns: after a
		// restart it may be on the host as the kernel returned it from a
		// pod netns that is gone (under its pod name or dev<ifindex>).
		// Put it back as recorded at Prepare and attach again.
		if rerr := p.host.Detach(ctx, "", d.Spec.PodIfName, *d.Original); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restore it on the host: %w", rerr))
		} else {
			logger.Info("Restored the device on the host before attaching it", "firstErr", err)
			err = p.host.Attach(ctx, netns, d.Spec, id)
		}
	}
	if err != nil {
		return false, fmt.Errorf("%s: attach netdev %s to netns %s as %s: %w", devRef(d), d.Spec.HostIfName, netns, d.Spec.PodIfName, err)
	}
	steps.mark(StepAttach)
	faults.Point(faults.AttachMoved)
	if rdma && !ib {
		if err := p.host.MoveRDMA(ctx, d.RDMADevice, netns); err != nil {
			return false, fmt.Errorf("%s: move RDMA device %s into netns %s: %w", devRef(d), d.RDMADevice, netns, err)
		}
	}
	if err := p.devs.Attached(d.ClaimUID, d.Device, rdma); err != nil {
		return false, fmt.Errorf("%s: record attach done: %w", devRef(d), err)
	}
	faults.Point(faults.AttachCompleted)
	steps.mark(StepRecordAttached)
	if err := p.markAttached(d); err != nil {
		return false, err
	}
	steps.mark(StepMarker)
	logger.V(3).Info("Attached", "netns", netns, "ifName", d.Spec.PodIfName, "rdma", rdma)
	return true, nil
}

// markAttached creates the device's "attached" marker: from now on the
// runtime can create the pod's containers, which bind-mount it.
func (p *Plugin) markAttached(d PodDevice) error {
	if p.marks == nil {
		return nil
	}
	if err := p.marks.Create(d.ClaimUID, d.Device); err != nil {
		return fmt.Errorf("%s: %w", devRef(d), err)
	}
	return nil
}

// detachGone returns the pod's netdevs recorded in network namespaces
// that no longer exist (the kernel gave physical ones back to the host).
func (p *Plugin) detachGone(ctx context.Context, uid string) error {
	seen := map[string]bool{}
	var errs []error
	for _, d := range p.devs.ForPod(uid) {
		ns := d.NetnsPath
		if d.VFIO || ns == "" || seen[ns] || p.netnsExists(ns) {
			continue
		}
		seen[ns] = true
		errs = append(errs, p.detachPod(ctx, uid, ns))
	}
	return errors.Join(errs...)
}

// detachPod returns the pod's netdevs recorded in the netns at netns (in
// any netns when netns is ""). When one could not be returned, that netns
// stays pending for a retry.
func (p *Plugin) detachPod(ctx context.Context, uid, netns string) error {
	p.locate(ctx, uid, netns)
	var errs []error
	failed := map[string]bool{}
	for _, d := range p.devs.ForPod(uid) {
		if d.VFIO || d.NetnsPath == "" || (netns != "" && d.NetnsPath != netns) {
			continue
		}
		if err := p.detachDevice(ctx, d); err != nil {
			errs = append(errs, err)
			failed[d.NetnsPath] = true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pend := p.pending[uid]
	if netns == "" {
		pend = nil
	} else {
		delete(pend, netns)
	}
	for ns := range failed {
		if pend == nil {
			pend = map[string]time.Time{}
		}
		if old, ok := p.pending[uid][ns]; ok {
			pend[ns] = old
		} else {
			pend[ns] = time.Now()
		}
	}
	if len(pend) == 0 {
		delete(p.pending, uid)
	} else {
		p.pending[uid] = pend
	}
	return errors.Join(errs...)
}

// DetachDevice returns one device to the host for the driver's Unprepare
// when the runtime never stopped the pod: RDMA device first, then the
// netdev under its original name, then the record. It is one more caller
// of the one detach (detachDevice) and takes the pod's lock like the
// others (the background teardown, RetryPending, the reconcile), then
// reads the device's record again: when another caller returned the
// device meanwhile, it does nothing. So a device is detached once, its
// marker removed once and Detached recorded once, whoever gets there
// first. A device not recorded in a netns is left alone. When ctx ends
// while another detach of the pod is still running it returns ctx's error
// (Unprepare is retried).
func (p *Plugin) DetachDevice(ctx context.Context, d PodDevice) error {
	if d.VFIO || (d.NetnsPath == "" && !fromKernel(d)) {
		return nil
	}
	unlock, err := p.lockPodCtx(ctx, d.PodUID)
	if err != nil {
		return fmt.Errorf("%s: wait for the other detach of pod %s to finish: %w", devRef(d), d.PodUID, err)
	}
	defer unlock()
	cur, ok := p.recorded(d)
	if !ok {
		// Not (or no longer) a completed claim of the pod: no hook can
		// reach it, so nothing else detaches it; use what the caller has.
		cur = d
	}
	if !cur.VFIO && cur.NetnsPath == "" && fromKernel(cur) {
		return p.restoreUnlocated(ctx, cur)
	}
	if cur.VFIO || cur.NetnsPath == "" {
		klog.FromContext(ctx).V(3).Info("Device already back on the host", "device", d.Device, "claimUID", d.ClaimUID, "netns", d.NetnsPath)
		return nil
	}
	return p.detachDevice(ctx, cur)
}

// restoreUnlocated is the detach of a device whose attach state is
// derived from the kernel when no netns is known for it (after a restart,
// no sandbox of the pod had it): the marker goes, and the device is put
// back as recorded at Prepare when it is on the host changed (the kernel
// returns a physical netdev from a netns that is gone under its pod
// name). A device on the host as recorded is left as it is; one found
// nowhere is logged: with no sandbox left to look in, there is nothing
// more to do for it. Caller holds the pod's lock.
func (p *Plugin) restoreUnlocated(ctx context.Context, d PodDevice) error {
	if m := p.marks; m != nil {
		if err := m.Remove(d.ClaimUID, d.Device); err != nil {
			return fmt.Errorf("%s: %w", devRef(d), err)
		}
	}
	orig := *d.Original
	orig.Identity = identity(d)
	err := p.host.Detach(ctx, "", d.Spec.PodIfName, orig)
	if errors.Is(err, netattach.ErrDeviceGone) {
		klog.FromContext(ctx).Info("Device not on the host and in no known netns: nothing to restore", "device", d.Device, "claimUID", d.ClaimUID, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: restore netdev %s on the host: %w", devRef(d), orig.IfName, err)
	}
	return nil
}

// recorded returns d's current record among its pod's devices. Caller
// holds the pod's lock.
func (p *Plugin) recorded(d PodDevice) (PodDevice, bool) {
	for _, c := range p.devs.ForPod(d.PodUID) {
		if c.ClaimUID == d.ClaimUID && c.Device == d.Device {
			return c, true
		}
	}
	return PodDevice{}, false
}

// detachDevice is the one detach of a device. Every caller holds the
// pod's lock and passes the record as read under it.
func (p *Plugin) detachDevice(ctx context.Context, d PodDevice) error {
	if d.VFIO || d.NetnsPath == "" {
		return nil
	}
	// The marker goes first: no container of the pod may be created from
	// now on (the runtime fails those that bind-mount it).
	if m := p.marks; m != nil {
		if err := m.Remove(d.ClaimUID, d.Device); err != nil {
			return fmt.Errorf("%s: %w", devRef(d), err)
		}
	}
	if d.Original == nil {
		return fmt.Errorf("%s: recorded in netns %s without its original host name: cannot restore it", devRef(d), d.NetnsPath)
	}
	// RDMA may have moved even when the record says not (a crash between
	// the move and Attached): returning an RDMA device that is on the host
	// already is a no-op.
	nsPath := p.reachNetns(ctx, d.NetnsPath)
	if d.RDMAIsolation && d.RDMADevice != "" {
		if err := p.host.ReturnRDMA(ctx, d.RDMADevice, nsPath); err != nil {
			return fmt.Errorf("%s: return RDMA device %s from netns %s: %w", devRef(d), d.RDMADevice, d.NetnsPath, err)
		}
	}
	orig := *d.Original
	orig.Identity = identity(d)
	if err := p.host.Detach(ctx, nsPath, d.Spec.PodIfName, orig); err != nil {
		return fmt.Errorf("%s: return netdev %s from netns %s to the host as %s: %w", devRef(d), d.Spec.PodIfName, d.NetnsPath, d.Original.IfName, err)
	}
	faults.Point(faults.DetachMoved)
	if err := p.devs.Detached(d.ClaimUID, d.Device); err != nil {
		return fmt.Errorf("%s: record detach: %w", devRef(d), err)
	}
	faults.Point(faults.DetachCompleted)
	p.releaseNetns(ctx, d.PodUID, d.NetnsPath)
	klog.FromContext(ctx).V(3).Info("Detached", "device", d.Device, "claimUID", d.ClaimUID, "netns", d.NetnsPath, "hostIfName", d.Original.IfName)
	return nil
}

// Pending returns, per pod UID, the netns paths with a detach still to
// finish.
func (p *Plugin) Pending() map[string][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]string, len(p.pending))
	for uid, m := range p.pending {
		for ns := range m {
			out[uid] = append(out[uid], ns)
		}
	}
	return out
}

// RetryPending retries the detaches that could not finish. Run calls it
// every RetryInterval.
func (p *Plugin) RetryPending(ctx context.Context) {
	p.releaseUnusedHolds(ctx)
	for uid, nss := range p.Pending() {
		logger := klog.FromContext(ctx).WithValues("podUID", uid)
		for _, ns := range nss {
			unlock := p.lockPod(uid)
			err := p.detachPod(klog.NewContext(ctx, logger), uid, ns)
			unlock()
			if err != nil {
				logger.V(2).Info("Detach still not finished", "netns", ns, "err", err)
				continue
			}
			logger.Info("Finished a detach that had failed before", "netns", ns)
		}
	}
}

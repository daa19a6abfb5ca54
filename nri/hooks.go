package nri

// The NRI hook entry points, each a short list of named steps: the attach
// (attach.go), the detach (detach.go), the teardown within its budget
// (teardown.go), Synchronize's reconcile (reconcile.go) and the IRQ
// pinning (irqaffinity.go).

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"
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

// RunPodSandbox attaches the pod's netdevs to its network namespace. An
// error fails the sandbox; the runtime retries with a new one.
func (p *Plugin) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) (err error) {
	uid := pod.GetUid()
	if len(p.devs.ForPod(uid)) == 0 {
		return nil
	}
	start := time.Now()
	defer func() { p.observe(HookRunPodSandbox, start, err) }()
	ctx, devs, unlock := p.enterHook(ctx, pod)
	defer unlock()

	p.remember(pod)
	netns := netnsOf(pod)
	if netns == "" {
		return hostNetworkError(pod, devs)
	}
	if err := p.attachSandbox(ctx, uid, netns, devs); err != nil {
		return fmt.Errorf("pod %s: %w", podRef(pod), err)
	}
	klog.FromContext(ctx).V(2).Info("Attached the pod's devices", "netns", netns, "devices", len(devs), "duration", time.Since(start))
	return nil
}

// CreateContainer refuses the container unless each of the pod's netdevs
// is in the pod's network namespace (attaching it first when the plugin
// missed RunPodSandbox), then pins IRQs for devices with irqAffinity.
func (p *Plugin) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (_ *api.ContainerAdjustment, _ []*api.ContainerUpdate, err error) {
	if len(p.devs.ForPod(pod.GetUid())) == 0 {
		return nil, nil, nil
	}
	start := time.Now()
	defer func() { p.observe(HookCreateContainer, start, err) }()
	ctx, devs, unlock := p.enterHook(ctx, pod, "container", ctr.GetName())
	defer unlock()

	info := p.remember(pod)
	if err := p.requireAttached(ctx, pod, ctr, info.netns, devs); err != nil {
		return nil, nil, err
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

// Synchronize reconciles with the runtime's pods on every (re)connect:
// devices of pods that run are attached to their netns, devices recorded
// in a netns of a pod that is gone are returned to the host.
func (p *Plugin) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	start := time.Now()
	view := newRuntimeView(pods, ctrs)
	// Reconcile in the background: attaches and detaches for many pods
	// can take longer than the runtime's request timeout, and hooks must
	// not wait for the runtime's sync lock. Hooks that arrive meanwhile
	// win: their pods are skipped (touched).
	gen := p.beginReconcile()
	ctx = context.WithoutCancel(ctx)
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		p.reconcile(ctx, gen, view, start)
	}()
	return nil, nil
}

// enterHook starts a hook's work on the pod: the pod goes into the logger
// of the returned context (with kv), the pod's lock is taken (hookLock)
// and the pod's devices are read again, as they are now that the pod is
// the hook's. The caller calls unlock when done.
func (p *Plugin) enterHook(ctx context.Context, pod *api.PodSandbox, kv ...any) (_ context.Context, devs []PodDevice, unlock func()) {
	ctx = klog.NewContext(ctx, podLogger(ctx, pod, kv...))
	unlock = p.hookLock(pod.GetUid())
	return ctx, p.devs.ForPod(pod.GetUid()), unlock
}

// hookLock is lockPod for hooks: the runtime's word on the pod is newer
// than any pending reconcile's.
func (p *Plugin) hookLock(uid string) func() {
	p.touch(uid)
	return p.lockPod(uid)
}

package nri

// The teardown of StopPodSandbox and RemovePodSandbox: the detach runs in
// the background and the hook returns after at most TeardownBudget; what
// could not finish stays pending and is retried every RetryInterval.

import (
	"context"
	"time"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"
)

// teardown returns the devices of the pod's sandbox to the host, waiting
// for that at most TeardownBudget.
func (p *Plugin) teardown(ctx context.Context, pod *api.PodSandbox, hook string) {
	uid := pod.GetUid()
	if len(p.devs.ForPod(uid)) == 0 {
		return
	}
	start := time.Now()
	logger := podLogger(ctx, pod, "hook", hook)
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
		err := p.detachSandbox(ctx, pod)
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

// detachSandbox returns the pod's devices recorded in this sandbox's
// netns. Caller holds the pod's lock.
func (p *Plugin) detachSandbox(ctx context.Context, pod *api.PodSandbox) error {
	// Only what is in this sandbox's netns: kubelet removes an old
	// sandbox of a pod after it started a new one. A sandbox reported
	// without a network namespace (a stopped one: containerd lists
	// them without namespaces) and not seen running by this plugin
	// returns only devices recorded in a netns that is gone, never
	// those of a newer sandbox's live netns.
	if ns := p.sandboxNetns(pod); ns != "" {
		return p.detachPod(ctx, pod.GetUid(), ns)
	}
	return p.detachGone(ctx, pod.GetUid())
}

// setPending records the outcome of a detach of the pod's devices in
// netns ("": in any netns): the namespaces in failed stay pending (since
// their first failure), the others are done.
func (p *Plugin) setPending(uid, netns string, failed map[string]bool) {
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

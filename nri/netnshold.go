package nri

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Runtimes differ in when the pod network namespace goes away. containerd
// removes its bind mount after StopPodSandbox has reached the NRI plugins;
// CRI-O removes it before: its StopPodSandbox runs CNI DEL, stops the
// containers, unmounts the pinned namespaces and only then calls the
// plugins. With no process left in it the namespace is then destroyed,
// and the kernel moves a physical netdev back to the host under whatever
// name it had in the pod (or deletes a virtual one), before the plugin
// could restore its name, MAC and MTU.
//
// So the plugin holds each pod netns it attaches to (an open file of the
// namespace) until the last of its devices recorded there is detached.
// When the runtime's path is gone by the time of the detach, the detach
// reaches the namespace through the hold and restores the device as
// usual. A namespace the plugin does not hold (a driver restart between
// the runtime's removal and the teardown) is the kernel's case: Detach
// finds the device on the host by its identity.

// NetnsHolder is implemented by HostOps that can keep a network namespace
// alive (NewHostOps' does). Without it the plugin holds nothing.
type NetnsHolder interface {
	// HoldNetns opens the network namespace at path and keeps it open
	// until the hold is closed.
	HoldNetns(path string) (NetnsHold, error)
}

// NetnsHold is a held network namespace.
type NetnsHold interface {
	// Path reaches the namespace for as long as the hold is open, also
	// after the runtime removed its own path.
	Path() string
	Close() error
}

// heldNetns is a hold and the pod whose device it was taken for.
type heldNetns struct {
	hold   NetnsHold
	podUID string
}

// holdNetns holds the netns at path for the pod unless it is held
// already. A namespace that cannot be held is logged and attached all the
// same: the hold only matters if the runtime removes the namespace before
// the teardown reaches the plugin. The caller holds the pod's lock.
func (p *Plugin) holdNetns(ctx context.Context, podUID, path string) {
	h, ok := p.host.(NetnsHolder)
	if !ok || path == "" {
		return
	}
	p.mu.Lock()
	_, held := p.holds[path]
	p.mu.Unlock()
	if held {
		return
	}
	hold, err := h.HoldNetns(path)
	if err != nil {
		klog.FromContext(ctx).Info("Could not hold the pod network namespace; should the runtime remove it before StopPodSandbox, the device is looked for on the host", "netns", path, "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, held := p.holds[path]; held {
		_ = hold.Close() // another pod's hook got there first (the same path)
		return
	}
	p.holds[path] = heldNetns{hold: hold, podUID: podUID}
}

// reachNetns is the path a detach uses for the netns recorded at path:
// path itself while it exists, the hold's once the runtime removed it.
func (p *Plugin) reachNetns(ctx context.Context, path string) string {
	p.mu.Lock()
	h, held := p.holds[path]
	p.mu.Unlock()
	if !held {
		return path
	}
	if gone, why, err := p.host.NetnsGone(path); err == nil && gone {
		klog.FromContext(ctx).V(2).Info("The runtime removed the pod netns before the teardown reached the plugin: detaching through the plugin's hold", "netns", path, "reason", why, "hold", h.hold.Path())
		return h.hold.Path()
	}
	return path
}

// releaseNetns closes the hold of the netns at path once no device of the
// pod is recorded there any more. The caller holds the pod's lock.
func (p *Plugin) releaseNetns(ctx context.Context, podUID, path string) {
	for _, d := range p.devs.ForPod(podUID) {
		if !d.VFIO && d.NetnsPath == path {
			return
		}
	}
	p.closeHold(ctx, path)
}

func (p *Plugin) closeHold(ctx context.Context, path string) {
	p.mu.Lock()
	h, held := p.holds[path]
	delete(p.holds, path)
	p.mu.Unlock()
	if !held {
		return
	}
	if err := h.hold.Close(); err != nil {
		klog.FromContext(ctx).Error(err, "Closing the hold of a pod network namespace", "netns", path)
	}
}

// releaseUnusedHolds closes the holds of namespaces none of their pod's
// devices is recorded in (a sandbox that failed before its first device
// was recorded, a claim unprepared meanwhile). RetryPending calls it; it
// takes each pod's lock, so an attach that holds a namespace and has not
// recorded it yet keeps its hold.
func (p *Plugin) releaseUnusedHolds(ctx context.Context) {
	p.mu.Lock()
	byPod := map[string][]string{}
	for path, h := range p.holds {
		byPod[h.podUID] = append(byPod[h.podUID], path)
	}
	p.mu.Unlock()
	for uid, paths := range byPod {
		unlock := p.lockPod(uid)
		for _, path := range paths {
			p.releaseNetns(ctx, uid, path)
		}
		unlock()
	}
}

// Holds returns the paths of the network namespaces the plugin holds.
func (p *Plugin) Holds() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.holds))
	for path := range p.holds {
		out = append(out, path)
	}
	return out
}

// fileHold is a NetnsHold over an open namespace file.
type fileHold struct{ f *os.File }

func (h fileHold) Path() string { return fmt.Sprintf("/proc/self/fd/%d", h.f.Fd()) }
func (h fileHold) Close() error { return h.f.Close() }

// HoldNetns opens the namespace file. It must be a network namespace
// (nsfs): a plain file left where a namespace was is refused.
func (o *hostOps) HoldNetns(path string) (NetnsHold, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hold netns %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("hold netns %s: statfs: %w", path, err)
	}
	if st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("hold netns %s: not a namespace file (filesystem type %#x)", path, st.Type)
	}
	return fileHold{f: f}, nil
}

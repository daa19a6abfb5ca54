package nri

// The irqAffinity option: the cpusets of the pod's containers, followed
// through CreateContainer, UpdateContainer and RemoveContainer, and the
// VF IRQs pinned to their union.

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"
	"k8s.io/utils/cpuset"

	"github.com/sriov-dra/sriov-dra/pkg/irq"
)

// unionCPUs returns the union of the cpusets (CPU lists such as "0-3,8")
// as a canonical CPU list. Empty cpusets add nothing; the union of none is
// "". A malformed cpuset, or one naming a CPU beyond irq.MaxCPUs (the
// runtime's value is not trusted to be sane), is an error that names the
// container; irq.Set checks the union against the machine's own CPUs.
func unionCPUs(byContainer map[string]string) (string, error) {
	ids := make([]string, 0, len(byContainer))
	for id := range byContainer {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	union := cpuset.New()
	for _, id := range ids {
		s := strings.TrimSpace(byContainer[id])
		if s == "" {
			continue
		}
		cpus, err := irq.ParseCPUList(s, irq.MaxCPUs)
		if err != nil {
			return "", fmt.Errorf("cpuset of container %s: %w", id, err)
		}
		union = union.Union(cpus)
	}
	return union.String(), nil
}

// updateCPUs changes one container's cpuset and re-pins the IRQs when the
// pod's union changed. Errors are logged: the container exists already.
func (p *Plugin) updateCPUs(ctx context.Context, pod *api.PodSandbox, ctrID, cpus string, remove bool) {
	if !anyIRQAffinity(p.devs.ForPod(pod.GetUid())) {
		return
	}
	ctx, devs, unlock := p.enterHook(ctx, pod)
	defer unlock()
	info := p.known(pod.GetUid())
	if info == nil {
		return
	}
	if !info.setCPUs(ctrID, cpus, remove) {
		return
	}
	if err := p.pinIRQs(ctx, devs, info); err != nil {
		klog.FromContext(ctx).Error(err, "Re-pinning IRQs after a cpuset change")
	}
}

// setCPUs sets one container's cpuset (with remove, drops it) and reports
// whether the union of the pod's cpusets changed.
func (i *podInfo) setCPUs(ctrID, cpus string, remove bool) bool {
	before, _ := unionCPUs(i.cpus)
	if remove {
		delete(i.cpus, ctrID)
	} else {
		i.cpus[ctrID] = cpus
	}
	after, _ := unionCPUs(i.cpus)
	return after != before
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

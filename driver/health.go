package driver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"time"

	"github.com/vishvananda/netlink"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
)

// healthTimeout is what kubelet is told to wait for a fresh report; the
// driver re-sends well within it (Config.HealthResend).
const healthTimeout = 30 * time.Second

// WatchHealthStatus implements kubeletserver.Plugin. A device is
// unhealthy when it vanished from the host or, for a VF, when its PF link
// is down. Reports go out at once, after every rescan (link events trigger
// one) and at least every HealthResend.
func (d *Driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletserver.DeviceHealthReport) error {
	logger := klog.FromContext(ctx)
	resend := time.NewTicker(d.cfg.HealthResend)
	defer resend.Stop()
	var last map[string]kubeletserver.HealthStatus
	for {
		changed := d.inventoryChanged()
		report := d.healthReport(ctx)
		cur := map[string]kubeletserver.HealthStatus{}
		for _, h := range report.Devices {
			cur[h.DeviceName] = h.Health
			if last != nil && last[h.DeviceName] != h.Health {
				logger.Info("Device health changed", "device", h.DeviceName, "health", h.Health, "reason", h.Message)
			}
		}
		last = cur
		select {
		case <-ctx.Done():
			return nil
		case reports <- report:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-resend.C:
		}
	}
}

// Taint values of TaintKeyUnhealthy, one per cause.
const (
	// TaintKeyUnhealthy is the key of the NoSchedule taint the driver puts
	// on a published device it reports unhealthy to kubelet, so that the
	// scheduler stops allocating it until it recovers.
	TaintKeyUnhealthy = inventory.AttributeDomain + "/unhealthy"
	// TaintVanished: the device is gone from the host (a prepared device
	// stays published until it is released).
	TaintVanished = "vanished"
	// TaintPFLinkDown: the PF netdev is administratively or operationally
	// down.
	TaintPFLinkDown = "pf-link-down"
	// TaintPFMissing: the PF netdev cannot be found.
	TaintPFMissing = "pf-missing"
)

// deviceHealth is the health of one device of the pool; taint is the
// TaintKeyUnhealthy value it is published with, "" for none.
type deviceHealth struct {
	kubeletserver.DeviceHealth
	taint string
}

// healthReport computes the health of every device of the pool.
func (d *Driver) healthReport(ctx context.Context) kubeletserver.DeviceHealthReport {
	report := kubeletserver.DeviceHealthReport{}
	for _, h := range d.deviceHealth() {
		report.Devices = append(report.Devices, h.DeviceHealth)
	}
	klog.FromContext(ctx).V(5).Info("Health report", "devices", len(report.Devices))
	return report
}

// healthTaints returns, by device name, the NoSchedule taint of each
// unhealthy device (health Unknown gets none: the driver does not know
// the device is bad).
func (d *Driver) healthTaints() map[string][]resourceapi.DeviceTaint {
	out := map[string][]resourceapi.DeviceTaint{}
	for _, h := range d.deviceHealth() {
		if h.taint != "" {
			out[h.DeviceName] = []resourceapi.DeviceTaint{{Key: TaintKeyUnhealthy, Value: h.taint, Effect: resourceapi.DeviceTaintEffectNoSchedule}}
		}
	}
	return out
}

// deviceHealth computes the health of every device of the pool, sorted by
// name. A device is unhealthy when it vanished from the host or, for a VF
// (or a PF offered whole and not prepared), when its PF link is down.
func (d *Driver) deviceHealth() []deviceHealth {
	now := time.Now()
	inv := d.inventory()
	present := map[string]*inventory.Device{}
	pfs := map[string]*inventory.Device{}
	var names []string
	if inv != nil {
		for i := range inv.Devices {
			dev := &inv.Devices[i]
			present[dev.Name] = dev
			if dev.Kind == inventory.KindPF {
				pfs[dev.PCIAddress] = dev
			}
		}
		for _, dev := range inv.Publishable(d.cfg.PassthroughPFs) {
			names = append(names, dev.Name)
		}
	}
	prepared := d.state.PublishedDevices()
	lostDevs := map[string]LostDevice{}
	for _, l := range d.state.LostDevices() {
		lostDevs[l.Device] = l
	}
	for name := range prepared {
		if _, ok := present[name]; !ok || !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	names = slices.Compact(names)

	type linkVerdict struct{ why, taint string }
	linkUp := map[string]linkVerdict{} // PF netdev -> zero (up) or why not
	pfState := func(pfName string) linkVerdict {
		if v, ok := linkUp[pfName]; ok {
			return v
		}
		var v linkVerdict
		if d.cfg.Netlink != nil {
			l, err := d.cfg.Netlink.LinkByName(pfName)
			switch {
			case err != nil:
				v = linkVerdict{fmt.Sprintf("PF %s not found: %v", pfName, err), TaintPFMissing}
			case l.Attrs().Flags&net.FlagUp == 0:
				v = linkVerdict{fmt.Sprintf("PF %s is administratively down", pfName), TaintPFLinkDown}
			case l.Attrs().OperState == netlink.OperDown || l.Attrs().OperState == netlink.OperLowerLayerDown:
				v = linkVerdict{fmt.Sprintf("PF %s link is down (%s)", pfName, l.Attrs().OperState), TaintPFLinkDown}
			}
		}
		linkUp[pfName] = v
		return v
	}

	out := make([]deviceHealth, 0, len(names))
	for _, name := range names {
		h := deviceHealth{DeviceHealth: kubeletserver.DeviceHealth{PoolName: d.cfg.NodeName, DeviceName: name, Health: kubeletserver.HealthStatusHealthy, LastUpdated: now, HealthCheckTimeout: healthTimeout}}
		unhealthy := func(v linkVerdict) {
			h.Health, h.Message, h.taint = kubeletserver.HealthStatusUnhealthy, v.why, v.taint
		}
		dev, ok := present[name]
		l, isLost := lostDevs[name]
		switch {
		case isLost:
			unhealthy(linkVerdict{fmt.Sprintf("device lost: gone while claim %s/%s held it (released %s), not back with its identity (%s)", l.ClaimNamespace, l.ClaimName, l.Since, l.Identity), TaintLost})
		case !ok:
			unhealthy(linkVerdict{"device vanished from the host", TaintVanished})
		case dev.Kind == inventory.KindVF:
			pfName := dev.PFName
			if pf := pfs[dev.PFPCIAddress]; pf != nil && pf.IfName != "" {
				pfName = pf.IfName
			}
			if pfName == "" {
				h.Health, h.Message = kubeletserver.HealthStatusUnknown, "PF has no netdev"
			} else if v := pfState(pfName); v.why != "" {
				unhealthy(v)
			}
		case dev.Kind == inventory.KindPF:
			if _, isPrepared := prepared[name]; !isPrepared && dev.IfName != "" {
				if v := pfState(dev.IfName); v.why != "" {
					unhealthy(v)
				}
			}
		}
		out = append(out, h)
	}
	return out
}

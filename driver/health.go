package driver

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"time"

	"github.com/vishvananda/netlink"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// healthTimeout is what kubelet is told to wait for a fresh report; the
// driver re-sends well within it (Config.HealthResend).
const healthTimeout = 30 * time.Second

// WatchHealthStatus implements kubeletplugin.DRAPlugin. A device is
// unhealthy when it vanished from the host or, for a VF, when its PF link
// is down. Reports go out at once, after every rescan (link events trigger
// one) and at least every HealthResend.
func (d *Driver) WatchHealthStatus(ctx context.Context, reports chan<- kubeletplugin.DeviceHealthReport) error {
	logger := klog.FromContext(ctx)
	resend := time.NewTicker(d.cfg.HealthResend)
	defer resend.Stop()
	var last map[string]kubeletplugin.HealthStatus
	for {
		changed := d.inventoryChanged()
		report := d.healthReport(ctx)
		cur := map[string]kubeletplugin.HealthStatus{}
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

// healthReport computes the health of every device of the pool.
func (d *Driver) healthReport(ctx context.Context) kubeletplugin.DeviceHealthReport {
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
	for name := range prepared {
		if _, ok := present[name]; !ok || !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	names = slices.Compact(names)

	linkUp := map[string]string{} // PF netdev -> "" (up) or why not
	pfState := func(pfName string) string {
		if why, ok := linkUp[pfName]; ok {
			return why
		}
		why := ""
		if d.cfg.Netlink != nil {
			l, err := d.cfg.Netlink.LinkByName(pfName)
			switch {
			case err != nil:
				why = fmt.Sprintf("PF %s not found: %v", pfName, err)
			case l.Attrs().Flags&net.FlagUp == 0:
				why = fmt.Sprintf("PF %s is administratively down", pfName)
			case l.Attrs().OperState == netlink.OperDown || l.Attrs().OperState == netlink.OperLowerLayerDown:
				why = fmt.Sprintf("PF %s link is down (%s)", pfName, l.Attrs().OperState)
			}
		}
		linkUp[pfName] = why
		return why
	}

	report := kubeletplugin.DeviceHealthReport{}
	for _, name := range names {
		h := kubeletplugin.DeviceHealth{PoolName: d.cfg.NodeName, DeviceName: name, Health: kubeletplugin.HealthStatusHealthy, LastUpdated: now, HealthCheckTimeout: healthTimeout}
		dev, ok := present[name]
		switch {
		case !ok:
			h.Health, h.Message = kubeletplugin.HealthStatusUnhealthy, "device vanished from the host"
		case dev.Kind == inventory.KindVF:
			pfName := dev.PFName
			if pf := pfs[dev.PFPCIAddress]; pf != nil && pf.IfName != "" {
				pfName = pf.IfName
			}
			if pfName == "" {
				h.Health, h.Message = kubeletplugin.HealthStatusUnknown, "PF has no netdev"
			} else if why := pfState(pfName); why != "" {
				h.Health, h.Message = kubeletplugin.HealthStatusUnhealthy, why
			}
		case dev.Kind == inventory.KindPF:
			if _, isPrepared := prepared[name]; !isPrepared && dev.IfName != "" {
				if why := pfState(dev.IfName); why != "" {
					h.Health, h.Message = kubeletplugin.HealthStatusUnhealthy, why
				}
			}
		}
		report.Devices = append(report.Devices, h)
	}
	klog.FromContext(ctx).V(5).Info("Health report", "devices", len(report.Devices))
	return report
}

package driver

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// notOffered is Prepare's error for a device the node does not offer;
// for a PF it says why the PF is not offered whole.
func notOffered(inv *inventory.Inventory, name string, passthroughPFs []string) error {
	const msg = "device is not in this node's inventory of offered devices"
	if why, ok := inv.WholePFVerdicts(passthroughPFs)[name]; ok {
		return fmt.Errorf("%s: PF %s", msg, why)
	}
	return errors.New(msg)
}

// logPFRefusals logs why a PF the admin listed for passthrough is not
// offered whole (the host uses its netdev), once when that starts or the
// reason changes, not on every scan.
func (d *Driver) logPFRefusals(ctx context.Context, prev, next *inventory.Inventory) {
	if len(d.cfg.PassthroughPFs) == 0 {
		return
	}
	var before map[string]string
	if prev != nil {
		before = prev.WholePFVerdicts(d.cfg.PassthroughPFs)
	}
	now := next.WholePFVerdicts(d.cfg.PassthroughPFs)
	names := make([]string, 0, len(now))
	for n := range now {
		names = append(names, n)
	}
	sort.Strings(names)
	logger := klog.FromContext(ctx)
	for _, n := range names {
		why := now[n]
		if !inventory.IsPFRefusal(why) || before[n] == why {
			continue
		}
		dev, _ := next.Find(n)
		logger.Info("PF listed for passthrough is not offered whole", "device", n, "pci", dev.PCIAddress, "pf", dev.IfName, "reason", why)
	}
}

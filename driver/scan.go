package driver

// This file keeps the driver's last device scan: a full or partial
// rescan, confirmed by a second one when devices vanish, and the
// inventory the rest of the driver reads.

import (
	"context"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// scan runs the inventory scan and keeps the result.
func (d *Driver) scan(ctx context.Context) (*inventory.Inventory, error) {
	return d.scanWith(ctx, d.cfg.Scanner.Scan)
}

// scanWith runs a scan (full, or of some PFs) and keeps the result.
func (d *Driver) scanWith(ctx context.Context, scan func(context.Context) (*inventory.Inventory, error)) (*inventory.Inventory, error) {
	inv, err := scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("scan devices: %w", err)
	}
	prev := d.inventory()
	if prev != nil {
		if gone := vanished(prev, inv); len(gone) > 0 {
			// Withdrawing devices from the pool (and reporting held ones
			// unhealthy) takes two scans that agree: a device is briefly
			// absent while its driver rebinds, and one odd read must not
			// empty the node's pool.
			klog.FromContext(ctx).Info("Devices missing from a scan; confirming with a second one", "devices", gone, "after", vanishConfirmDelay)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(vanishConfirmDelay):
			}
			if inv, err = scan(ctx); err != nil {
				return nil, fmt.Errorf("scan devices: %w", err)
			}
		}
	}
	d.invMu.Lock()
	d.inv = inv
	d.invGen++
	close(d.invCond)
	d.invCond = make(chan struct{})
	d.invMu.Unlock()
	d.updateDeviceMetrics()
	d.reviewLost(ctx, inv)
	d.logPFRefusals(ctx, prev, inv)
	return inv, nil
}

// vanishConfirmDelay is the pause before the scan that confirms devices
// went away.
const vanishConfirmDelay = 100 * time.Millisecond

// vanished lists the devices of prev that next lacks (at most 5 names).
func vanished(prev, next *inventory.Inventory) []string {
	have := make(map[string]bool, len(next.Devices))
	for i := range next.Devices {
		have[next.Devices[i].Name] = true
	}
	var gone []string
	for i := range prev.Devices {
		if n := prev.Devices[i].Name; !have[n] {
			if len(gone) == 5 {
				gone = append(gone, "...")
				break
			}
			gone = append(gone, n)
		}
	}
	return gone
}

// inventory returns the last scan.
func (d *Driver) inventory() *inventory.Inventory {
	d.invMu.Lock()
	defer d.invMu.Unlock()
	return d.inv
}

// inventoryChanged returns a channel closed at the next scan.
func (d *Driver) inventoryChanged() <-chan struct{} {
	d.invMu.Lock()
	defer d.invMu.Unlock()
	return d.invCond
}

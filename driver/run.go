package driver

// This file is the driver's Run loop: it keeps the pool current by
// rescanning (debounced) on device events, prepare and unprepare, VF
// config changes and a slow poll, and runs the background releases.

import (
	"context"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// TriggerRescan asks the Run loop for a rescan (debounced).
func (d *Driver) TriggerRescan() {
	select {
	case d.rescan <- struct{}{}:
	default:
	}
}

// Run publishes the pool and keeps it current until ctx is done, and
// publishes only what changed. It rescans, debounced: the PFs device
// events concern (Config.DeviceEvents: uevents, link events), everything
// on prepare/unprepare, when the VF config file changed and after lost
// events; and everything on the slow poll (the
// safety net).
//
// In the background it also retries pending releases of records from
// before a reboot (with backoff) and applies the admin's drop requests.
func (d *Driver) Run(ctx context.Context, pub Publisher) error {
	if _, err := d.provision(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "Rescan after provisioning VFs failed; the slow poll retries")
	}
	if _, err := d.publish(ctx, pub); err != nil {
		return err
	}
	stopBackground := d.startBackground(ctx)
	defer stopBackground()
	return d.keepPublished(ctx, pub)
}

// startBackground retries pending releases of stale records and polls
// the admin's drop requests until the returned stop is called; stop
// waits for both.
func (d *Driver) startBackground(ctx context.Context) (stop func()) {
	bgCtx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		d.retryStaleReleases(bgCtx)
	}()
	go func() {
		defer bg.Done()
		poll := d.cfg.DropPollInterval
		if poll <= 0 {
			poll = defaultDropPoll
		}
		wait.UntilWithContext(bgCtx, d.applyDropRequests, poll)
	}()
	return func() {
		cancel()
		bg.Wait()
	}
}

// subscribeDeviceEvents subscribes to Config.DeviceEvents and returns
// the events (nil without them) and the interval of the full-rescan
// poll: the configured one, or a fast one when the subscription failed.
func (d *Driver) subscribeDeviceEvents(ctx context.Context) (<-chan hwevents.Event, time.Duration) {
	pollEvery := d.cfg.PollInterval
	src := d.cfg.DeviceEvents
	if src == nil {
		return nil, pollEvery
	}
	ch, err := src.Subscribe(ctx)
	if err != nil {
		pollEvery = min(pollEvery, pollWithoutEvents)
		klog.FromContext(ctx).Error(err, "No device events; rescanning everything on a fast poll instead", "interval", pollEvery)
	}
	return ch, pollEvery
}

// pendingRescan is what the next debounced rescan covers: everything, or
// the PCI functions and netdevs the device events named.
type pendingRescan struct {
	full           bool
	pcis, ifNames  map[string]bool
	scheduled      bool
	debounce       *time.Timer
	debounceWindow time.Duration
}

// schedule starts the debounce unless a rescan is pending already.
func (p *pendingRescan) schedule() {
	if !p.scheduled {
		p.scheduled = true
		p.debounce.Reset(p.debounceWindow)
	}
}

// addEvent adds what a device event names and schedules the rescan.
func (p *pendingRescan) addEvent(ev hwevents.Event) {
	switch {
	case ev.Resync:
		p.full = true
	case ev.PCIAddress != "":
		p.pcis[ev.PCIAddress] = true
	}
	if ev.IfName != "" {
		p.ifNames[ev.IfName] = true
	}
	p.schedule()
}

// addFull schedules a rescan of everything.
func (p *pendingRescan) addFull() {
	p.full = true
	p.schedule()
}

// take returns what the debounced rescan covers and starts over.
func (p *pendingRescan) take() (full bool, pcis, ifNames []string) {
	full, pcis, ifNames = p.full, keys(p.pcis), keys(p.ifNames)
	p.scheduled, p.full = false, false
	clear(p.pcis)
	clear(p.ifNames)
	return full, pcis, ifNames
}

// keepPublished is Run's loop: it collects what to rescan from device
// events, rescan requests and VF config changes, rescans once the
// debounce is over (or everything at each poll), and publishes what
// changed.
func (d *Driver) keepPublished(ctx context.Context, pub Publisher) error {
	logger := klog.FromContext(ctx)
	devEvents, pollEvery := d.subscribeDeviceEvents(ctx)
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	var cfgCheck <-chan time.Time
	if d.cfg.VFConfig != nil {
		t := time.NewTicker(d.cfg.ConfigCheckInterval)
		defer t.Stop()
		cfgCheck = t.C
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	pending := &pendingRescan{pcis: map[string]bool{}, ifNames: map[string]bool{}, debounce: debounce, debounceWindow: d.cfg.Debounce}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-devEvents:
			if !ok {
				devEvents = nil
				if pollEvery > pollWithoutEvents {
					pollEvery = pollWithoutEvents
					poll.Reset(pollEvery)
					logger.Info("Device events ended; rescanning everything on a fast poll instead", "interval", pollEvery)
				}
				continue
			}
			pending.addEvent(ev)
		case <-d.rescan:
			pending.addFull()
		case <-cfgCheck:
			if d.cfg.VFConfig.Changed() {
				pending.addFull()
			}
		case <-poll.C:
			d.rescanAndPublish(ctx, pub)
		case <-debounce.C:
			if full, pcis, ifNames := pending.take(); full {
				d.rescanAndPublish(ctx, pub)
			} else {
				d.rescanPFsAndPublish(ctx, pub, pcis, ifNames)
			}
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rescanPFsAndPublish rescans the PFs that events about the given PCI
// functions and netdevs concern, and publishes what changed. Events that
// concern no PF (a veth, a NIC without SR-IOV) cost no scan at all.
func (d *Driver) rescanPFsAndPublish(ctx context.Context, pub Publisher, pcis, ifNames []string) {
	ps, ok := d.cfg.Scanner.(PFScanner)
	prev := d.inventory()
	if !ok || prev == nil {
		d.rescanAndPublish(ctx, pub)
		return
	}
	logger := klog.FromContext(ctx)
	// VF provisioning plans every PF it selects (a NIC that appeared may
	// be one); when it changed VFs it has scanned everything already.
	if scanned, err := d.provision(ctx); scanned {
		if err != nil {
			logger.Error(err, "Rescan failed; keeping the last published devices")
			return
		}
		d.publishOrRetry(ctx, pub)
		return
	}
	pfs := ps.AffectedPFs(prev, pcis, ifNames)
	if len(pfs) == 0 {
		logger.V(4).Info("Device events concern no SR-IOV PF; nothing to rescan", "pci", pcis, "ifNames", ifNames)
		return
	}
	logger.V(2).Info("Rescanning the PFs device events concern", "pfs", pfs, "pci", pcis, "ifNames", ifNames)
	if _, err := d.scanWith(ctx, func(ctx context.Context) (*inventory.Inventory, error) {
		return ps.ScanPFs(ctx, d.inventory(), pfs)
	}); err != nil {
		logger.Error(err, "Rescan failed; keeping the last published devices")
		return
	}
	d.publishOrRetry(ctx, pub)
}

func (d *Driver) rescanAndPublish(ctx context.Context, pub Publisher) {
	logger := klog.FromContext(ctx)
	// VF provisioning first: when it changed a PF's VFs it has scanned
	// already, and the publish below carries the change.
	scanned, err := d.provision(ctx)
	if !scanned {
		_, err = d.scan(ctx)
	}
	if err != nil {
		logger.Error(err, "Rescan failed; keeping the last published devices")
		return
	}
	d.publishOrRetry(ctx, pub)
}

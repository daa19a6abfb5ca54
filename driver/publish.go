package driver

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// MaxDevicesPerSlice is the API's limit of devices in one ResourceSlice.
const MaxDevicesPerSlice = 128

// BuildResources turns the scanned devices into the node's pool: one pool
// named after the node, devices sorted by name in slices of at most
// MaxDevicesPerSlice. A prepared device is published as it was before it
// was prepared (prepared maps device name to that device), also when the
// scan no longer sees it as before (its netdev lives in a pod). An empty
// pool is one slice without devices, so schedulers see the node has none
// rather than wondering whether the driver runs. taints maps device name
// to the taints the device is published with (see healthTaints).
func BuildResources(pool string, devs []inventory.Device, prepared map[string]inventory.Device, attrs AttributesFunc, taints map[string][]resourceapi.DeviceTaint) resourceslice.DriverResources {
	byName := make(map[string]inventory.Device, len(devs)+len(prepared))
	for _, d := range devs {
		byName[d.Name] = d
	}
	for name, d := range prepared {
		byName[name] = d
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)

	var slices []resourceslice.Slice
	for start := 0; start < len(names) || start == 0; start += MaxDevicesPerSlice {
		end := min(start+MaxDevicesPerSlice, len(names))
		s := resourceslice.Slice{Devices: []resourceapi.Device{}}
		for _, n := range names[start:end] {
			dev := byName[n]
			s.Devices = append(s.Devices, resourceapi.Device{Name: n, Attributes: attrs(dev), Taints: taints[n]})
		}
		slices = append(slices, s)
		if end == len(names) {
			break
		}
	}
	return resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{pool: {Slices: slices}}}
}

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

// poolDigest is the SHA-256 of the pool's JSON encoding (maps are
// encoded with sorted keys, so equal pools give equal digests).
func poolDigest(res resourceslice.DriverResources) ([sha256.Size]byte, error) {
	b, err := json.Marshal(res)
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("encode the pool to compare it with the last publication: %w", err)
	}
	return sha256.Sum256(b), nil
}

// publish publishes the current pool when it differs from the last
// publication. It reports whether it wrote.
func (d *Driver) publish(ctx context.Context, pub Publisher) (bool, error) {
	inv := d.inventory()
	var devs []inventory.Device
	if inv != nil {
		devs = inv.Publishable(d.cfg.PassthroughPFs)
	}
	taints := d.healthTaints()
	res := BuildResources(d.cfg.NodeName, devs, d.state.PublishedDevices(), d.cfg.Attributes, taints)
	// The last publication is remembered by a digest, not a copy: the
	// publisher keeps (and may update) what it is given, and a second
	// copy of a thousand devices' attributes is megabytes of heap.
	sum, err := poolDigest(res)
	if err != nil {
		return false, err
	}
	n := 0
	for _, s := range res.Pools[d.cfg.NodeName].Slices {
		n += len(s.Devices)
	}
	d.invMu.Lock()
	same := d.published != nil && *d.published == sum
	prevTaints := d.publishedTaints
	d.invMu.Unlock()
	if same {
		return false, nil
	}
	if err := pub.PublishResources(ctx, res); err != nil {
		return false, fmt.Errorf("publish ResourceSlices of pool %s: %w", d.cfg.NodeName, err)
	}
	d.invMu.Lock()
	d.published = &sum
	d.publishedTaints = taints
	d.invMu.Unlock()
	logTaintChanges(ctx, prevTaints, taints)
	if m := d.cfg.Metrics; m != nil {
		m.publishes.Inc()
	}
	klog.FromContext(ctx).V(2).Info("Published devices", "pool", d.cfg.NodeName, "devices", n)
	return true, nil
}

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
	bgCtx, stopBackground := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() {
		stopBackground()
		bg.Wait()
	}()
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
	logger := klog.FromContext(ctx)
	var devEvents <-chan hwevents.Event
	pollEvery := d.cfg.PollInterval
	if src := d.cfg.DeviceEvents; src != nil {
		ch, err := src.Subscribe(ctx)
		if err != nil {
			pollEvery = min(pollEvery, pollWithoutEvents)
			logger.Error(err, "No device events; rescanning everything on a fast poll instead", "interval", pollEvery)
		}
		devEvents = ch
	}
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
	// What the pending rescan covers: everything, or the PCI functions
	// and netdevs the device events named.
	var (
		pending, full bool
		pcis, ifNames = map[string]bool{}, map[string]bool{}
	)
	schedule := func() {
		if !pending {
			pending = true
			debounce.Reset(d.cfg.Debounce)
		}
	}
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
			switch {
			case ev.Resync:
				full = true
			case ev.PCIAddress != "":
				pcis[ev.PCIAddress] = true
			}
			if ev.IfName != "" {
				ifNames[ev.IfName] = true
			}
			schedule()
		case <-d.rescan:
			full = true
			schedule()
		case <-cfgCheck:
			if d.cfg.VFConfig.Changed() {
				full = true
				schedule()
			}
		case <-poll.C:
			d.rescanAndPublish(ctx, pub)
		case <-debounce.C:
			pending = false
			if full {
				d.rescanAndPublish(ctx, pub)
			} else {
				d.rescanPFsAndPublish(ctx, pub, keys(pcis), keys(ifNames))
			}
			full = false
			clear(pcis)
			clear(ifNames)
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

// publishOrRetry publishes; on failure it forgets the last publication so
// that the next scan retries.
func (d *Driver) publishOrRetry(ctx context.Context, pub Publisher) {
	if _, err := d.publish(ctx, pub); err != nil {
		klog.FromContext(ctx).Error(err, "Publishing failed; retrying on the next scan")
		d.invMu.Lock()
		d.published = nil
		d.invMu.Unlock()
	}
}

// logTaintChanges logs each device whose health taint was set or removed
// by the publication that went from prev to next.
func logTaintChanges(ctx context.Context, prev, next map[string][]resourceapi.DeviceTaint) {
	logger := klog.FromContext(ctx)
	value := func(ts []resourceapi.DeviceTaint) string {
		if len(ts) == 0 {
			return ""
		}
		return ts[0].Value
	}
	names := make([]string, 0, len(prev)+len(next))
	for n := range prev {
		names = append(names, n)
	}
	for n := range next {
		if _, ok := prev[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		was, is := value(prev[n]), value(next[n])
		switch {
		case was == is:
		case is == "":
			logger.Info("Device taint removed: the device is schedulable again", "device", n, "key", TaintKeyUnhealthy, "was", was)
		default:
			logger.Info("Device tainted NoSchedule: no new claim gets it until it recovers", "device", n, "key", TaintKeyUnhealthy, "value", is)
		}
	}
}

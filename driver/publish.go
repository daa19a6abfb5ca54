package driver

// This file publishes the node's pool: the ResourceSlices built from the
// last scan, written only when they changed since the last publication.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"

	resourceapi "k8s.io/api/resource/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/slicepub"
)

// MaxDevicesPerSlice is the API's limit of devices in one ResourceSlice.
const MaxDevicesPerSlice = slicepub.MaxDevicesPerSlice

// BuildResources turns the scanned devices into the node's pool: one pool
// named after the node, devices sorted by name in slices of at most
// MaxDevicesPerSlice. A prepared device is published as it was before it
// was prepared (prepared maps device name to that device), also when the
// scan no longer sees it as before (its netdev lives in a pod). An empty
// pool is one slice without devices, so schedulers see the node has none
// rather than wondering whether the driver runs. taints maps device name
// to the taints the device is published with (see healthTaints).
func BuildResources(pool string, devs []inventory.Device, prepared map[string]inventory.Device, attrs AttributesFunc, taints map[string][]resourceapi.DeviceTaint) slicepub.Pool {
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

	var slices []slicepub.Slice
	for start := 0; start < len(names) || start == 0; start += MaxDevicesPerSlice {
		end := min(start+MaxDevicesPerSlice, len(names))
		s := slicepub.Slice{Devices: []resourceapi.Device{}}
		for _, n := range names[start:end] {
			dev := byName[n]
			s.Devices = append(s.Devices, resourceapi.Device{Name: n, Attributes: attrs(dev), Taints: taints[n]})
		}
		slices = append(slices, s)
		if end == len(names) {
			break
		}
	}
	return slicepub.Pool{Name: pool, Slices: slices}
}

// poolDigest is the SHA-256 of the pool's JSON encoding (maps are
// encoded with sorted keys, so equal pools give equal digests).
func poolDigest(pool slicepub.Pool) ([sha256.Size]byte, error) {
	b, err := json.Marshal(pool)
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
	pool := BuildResources(d.cfg.NodeName, devs, d.state.PublishedDevices(), d.cfg.Attributes, taints)
	// The last publication is remembered by a digest, not a copy: a copy
	// of a thousand devices' attributes is megabytes of heap. The
	// publisher drops the pool once it is written too.
	sum, err := poolDigest(pool)
	if err != nil {
		return false, err
	}
	n := 0
	for _, s := range pool.Slices {
		n += len(s.Devices)
	}
	d.invMu.Lock()
	same := d.published != nil && *d.published == sum
	prevTaints := d.publishedTaints
	d.invMu.Unlock()
	if same {
		return false, nil
	}
	if err := pub.Publish(ctx, pool); err != nil {
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

// Republish makes the next scan publish the pool even when it did not
// change, and asks for that scan: the publisher calls it when someone
// else changed the node's ResourceSlices (it keeps no copy of the pool to
// restore them from).
func (d *Driver) Republish() {
	d.invMu.Lock()
	d.published = nil
	d.invMu.Unlock()
	d.TriggerRescan()
}

// HandlePublishError handles the publisher's errors: all of them are
// retried by the publisher, so none is fatal. Taints the API server
// dropped are logged once (taintsDropped); the rest as errors.
func (d *Driver) HandlePublishError(ctx context.Context, err error, msg string) {
	if d.taintsDropped(ctx, err) {
		return
	}
	utilruntime.HandleErrorWithContext(ctx, err, msg)
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

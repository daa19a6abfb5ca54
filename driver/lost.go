package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// A device can be truly gone while a pod holds it: the VF was removed
// (sriov_numvfs lowered behind the driver's back), the NIC was
// hot-unplugged. The kernel then has nothing to give back when the pod's
// netns dies, and the detach that Unprepare needs can never succeed.
// Unprepare waits a bounded time (Config.LostDeviceTimeout) for the device
// to reappear, then releases everything else of the claim (IPAM, CDI spec,
// attach marker, record) and records the device as lost: a Warning event
// on the claim, sriov_dra_devices_lost(_total), unhealthy with a
// TaintKeyUnhealthy=lost taint, and Prepare refuses it. It is handed out
// again only once a scan sees it back with the identity it had (its PCI
// address; for a virtual stand-in, its host peer).

// DefaultLostDeviceTimeout is how long Unprepare waits for a device that
// is nowhere before it releases the rest of the claim without it.
const DefaultLostDeviceTimeout = 2 * time.Minute

// TaintLost: the device was gone when its claim was unprepared and has
// not come back with the same identity.
const TaintLost = "lost"

// LostDevice is a device released while it was gone (see above).
type LostDevice struct {
	Device     string `json:"device"`
	PCIAddress string `json:"pciAddress,omitempty"`
	// Identity is the netdev's identity when it was attached; the device
	// is back when a scan finds a netdev with it.
	Identity netattach.Identity `json:"identity"`
	// The claim that held it, for the admin.
	ClaimUID       string `json:"claimUID"`
	ClaimNamespace string `json:"claimNamespace"`
	ClaimName      string `json:"claimName"`
	// Since is when it was released as lost (RFC 3339).
	Since string `json:"since"`
	// Reason is the detach error that gave up on it.
	Reason string `json:"reason,omitempty"`
}

// goneTracker remembers since when each claim's device has been found
// nowhere (in memory: a restart starts the wait again, which only delays
// the release).
type goneTracker struct {
	mu    sync.Mutex
	since map[string]time.Time // claimUID/device
}

func (g *goneTracker) first(key string, now time.Time) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.since == nil {
		g.since = map[string]time.Time{}
	}
	t, ok := g.since[key]
	if !ok {
		g.since[key] = now
		return now
	}
	return t
}

func (g *goneTracker) clear(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.since, key)
}

func (d *Driver) lostTimeout() time.Duration {
	if d.cfg.LostDeviceTimeout > 0 {
		return d.cfg.LostDeviceTimeout
	}
	return DefaultLostDeviceTimeout
}

// detachFailed decides what a failed detach of dr means for undo. It
// returns nil when the device has been gone for LostDeviceTimeout and is
// now recorded lost (undo goes on without it), else the error to fail
// the step with.
func (d *Driver) detachFailed(ctx context.Context, rec *ClaimRecord, dr *DeviceRecord, err error) error {
	key := rec.UID + "/" + dr.Device
	if !errors.Is(err, netattach.ErrDeviceGone) {
		d.gone.clear(key)
		return err
	}
	now := time.Now()
	first := d.gone.first(key, now)
	wait := d.lostTimeout()
	if left := first.Add(wait).Sub(now); left > 0 {
		return fmt.Errorf("%w; if it is still gone in %s the rest of the claim is released and the device recorded as lost", err, roundDur(left))
	}
	pod := dr.podDevice(rec)
	id := netattach.Identity{PCIAddress: dr.PCIAddress}
	if pod.Original != nil && pod.Original.Identity.Known() {
		id = pod.Original.Identity
	}
	l := LostDevice{
		Device: dr.Device, PCIAddress: dr.PCIAddress, Identity: id,
		ClaimUID: rec.UID, ClaimNamespace: rec.Namespace, ClaimName: rec.Name,
		Since: now.UTC().Format(time.RFC3339), Reason: err.Error(),
	}
	if err := d.state.MarkLost(l); err != nil {
		return err
	}
	d.gone.clear(key)
	msg := fmt.Sprintf("device %s (%s) of request %q has been gone for %s (not in the pod netns nor on the host): released the claim without it; it is not handed out again until it is back with the same identity: %v",
		dr.Device, id, dr.Request, roundDur(now.Sub(first)), err)
	klog.FromContext(ctx).Error(err, "Device lost: released the claim without it", "device", dr.Device, "identity", id.String(), "goneFor", roundDur(now.Sub(first)))
	if d.cfg.Events != nil {
		claim := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: rec.Namespace, Name: rec.Name, UID: types.UID(rec.UID)}}
		d.cfg.Events.Eventf(claim, nil, corev1.EventTypeWarning, "DeviceLost", "Unprepare", "%s", truncate(msg, 1000))
	}
	if m := d.cfg.Metrics; m != nil {
		m.lostTotal.Inc()
	}
	d.updateLostMetric()
	return nil
}

// roundDur rounds d for a message: to seconds from 10 s up, else to ms.
func roundDur(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (d *Driver) updateLostMetric() {
	if m := d.cfg.Metrics; m != nil {
		m.lost.Set(float64(len(d.state.LostDevices())))
	}
}

// reviewLost clears every lost device inv shows back with its identity.
func (d *Driver) reviewLost(ctx context.Context, inv *inventory.Inventory) {
	lost := d.state.LostDevices()
	if len(lost) == 0 || d.cfg.Netlink == nil {
		return
	}
	logger := klog.FromContext(ctx)
	for _, l := range lost {
		dev, ok := inv.Find(l.Device)
		if !ok || dev.IfName == "" {
			continue
		}
		link, err := d.cfg.Netlink.LinkByName(dev.IfName)
		if err != nil {
			continue
		}
		id, err := netattach.ReadIdentity(link, dev.PCIAddress)
		if err != nil || !sameIdentity(id, l.Identity) {
			logger.V(3).Info("Lost device's netdev is on the host with another identity; still lost", "device", l.Device, "netdev", dev.IfName, "identity", id.String(), "want", l.Identity.String())
			continue
		}
		if err := d.state.ClearLost(l.Device); err != nil {
			logger.Error(err, "Cannot record that a lost device is back; retried at the next scan", "device", l.Device)
			continue
		}
		logger.Info("Lost device is back with the same identity; offered again", "device", l.Device, "netdev", dev.IfName, "identity", id.String())
	}
	d.updateLostMetric()
}

func sameIdentity(a, b netattach.Identity) bool {
	return strings.EqualFold(a.PCIAddress, b.PCIAddress) && strings.EqualFold(a.PermAddr, b.PermAddr) &&
		a.HostPeerIndex == b.HostPeerIndex && a.Kind == b.Kind && a.Known()
}

// MarkLost records l durably.
func (s *State) MarkLost(l LostDevice) error {
	s.mu.Lock()
	prev := s.cp.Lost
	next := maps.Clone(prev)
	if next == nil {
		next = map[string]*LostDevice{}
	}
	next[l.Device] = &l
	s.cp.Lost = next
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() { s.cp.Lost = prev }, func(err error) error {
		return fmt.Errorf("record device %s as lost: %w", l.Device, err)
	})
}

// ClearLost forgets that device was lost, durably.
func (s *State) ClearLost(device string) error {
	s.mu.Lock()
	prev := s.cp.Lost
	if _, ok := prev[device]; !ok {
		s.mu.Unlock()
		return nil
	}
	next := maps.Clone(prev)
	delete(next, device)
	s.cp.Lost = next
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() { s.cp.Lost = prev }, func(err error) error {
		return fmt.Errorf("record that device %s is back: %w", device, err)
	})
}

// Lost returns the record of a lost device.
func (s *State) Lost(device string) (LostDevice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.cp.Lost[device]
	if !ok {
		return LostDevice{}, false
	}
	return *l, true
}

// LostDevices lists the lost devices, by name.
func (s *State) LostDevices() []LostDevice {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LostDevice, 0, len(s.cp.Lost))
	for _, l := range s.cp.Lost {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b LostDevice) int { return strings.Compare(a.Device, b.Device) })
	return out
}

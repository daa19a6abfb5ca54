package driver

// This file holds the ownership queries over State: which claim holds a
// device, a related PF or VF, a GUID or a MAC, and the counts the metrics
// report. A stale record (an earlier boot's) holds nothing.

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// Owner returns the UID of the claim a device (ResourceSlice name) is
// recorded for, or "". A stale record (an earlier boot's) holds no device.
func (s *State) Owner(device string) string {
	return s.holderOf(func(d *DeviceRecord) bool { return d.Device == device })
}

// relatedOwner returns the claim holding dev's PF (for a VF) or one of its
// VFs (for a PF), or "".
func (s *State) relatedOwner(dev *inventory.Device) string {
	return s.holderOf(func(d *DeviceRecord) bool {
		switch {
		case dev.Kind == inventory.KindVF && d.Kind == inventory.KindPF && d.PCIAddress == dev.PFPCIAddress:
			return true
		case dev.Kind == inventory.KindPF && d.Kind == inventory.KindVF && d.Snapshot.PFPCIAddress == dev.PCIAddress:
			return true
		}
		return false
	})
}

// holderOf returns the UID of a claim with a device that match accepts,
// or "". Stale records hold no device.
func (s *State) holderOf(match func(*DeviceRecord) bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, rec := range s.cp.Claims {
		if rec.Stale != nil {
			continue
		}
		for _, d := range rec.Devices {
			if match(d) {
				return uid
			}
		}
	}
	return ""
}

// PublishedDevices returns, for every recorded device, the device as it
// was published before it was prepared.
func (s *State) PublishedDevices() map[string]inventory.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]inventory.Device{}
	for _, rec := range s.cp.Claims {
		if rec.Stale != nil {
			continue // the device came up fresh: publish what it is now
		}
		for _, d := range rec.Devices {
			if d.Published != nil {
				out[d.Device] = *d.Published
			}
		}
	}
	return out
}

// podRecords returns copies of the records of the pod's claims other than
// except, sorted by UID.
func (s *State) podRecords(podUID, except string) []*ClaimRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*ClaimRecord
	for uid, rec := range s.cp.Claims {
		if uid != except && rec.PodUID == podUID && rec.Stale == nil {
			out = append(out, rec.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// heldGUIDs maps every GUID set by a claim other than except to
// "claim <uid>".
func (s *State) heldGUIDs(except string) map[string]string {
	return s.held(except, func(d *DeviceRecord) *string { return d.GUID },
		func(uid string, _ *ClaimRecord) string { return "claim " + uid })
}

// heldMACs maps every MAC set by a claim other than except to
// "claim <namespace>/<name> (<uid>)".
func (s *State) heldMACs(except string) map[string]string {
	return s.held(except, func(d *DeviceRecord) *string { return d.Settings.MAC },
		func(uid string, rec *ClaimRecord) string {
			return fmt.Sprintf("claim %s/%s (%s)", rec.Namespace, rec.Name, uid)
		})
}

// held maps every value (lower-cased) that pick finds on a device of a
// claim other than except to its holder. Stale records (of an earlier
// boot) hold nothing: what they set is gone with the boot.
func (s *State) held(except string, pick func(*DeviceRecord) *string, holder func(string, *ClaimRecord) string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for uid, rec := range s.cp.Claims {
		if uid == except || rec.Stale != nil {
			continue
		}
		for _, d := range rec.Devices {
			if v := pick(d); v != nil {
				out[strings.ToLower(*v)] = holder(uid, rec)
			}
		}
	}
	return out
}

// deviceCounts returns the recorded devices and how many are attached.
func (s *State) deviceCounts() (map[string]bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	owned := map[string]bool{}
	attached := 0
	for _, rec := range s.cp.Claims {
		if rec.Stale != nil {
			continue
		}
		for _, d := range rec.Devices {
			owned[d.Device] = true
			if d.Pod.Attached {
				attached++
			}
		}
	}
	return owned, attached
}

// staleCount is the number of stale records.
func (s *State) staleCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, rec := range s.cp.Claims {
		if rec.Stale != nil {
			n++
		}
	}
	return n
}

package driver

// This file is State as the NRI plugin sees it (nri.Devices): the
// devices of a pod's completed claims and the attach records.

import (
	"slices"
	"sort"

	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

var _ nri.Devices = (*State)(nil)

// SetOnAttached installs the hook called after a durable Attached record.
func (s *State) SetOnAttached(f func(claimUID string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onAttached = f
}

// ForPod implements nri.Devices. Only completed claims are offered: a
// claim still being prepared (or rolled back) has nothing to attach yet,
// and a stale one (an earlier boot's) has nothing to attach any more.
func (s *State) ForPod(podUID string) []nri.PodDevice {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []nri.PodDevice
	uids := make([]string, 0, len(s.cp.Claims))
	for uid := range s.cp.Claims {
		uids = append(uids, uid)
	}
	sort.Strings(uids)
	for _, uid := range uids {
		rec := s.cp.Claims[uid]
		if rec.PodUID != podUID || rec.Phase != PhasePrepareCompleted || rec.Stale != nil {
			continue
		}
		for _, d := range rec.Devices {
			out = append(out, d.podDevice(rec))
		}
	}
	return out
}

// Pods implements nri.Devices.
func (s *State) Pods() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, rec := range s.cp.Claims {
		if rec.Phase == PhasePrepareCompleted && rec.Stale == nil && !seen[rec.PodUID] {
			seen[rec.PodUID] = true
			out = append(out, rec.PodUID)
		}
	}
	sort.Strings(out)
	return out
}

// Attaching implements nri.Devices.
func (s *State) Attaching(claimUID, device, netnsPath string, orig netattach.Original) error {
	return s.updateDevice(claimUID, device, func(d *DeviceRecord) {
		d.Pod.NetnsPath = netnsPath
		o := orig
		d.Pod.Original = &o
		d.Pod.Attached = false
		d.Pod.RDMAMoved = false
	})
}

// Attached implements nri.Devices. After the record is durable it hands
// the claim to the status queue; it never calls the API server itself.
func (s *State) Attached(claimUID, device string, rdmaMoved bool) error {
	err := s.updateDevice(claimUID, device, func(d *DeviceRecord) {
		d.Pod.Attached = true
		d.Pod.RDMAMoved = rdmaMoved
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	hook := s.onAttached
	s.mu.Unlock()
	if hook != nil {
		hook(claimUID)
	}
	return nil
}

// Detached implements nri.Devices.
// A device whose attach state is derived from the kernel keeps the
// Original recorded at Prepare: the next sandbox of the pod attaches it
// from there.
func (s *State) Detached(claimUID, device string) error {
	return s.updateDevice(claimUID, device, func(d *DeviceRecord) {
		d.Pod.NetnsPath = ""
		d.Pod.Attached = false
		d.Pod.RDMAMoved = false
		if !d.Pod.AttachStateFromKernel {
			d.Pod.Original = nil
		}
	})
}

// podDevice is the NRI view of d, with the claim fields filled in.
func (d *DeviceRecord) podDevice(rec *ClaimRecord) nri.PodDevice {
	p := d.Pod
	p.PodUID = rec.PodUID
	p.ClaimUID = rec.UID
	p.ClaimNamespace = rec.Namespace
	p.ClaimName = rec.Name
	p.Request = d.Request
	p.Device = d.Device
	p.PCIAddress = d.PCIAddress
	p.Spec.Addresses = slices.Clone(p.Spec.Addresses)
	p.Spec.Routes = slices.Clone(p.Spec.Routes)
	if p.Original != nil {
		o := *p.Original
		p.Original = &o
	}
	return p
}

package driver

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// Phase is how far Prepare got for a claim.
type Phase string

const (
	// PhasePrepareStarted is recorded, with every device's snapshot, before
	// the first change to the host. A claim left in this phase is rolled
	// back by Unprepare or by the next Prepare of the same claim.
	PhasePrepareStarted Phase = "PrepareStarted"
	// PhasePrepareCompleted is recorded after the CDI spec was written;
	// a retried Prepare returns the recorded answer without touching the host.
	PhasePrepareCompleted Phase = "PrepareCompleted"
)

// Checkpoint is everything the node daemon did to the host, keyed by claim
// UID (never by pod: a pod may hold several claims). It is the only memory
// Unprepare needs: after a restart with an empty process it undoes a claim
// from its record alone. These are the runtime types; the file format is
// api/checkpoint/v1, converted in checkpointv1.go (their JSON tags serve
// clone and tests only).
type Checkpoint struct {
	// BootID is the node's boot ID when the entries were made. After a
	// reboot the kernel state they describe is gone: such entries are
	// released (IPs freed, CDI specs removed) and never restored onto VFs
	// that now carry other state.
	BootID string                  `json:"bootID"`
	Claims map[string]*ClaimRecord `json:"claims"`
	// Owner is the daemon that last took the checkpoint over (see
	// NewOwnedFileStore); empty when no owner is enforced.
	Owner string `json:"owner,omitempty"`
	// DropRequests are the admin's requests to forget a record
	// (`sriov-dra checkpoint drop`). The daemon owns the records: it
	// drops the claim itself (under the claim's lock) and the request
	// goes from the file with the next save that no longer has the claim.
	DropRequests []DropRequest `json:"dropRequests,omitempty"`
	// Lost are devices released while they were gone (driver/lost.go),
	// by device name: not handed out until they are back.
	Lost map[string]*LostDevice `json:"lost,omitempty"`
}

// DropRequest asks the daemon to forget one claim's record without
// undoing anything.
type DropRequest struct {
	ClaimUID string `json:"claimUID"`
	// By and At say who asked and when (RFC 3339), for the daemon's log.
	By string `json:"by,omitempty"`
	At string `json:"at,omitempty"`
}

// ClaimRecord is one prepared (or being prepared) ResourceClaim.
type ClaimRecord struct {
	UID          string `json:"uid"`
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	PodUID       string `json:"podUID"`
	PodName      string `json:"podName"`
	PodNamespace string `json:"podNamespace"`
	Phase        Phase  `json:"phase"`
	// Steps records what was done for the claim as a whole.
	Steps ClaimSteps `json:"steps"`
	// Devices are in allocation order; Unprepare walks them backwards.
	Devices []*DeviceRecord `json:"devices"`
	// Stale is set on a record of an earlier boot (see StaleRelease).
	Stale *StaleRelease `json:"stale,omitempty"`
}

// StaleRelease marks a record made before the node rebooted. The kernel
// state it describes went with the reboot and its devices came up fresh:
// such a record is only ever released (IPAM allocations, CDI spec, attach
// markers, claim status), never restored onto a device, holds no device,
// and is never offered to the NRI plugin. It stays until the release
// succeeds (retried in the background) or the admin drops it.
type StaleRelease struct {
	// BootID is the boot the record was made in.
	BootID string `json:"bootID"`
	// Attempts counts failed releases; LastError is the last failure.
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// ClaimSteps are the claim-wide steps of Prepare.
type ClaimSteps struct {
	// CDI is set once the claim's CDI spec file was written.
	CDI bool `json:"cdi,omitempty"`
	// Status is set once a claim status entry may exist in the API.
	Status bool `json:"status,omitempty"`
}

// DeviceSteps are the per-device steps of Prepare, each recorded as done
// right after it succeeded (and marked "started" before it ran via the
// claim's phase), so that a rollback undoes exactly what was changed.
type DeviceSteps struct {
	VFSettings bool `json:"vfSettings,omitempty"`
	GUID       bool `json:"guid,omitempty"`
	VFIO       bool `json:"vfio,omitempty"`
	IPAM       bool `json:"ipam,omitempty"`
}

// DeviceRecord is one allocated device of a claim.
type DeviceRecord struct {
	Request    string         `json:"request"`
	Pool       string         `json:"pool"`
	Device     string         `json:"device"` // ResourceSlice device name
	PCIAddress string         `json:"pciAddress"`
	Kind       inventory.Kind `json:"kind"`
	// Config is the resolved opaque config (class then claim) as JSON.
	Config json.RawMessage `json:"config,omitempty"`
	// Settings are the VF knobs Prepare applies through the PF.
	Settings vfconfig.Settings `json:"settings"`
	// GUID is the IB node and port GUID Prepare sets (a step of its own,
	// with a rebind); nil leaves the VF's GUIDs as they are.
	GUID *string `json:"guid,omitempty"`
	// Driver is the driver the device must be bound to ("" or
	// "netdevice": leave the vendor driver; "vfio-pci").
	Driver string `json:"driver,omitempty"`
	// Snapshot is the device's state before any change, recorded with
	// PhasePrepareStarted before the first change.
	Snapshot vfconfig.Snapshot `json:"snapshot"`
	Steps    DeviceSteps       `json:"steps"`
	// RDMAManagement gives the containers the RDMA management devices
	// (umadN, issmN): only when the class's policy allows it.
	RDMAManagement bool `json:"rdmaManagement,omitempty"`
	// IPAMConfig is the CNI IPAM configuration, empty for none.
	IPAMConfig json.RawMessage `json:"ipamConfig,omitempty"`
	// IPAM is the address allocation, nil when none was configured or done.
	IPAM *ipam.Result `json:"ipam,omitempty"`
	// CDIDeviceIDs are returned to kubelet for this device.
	CDIDeviceIDs []string `json:"cdiDeviceIDs,omitempty"`
	// Published is the device as it was last published before it was
	// prepared: it stays published with these attributes while the
	// netdev lives in the pod.
	Published *inventory.Device `json:"published,omitempty"`
	// Pod is the NRI view: the netattach.Spec for the pod and the attach
	// state the NRI plugin records (netns, original name/MAC/MTU, ...).
	Pod nri.PodDevice `json:"pod"`
}

// Store persists a Checkpoint atomically. Load returns (nil, nil) when
// there is no checkpoint yet and an error naming the file when it cannot be
// read or parsed.
type Store interface {
	Load() (*Checkpoint, error)
	Save(*Checkpoint) error
}

// State is the driver's prepared state: an in-memory copy of the checkpoint
// that is written through to the Store on every change, before the change
// is acknowledged. It implements nri.Devices for the NRI plugin.
//
// Records in the map are never changed in place (a change stores a new
// copy), so a save takes a shallow copy of the map and writes it without
// holding the lock. Concurrent changes share saves (group commit): a
// caller whose change was already written by another caller's save
// returns at once, so prepares of different claims do not queue behind
// one fsync each.
type State struct {
	mu    sync.Mutex
	store Store
	cp    *Checkpoint
	gen   uint64 // counts changes, guarded by mu
	// onAttached is called (outside the lock, after the record is
	// durable) when a device finished attaching; the driver queues the
	// claim status update there. It must not block.
	onAttached func(claimUID string)

	saveMu sync.Mutex // one save at a time
	saved  uint64     // the last change on disk, guarded by saveMu
}

var _ nri.Devices = (*State)(nil)

// NewState loads the checkpoint from store. bootID is the current boot ID;
// a missing checkpoint starts empty with it. The caller compares
// Checkpoint().BootID with bootID to find stale entries.
func NewState(store Store, bootID string) (*State, error) {
	cp, err := store.Load()
	if err != nil {
		return nil, err
	}
	if cp == nil {
		cp = &Checkpoint{BootID: bootID}
	}
	if cp.Claims == nil {
		cp.Claims = map[string]*ClaimRecord{}
	}
	for uid, rec := range cp.Claims {
		if rec == nil || rec.UID != uid {
			return nil, fmt.Errorf("checkpoint entry %q is malformed (missing or mismatched uid)", uid)
		}
	}
	return &State{store: store, cp: cp}, nil
}

// SetOnAttached installs the hook called after a durable Attached record.
func (s *State) SetOnAttached(f func(claimUID string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onAttached = f
}

// BootID returns the boot ID the checkpoint's entries belong to.
func (s *State) BootID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cp.BootID
}

// SetBootID records a new boot ID (after stale entries were released).
func (s *State) SetBootID(bootID string) error {
	s.mu.Lock()
	old := s.cp.BootID
	s.cp.BootID = bootID
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() { s.cp.BootID = old }, func(err error) error {
		return fmt.Errorf("record boot ID %s: %w", bootID, err)
	})
}

// markStale marks every record of boot old as stale (see StaleRelease)
// and records bootID as the checkpoint's boot, in one durable change:
// from then on a restart, a kubelet call or the NRI plugin can never take
// such a record for one of this boot.
func (s *State) markStale(old, bootID string) error {
	s.mu.Lock()
	prev := s.cp.Claims
	next := make(map[string]*ClaimRecord, len(prev))
	for uid, rec := range prev {
		if rec.Stale == nil {
			rec = rec.clone()
			rec.Stale = &StaleRelease{BootID: old}
		}
		next[uid] = rec
	}
	prevBoot := s.cp.BootID
	s.cp.Claims, s.cp.BootID = next, bootID
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		// Records changed since (a drop) are kept as they are now.
		for uid, rec := range s.cp.Claims {
			if old, ok := prev[uid]; ok && rec == next[uid] {
				s.cp.Claims[uid] = old
			}
		}
		s.cp.BootID = prevBoot
	}, func(err error) error {
		return fmt.Errorf("mark the claims of boot %s as stale: %w", old, err)
	})
}

// staleFailed records a failed release of a stale record.
func (s *State) staleFailed(uid string, cause error) error {
	s.mu.Lock()
	rec, ok := s.cp.Claims[uid]
	if !ok || rec.Stale == nil {
		s.mu.Unlock()
		return nil
	}
	next := rec.clone()
	next.Stale.Attempts++
	next.Stale.LastError = cause.Error()
	s.cp.Claims[uid] = next
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		if s.cp.Claims[uid] == next {
			s.cp.Claims[uid] = rec
		}
	}, func(err error) error {
		return fmt.Errorf("record the failed release of claim %s: %w", uid, err)
	})
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

// save writes the state as it is (a store may have more to write, e.g.
// clearing served drop requests).
func (s *State) save() error {
	s.mu.Lock()
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {}, func(err error) error {
		return fmt.Errorf("save checkpoint: %w", err)
	})
}

// bump counts a change; call with s.mu held.
func (s *State) bump() uint64 {
	s.gen++
	return s.gen
}

// commit makes change gen durable. If the save fails, revert runs (under
// s.mu) before any other save can start, and the error is wrapped by wrap.
func (s *State) commit(gen uint64, revert func(), wrap func(error) error) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if s.saved >= gen {
		return nil // written by a save that started after our change
	}
	s.mu.Lock()
	snap := &Checkpoint{BootID: s.cp.BootID, Claims: make(map[string]*ClaimRecord, len(s.cp.Claims)), Lost: s.cp.Lost}
	for k, v := range s.cp.Claims {
		snap.Claims[k] = v
	}
	upTo := s.gen
	s.mu.Unlock()
	if err := s.store.Save(snap); err != nil {
		s.mu.Lock()
		revert()
		s.gen++ // the memory changed again: the next save must write it
		s.mu.Unlock()
		return wrap(err)
	}
	s.saved = upTo
	return nil
}

// Claim returns a copy of the record for uid.
func (s *State) Claim(uid string) (*ClaimRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.cp.Claims[uid]
	if !ok {
		return nil, false
	}
	return rec.clone(), true
}

// Claims returns copies of all records, sorted by UID.
func (s *State) Claims() []*ClaimRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*ClaimRecord, 0, len(s.cp.Claims))
	for _, rec := range s.cp.Claims {
		out = append(out, rec.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// Owner returns the UID of the claim a device (ResourceSlice name) is
// recorded for, or "". A stale record (an earlier boot's) holds no device.
func (s *State) Owner(device string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, rec := range s.cp.Claims {
		if rec.Stale != nil {
			continue
		}
		for _, d := range rec.Devices {
			if d.Device == device {
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

// Put records rec (replacing any record of the same UID), durably.
func (s *State) Put(rec *ClaimRecord) error {
	s.mu.Lock()
	old, had := s.cp.Claims[rec.UID]
	mine := rec.clone()
	s.cp.Claims[rec.UID] = mine
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		if s.cp.Claims[rec.UID] != mine {
			return // changed again since
		}
		if had {
			s.cp.Claims[rec.UID] = old
		} else {
			delete(s.cp.Claims, rec.UID)
		}
	}, func(err error) error {
		return fmt.Errorf("checkpoint claim %s/%s (%s): %w", rec.Namespace, rec.Name, rec.UID, err)
	})
}

// reserve records rec in memory only, so that other claims see its
// devices taken. The caller writes it (Put) or drops it (Delete) next; a
// save of another change may write it meanwhile, so it must be safe to
// undo from disk as it is: no step intents, no snapshots.
func (s *State) reserve(rec *ClaimRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cp.Claims[rec.UID] = rec.clone()
	s.bump()
}

// Delete drops the record for uid, durably. Deleting an unknown UID is a no-op.
func (s *State) Delete(uid string) error {
	s.mu.Lock()
	old, had := s.cp.Claims[uid]
	if !had {
		s.mu.Unlock()
		return nil
	}
	delete(s.cp.Claims, uid)
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		if _, back := s.cp.Claims[uid]; !back {
			s.cp.Claims[uid] = old
		}
	}, func(err error) error {
		return fmt.Errorf("drop claim %s from the checkpoint: %w", uid, err)
	})
}

// updateDevice changes one device record durably; on a failed save the
// memory is put back as it was. A change to a device whose attach state
// is derived from the kernel (AttachStateFromKernel: the NRI attach
// records) that keeps its original is made in memory only.
func (s *State) updateDevice(claimUID, device string, fn func(*DeviceRecord)) error {
	s.mu.Lock()
	rec, ok := s.cp.Claims[claimUID]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("claim %s is not prepared on this node", claimUID)
	}
	i := slices.IndexFunc(rec.Devices, func(d *DeviceRecord) bool { return d.Device == device })
	if i < 0 {
		s.mu.Unlock()
		return fmt.Errorf("device %s is not prepared for claim %s", device, claimUID)
	}
	next := rec.clone()
	fn(next.Devices[i])
	s.cp.Claims[claimUID] = next
	if p := next.Devices[i].Pod; p.AttachStateFromKernel && sameOriginal(p.Original, rec.Devices[i].Pod.Original) {
		// The attach state of such a device is derived from the kernel
		// after a restart: it is not written here (a later save of
		// another change may carry it, as a hint only). A new original
		// (the netdev changed since Prepare) is written.
		s.mu.Unlock()
		return nil
	}
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		if s.cp.Claims[claimUID] == next {
			s.cp.Claims[claimUID] = rec
		}
	}, func(err error) error {
		return fmt.Errorf("checkpoint device %s of claim %s: %w", device, claimUID, err)
	})
}

// sameOriginal reports whether a and b record the same original.
func sameOriginal(a, b *netattach.Original) bool {
	return a != nil && b != nil && *a == *b
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

// clone deep-copies a record through JSON: every field is plain data.
func (r *ClaimRecord) clone() *ClaimRecord {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("marshal claim record %s: %v", r.UID, err))
	}
	var out ClaimRecord
	if err := json.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprintf("unmarshal claim record %s: %v", r.UID, err))
	}
	return &out
}

// relatedOwner returns the claim holding dev's PF (for a VF) or one of its
// VFs (for a PF), or "".
func (s *State) relatedOwner(dev *inventory.Device) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid, rec := range s.cp.Claims {
		if rec.Stale != nil {
			continue
		}
		for _, d := range rec.Devices {
			switch {
			case dev.Kind == inventory.KindVF && d.Kind == inventory.KindPF && d.PCIAddress == dev.PFPCIAddress:
				return uid
			case dev.Kind == inventory.KindPF && d.Kind == inventory.KindVF && d.Snapshot.PFPCIAddress == dev.PCIAddress:
				return uid
			}
		}
	}
	return ""
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

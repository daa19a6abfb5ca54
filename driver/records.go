package driver

// This file holds the in-memory records: the runtime shape of the
// checkpoint that Prepare, Unprepare and the NRI plugin work with. On disk
// it is api/checkpoint/v1, converted in checkpointv1.go.

import (
	"encoding/json"
	"fmt"

	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
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
// from its record alone.
//
// It has the fields of api/checkpoint/v1's Checkpoint on purpose, and is
// not that type: the schema holds no other package's types, while these
// records hold the runtime ones Prepare, Unprepare and the NRI plugin work
// with (vfconfig.Snapshot, ipam.Result, nri.PodDevice, ...). The two meet
// in one conversion (checkpointv1.go); the schema documents what is kept
// on disk and has the one version marker. This type is never the file
// format, so it has no JSON tags.
type Checkpoint struct {
	// BootID is the boot the records were made in; records of another
	// boot are released, never restored onto devices that came up fresh.
	BootID string
	Claims map[string]*ClaimRecord
	// Owner is the daemon that last took the checkpoint over
	// (NewOwnedFileStore); empty when no owner is enforced.
	Owner string
	// DropRequests are `sriov-dra checkpoint drop` requests: the daemon
	// drops the claim itself (under the claim's lock), and the request
	// goes from the file with the next save that no longer has the claim.
	DropRequests []DropRequest
	// Lost are the devices released while they were gone (lost.go), by
	// device name: not handed out until they are back.
	Lost map[string]*LostDevice
}

// DropRequest asks the daemon to forget one claim's record without
// undoing anything.
type DropRequest struct {
	ClaimUID string `json:"claimUID"`
	// By and At say who asked and when (RFC 3339), for the daemon's log.
	By string `json:"by,omitempty"`
	At string `json:"at,omitempty"`
}

// ClaimRecord is one prepared (or being prepared) ResourceClaim; on disk
// it is api/checkpoint/v1's Claim. clone deep-copies it through JSON: the
// JSON tags of the types it holds (omitempty keeps a nil field nil) serve
// that, not the file format.
type ClaimRecord struct {
	UID          string
	Namespace    string
	Name         string
	PodUID       string
	PodName      string
	PodNamespace string
	Phase        Phase
	// Steps records what was done for the claim as a whole.
	Steps ClaimSteps
	// Devices are in allocation order; Unprepare walks them backwards.
	Devices []*DeviceRecord
	// Stale is set on a record of an earlier boot (see StaleRelease).
	Stale *StaleRelease
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

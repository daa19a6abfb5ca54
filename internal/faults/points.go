// Package faults names the step boundaries of prepare, attach, detach and
// unprepare, so that reliability tests can make the daemon die at each of
// them as abruptly as kill -9 would: no deferred function, no rollback, no
// flush. Built without the faultinject tag, Point does nothing and costs
// nothing; with it, Point exits the process with status 137 when the
// environment variable SRIOV_DRA_FAULT names that point.
//
// Only tests build with the tag (test/reliability). The point names are
// part of docs/reliability.md, which a test keeps in sync.
package faults

// Env names the failure point at which a faultinject build exits.
const Env = "SRIOV_DRA_FAULT"

// ExitCode is the status a triggered point exits with (128+SIGKILL, what
// a shell reports for a process killed with kill -9).
const ExitCode = 137

// The failure points, in the order a pod's life reaches them.
const (
	// PrepareStartedRecorded: the started record (snapshots) is durable,
	// nothing on the host has changed yet.
	PrepareStartedRecorded = "prepare-started-recorded"
	// PrepareVFApplied: the VF knobs were set through the PF.
	PrepareVFApplied = "prepare-vf-applied"
	// PrepareGUIDSet: the IB GUID was set and the VF rebound.
	PrepareGUIDSet = "prepare-guid-set"
	// PrepareVFIOBound: the device was bound to vfio-pci.
	PrepareVFIOBound = "prepare-vfio-bound"
	// PrepareIPAMAllocated: the IPAM plugin allocated, not yet recorded.
	PrepareIPAMAllocated = "prepare-ipam-allocated"
	// PrepareIPAMRecorded: the allocation is in the checkpoint.
	PrepareIPAMRecorded = "prepare-ipam-recorded"
	// PrepareCDIWritten: the CDI spec file exists, the claim is not yet
	// recorded as completed.
	PrepareCDIWritten = "prepare-cdi-written"
	// PrepareCompleted: the completed record is durable, kubelet has not
	// had the answer yet.
	PrepareCompleted = "prepare-completed"

	// AttachRecorded: the netns and the original name/MAC/MTU are
	// recorded, the netdev has not moved.
	AttachRecorded = "attach-recorded"
	// AttachMoved: the netdev is in the pod netns, configured, not yet
	// recorded as attached.
	AttachMoved = "attach-moved"
	// AttachCompleted: the attach is recorded.
	AttachCompleted = "attach-completed"

	// DetachMoved: the netdev is back on the host, not yet recorded.
	DetachMoved = "detach-moved"
	// DetachCompleted: the detach is recorded.
	DetachCompleted = "detach-completed"

	// UnprepareIPAMReleased: the addresses were released, the device is
	// not restored yet.
	UnprepareIPAMReleased = "unprepare-ipam-released"
	// UnprepareHostRestored: IRQs, driver, GUID and VF knobs are back.
	UnprepareHostRestored = "unprepare-host-restored"
	// UnprepareCDIRemoved: the CDI spec and status entries are gone, the
	// record is not.
	UnprepareCDIRemoved = "unprepare-cdi-removed"
	// UnprepareForgotten: the record is deleted, kubelet has not had the
	// answer yet.
	UnprepareForgotten = "unprepare-forgotten"
)

// All lists every failure point in lifecycle order.
func All() []string {
	return []string{
		PrepareStartedRecorded, PrepareVFApplied, PrepareGUIDSet, PrepareVFIOBound,
		PrepareIPAMAllocated, PrepareIPAMRecorded, PrepareCDIWritten, PrepareCompleted,
		AttachRecorded, AttachMoved, AttachCompleted,
		DetachMoved, DetachCompleted,
		UnprepareIPAMReleased, UnprepareHostRestored, UnprepareCDIRemoved, UnprepareForgotten,
	}
}

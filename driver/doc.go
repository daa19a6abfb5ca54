// Package driver is the DRA side of the sriov-dra node daemon: a
// kubeletserver.Plugin that publishes the node's SR-IOV devices,
// prepares and unprepares ResourceClaims, and reports device health. It
// only orchestrates: devices are found by pkg/inventory, changed by
// pkg/vfconfig, addressed by pkg/ipam, described to the runtime by
// pkg/cdi, moved by the NRI plugin (package nri, same process), and every
// step is recorded in the checkpoint (State, over pkg/checkpoint).
//
// # Lifecycle of a claim
//
// The order of events across kubelet and the container runtime, what each
// step does, what it records, and how it is undone:
//
//  1. Prepare (kubelet NodePrepareResources, before the sandbox exists;
//     kubelet retries it until it succeeds).
//     Plan (pure, changes nothing): resolve the config of every allocated
//     device (class configs, then claim configs; api/v1alpha1), refuse a
//     device that is not in this node's pool, not offered by the
//     inventory, prepared for another claim, or a PF whose VFs are in use
//     (and the reverse), and vfio-pci for a device vfio cannot isolate (no
//     IOMMU, no-IOMMU mode, an IOMMU group shared with another function;
//     read from sysfs through Kernel.CheckVFIO); the pod is
//     status.reservedFor (exactly one pod);
//     assign pod interface names across the pod's claims; refuse what
//     the device cannot do as scanned (driver netdevice without a netdev,
//     rdmaIsolation without an RDMA device or exclusive RDMA netns mode,
//     a pkey missing from the port's table when no GUID change comes); pick
//     `guid: auto` (AutoGUID) and `mac: auto` (AutoMAC), and refuse a GUID
//     or MAC held by another claim or device here. Reserve the devices in
//     memory, snapshot
//     each device (vfconfig.Snapshot: admin MAC/VLAN/..., GUIDs, driver,
//     netdev name/MAC/MTU, IRQ affinities; a whole PF is refused here if
//     the host uses its netdev now) and record PrepareStarted with
//     the snapshots and the steps to come - before the first change. Then
//     apply VF settings, the GUID (with a rebind; then the pkey is checked
//     against the port's table of the new GUID), vfio-pci binding;
//     allocate addresses (CNI IPAM; the result is recorded at once); write
//     the claim's CDI spec; record PrepareCompleted and return the CDI
//     device IDs with each device's metadata (driver/metadata.go; the kubelet
//     plugin helper writes it to a file it mounts into the containers
//     through a CDI device of its own, and removes both after Unprepare).
//     vfio-pci devices get their claim status now (nothing to attach). A
//     retry of a completed claim returns the recorded answer and changes
//     nothing. A failure undoes what this attempt reached, in
//     reverse, drops the record, returns an error naming claim, request,
//     device and config field, and posts a Warning event on the claim. A
//     PrepareStarted record left by a crash is undone by the next Prepare
//     of the claim or by Unprepare.
//  2. RunPodSandbox (NRI hook, inside the runtime's ~2 s plugin budget):
//     the NRI plugin asks State.ForPod for the pod's devices, records
//     Attaching (netns path and the host netdev's name/MAC/MTU) before the
//     move, moves the RDMA device (rdmaIsolation) and the netdev into the
//     pod netns with name, MTU, MAC, addresses and routes from the record,
//     and records Attached. State then queues the claim status
//     (networkData, Ready) for pkg/claimstatus; no API call in the hook.
//     For a netdev without rdmaIsolation, Prepare already recorded the
//     original name/MAC/MTU with PrepareCompleted (the intent to attach,
//     PodDevice.AttachStateFromKernel): Attaching, Attached and Detached
//     then change memory only, so the hook writes nothing to disk, and
//     after a restart the attach state is derived from the kernel (the
//     device found by its identity in a sandbox's netns or on the host).
//  3. CreateContainer (NRI): fail closed - every device must be in the pod
//     netns (attached now if the plugin missed RunPodSandbox); with
//     irqAffinity: container the VF's IRQs are pinned to the container's
//     CPUs (restored from the snapshot at Unprepare).
//  4. StopPodSandbox / RemovePodSandbox (NRI): detach - RDMA device first,
//     then the netdev back to the host under its original name, MAC and
//     MTU - and record Detached. The netdev is found by its identity
//     (PCI parent; recorded with the original before the move), in the
//     pod and on the host, never by name alone. A netns already gone (or
//     a path that is no longer a netns) is finished on the host: the
//     kernel returns physical netdevs to the host netns.
//  5. Unprepare (kubelet NodeUnprepareResources; works from the checkpoint
//     alone, also after a restart with empty memory, and is idempotent):
//     return the netdev from the pod if the runtime never did (recorded
//     netns), release the IPAM allocations, restore IRQ affinities, the
//     driver binding, the GUID and the VF settings (always the MAC) from
//     the snapshot, remove the CDI spec, clear the claim's status entries,
//     drop the record. A failing step keeps the record; kubelet retries.
//
// A failing Unprepare step (say the IPAM DEL) does not stop the others;
// the record stays, holding its device, and kubelet retries. Only that
// claim waits: claims are locked one by one and the daemon goes on.
//
// After a reboot (boot ID differs from the checkpoint's) the kernel state
// is gone: the records are marked stale together with the new boot ID
// (StaleRelease), then released one by one (IPs freed, CDI specs,
// markers and status removed) and never restored onto VFs that came up
// fresh. A release that fails leaves its record pending - it holds no
// device and NRI never sees it - and is retried in the background with
// backoff (a Prepare or Unprepare of the same claim tries it too); it
// never stops the daemon. The admin can make the daemon forget one record
// (`sriov-dra checkpoint drop`: a request in the checkpoint that the
// daemon applies under the claim's lock). At start, CDI specs and attach
// markers this driver wrote that no record refers to are removed. A
// corrupt checkpoint stops the daemon with the file and the way to
// recover; it never guesses.
//
// # Publishing
//
// One pool named after the node, devices named from their PCI address
// (inventory.DeviceName), at most 128 per ResourceSlice, an empty pool
// published as one empty slice. A prepared device stays published with
// the attributes it had before it was prepared (its MAC, VLAN or netdev
// may have changed or moved into a pod). Device events (kernel uevents:
// PCI functions added or removed, drivers bound or unbound, netdevs added,
// removed or renamed; rtnetlink link events) rescan the PFs they concern,
// debounced; events about other devices cost nothing. A full rescan runs
// on prepare/unprepare and once a minute as a safety net. The pool is
// published only when it differs, so an idle node makes no API writes.
// pkg/slicepub writes it: it adopts the slices a previous daemon left
// (no write when they hold the pool), bumps the pool's generation on
// every slice when anything changed, keeps only digests of what it wrote,
// and when someone else deletes or changes a slice it calls Republish,
// which publishes the pool again on the next scan.
//
// # Concurrency
//
// Claims are planned one at a time (planMu); the slow part runs per claim
// in parallel, and checkpoint saves of concurrent changes share fsyncs
// (State.commit).
package driver

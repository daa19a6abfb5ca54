package driver

// This file is Prepare's apply: it runs the steps a plan recorded, in
// order (VF settings, GUID, vfio-pci, IPAM, the intent to attach, the CDI
// spec), each behind its fault point, and records PrepareCompleted.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/faults"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// apply runs the recorded steps of rec in order and records completion.
// The steps were marked in rec before the first change (the started
// record), so a rollback restores all of them; restoring a step that had
// not run yet puts back the snapshot's values, which the device still has.
// prog tells an in-process rollback what this attempt actually reached.
func (d *Driver) apply(ctx context.Context, claim *resourceapi.ResourceClaim, rec *ClaimRecord, devs []inventory.Device, prog *progress) error {
	for i, dr := range rec.Devices {
		if err := d.applyDevice(ctx, claim, dr, &prog.steps[i]); err != nil {
			return err
		}
	}
	if err := d.allocateAddresses(ctx, claim, rec); err != nil {
		return err
	}
	d.recordAttachIntent(ctx, rec)
	if err := d.writeCDISpec(ctx, claim, rec, devs, prog); err != nil {
		return err
	}
	return d.completePrepare(rec)
}

// applyDevice runs a device's own steps: VF settings through the PF, the
// GUID (then the pkey against the new GUID's table), the vfio-pci bind.
// ran gets each step marked before it runs.
func (d *Driver) applyDevice(ctx context.Context, claim *resourceapi.ResourceClaim, dr *DeviceRecord, ran *DeviceSteps) error {
	kernel := d.cfg.Kernel
	if dr.Steps.VFSettings {
		ran.VFSettings = true
		if err := kernel.ApplyVF(ctx, &dr.Snapshot, dr.Settings); err != nil {
			return deviceError(claim, dr.Request, dr.Device, settingsFields(dr.Settings), err)
		}
		faults.Point(faults.PrepareVFApplied)
	}
	if dr.Steps.GUID {
		ran.GUID = true
		name, err := kernel.SetGUID(ctx, &dr.Snapshot, *dr.GUID)
		if err != nil {
			return deviceError(claim, dr.Request, dr.Device, "guid", err)
		}
		// The rebind may have renamed the netdev: the NRI side moves
		// it by this name (recorded with the next checkpoint write,
		// at the latest with PrepareCompleted).
		if name != "" && !dr.Pod.VFIO {
			dr.Pod.Spec.HostIfName = name
		}
		faults.Point(faults.PrepareGUIDSet)
		if err := d.checkPKeyAfterGUID(ctx, dr); err != nil {
			return deviceError(claim, dr.Request, dr.Device, "pkey", err)
		}
	}
	if dr.Steps.VFIO {
		ran.VFIO = true
		if err := kernel.BindVFIO(ctx, &dr.Snapshot); err != nil {
			return deviceError(claim, dr.Request, dr.Device, "driver", err)
		}
		faults.Point(faults.PrepareVFIOBound)
	}
	return nil
}

// allocateAddresses runs CNI IPAM for every device with an IPAM config,
// two-phase: the intent is durable before the plugin's ADD, the result
// right after it.
func (d *Driver) allocateAddresses(ctx context.Context, claim *resourceapi.ResourceClaim, rec *ClaimRecord) error {
	for i, dr := range rec.Devices {
		if len(dr.IPAMConfig) == 0 {
			continue
		}
		if err := d.allocateAddress(ctx, claim, rec, i, dr); err != nil {
			return err
		}
	}
	return nil
}

// allocateAddress runs CNI IPAM for the i-th device of rec.
func (d *Driver) allocateAddress(ctx context.Context, claim *resourceapi.ResourceClaim, rec *ClaimRecord, i int, dr *DeviceRecord) error {
	ifName := dr.Pod.Spec.PodIfName
	if ifName == "" {
		ifName = "net" + fmt.Sprint(i+1) // vfio-pci: addresses are reported, not configured
	}
	req := ipam.Request{
		ClaimUID: rec.UID, Device: dr.Device, IfName: ifName,
		PodName: rec.PodName, PodNamespace: rec.PodNamespace, PodUID: rec.PodUID,
		IPAM: dr.IPAMConfig,
	}
	// Two-phase: the intent is durable before the plugin's ADD, so a
	// crash right after the ADD is released from the record (a retried
	// ADD with the same container ID would be refused as a duplicate).
	intent, err := d.cfg.IPAM.Intent(req)
	if err != nil {
		return deviceError(claim, dr.Request, dr.Device, "ipam", err)
	}
	dr.IPAM = intent
	if err := d.state.Put(rec); err != nil {
		dr.IPAM = nil
		return deviceError(claim, dr.Request, dr.Device, "ipam", err)
	}
	res, err := d.cfg.IPAM.Allocate(ctx, req)
	if err != nil {
		return deviceError(claim, dr.Request, dr.Device, "ipam", err)
	}
	faults.Point(faults.PrepareIPAMAllocated)
	dr.IPAM = res
	dr.Steps.IPAM = true
	dr.Pod.Spec.Addresses = res.Addresses()
	dr.Pod.Spec.Routes = append(dr.Pod.Spec.Routes, res.Routes...)
	if err := d.state.Put(rec); err != nil {
		// Not recorded: release now, the record cannot.
		if rerr := d.cfg.IPAM.Release(ctx, res); rerr != nil {
			err = errors.Join(err, fmt.Errorf("release unrecorded IPAM allocation: %w", rerr))
		}
		dr.IPAM, dr.Steps.IPAM = nil, false
		return deviceError(claim, dr.Request, dr.Device, "ipam", err)
	}
	faults.Point(faults.PrepareIPAMRecorded)
	return nil
}

// writeCDISpec writes the claim's CDI spec and gives every device its CDI
// device ID. prog.cdi is marked before the write.
func (d *Driver) writeCDISpec(ctx context.Context, claim *resourceapi.ResourceClaim, rec *ClaimRecord, devs []inventory.Device, prog *progress) error {
	cdiDevs, err := d.cdiDevices(ctx, claim, rec, devs, prog)
	if err != nil {
		return err
	}
	prog.cdi = true
	ids, err := d.cfg.CDI.Write(ctx, rec.UID, cdiDevs)
	if err != nil {
		return fmt.Errorf("claim %s/%s: write CDI spec: %w", claim.Namespace, claim.Name, err)
	}
	faults.Point(faults.PrepareCDIWritten)
	if len(ids) != len(rec.Devices) {
		return fmt.Errorf("claim %s/%s: CDI spec has %d device IDs for %d devices", claim.Namespace, claim.Name, len(ids), len(rec.Devices))
	}
	for i, dr := range rec.Devices {
		dr.CDIDeviceIDs = []string{ids[i]}
	}
	return nil
}

// cdiDevices describes each device of rec to the CDI spec: its device
// nodes (kept in prog.nodes for the device metadata), its extended
// resource name and, for a netdev the NRI plugin moves, the bind mount of
// its "attached" marker.
func (d *Driver) cdiDevices(ctx context.Context, claim *resourceapi.ResourceClaim, rec *ClaimRecord, devs []inventory.Device, prog *progress) ([]cdi.Device, error) {
	resourceNames, err := d.extendedResourceNames(ctx, claim, rec.Devices)
	if err != nil {
		return nil, err
	}
	cdiDevs := make([]cdi.Device, 0, len(rec.Devices))
	for i, dr := range rec.Devices {
		nodes, err := d.deviceNodes(ctx, dr, &devs[i])
		if err != nil {
			return nil, deviceError(claim, dr.Request, dr.Device, "", fmt.Errorf("find device nodes: %w", err))
		}
		prog.nodes[dr.Device] = nodes
		cdev := cdi.Device{
			Request: dr.Request, Name: dr.Device, PCIAddress: dr.PCIAddress,
			IfName: dr.Pod.Spec.PodIfName, RDMADevice: dr.Pod.RDMADevice,
			RDMACharDevices: nodes.rdmaChar, VFIOGroup: nodes.vfioGroup,
			ResourceName: resourceNames[dr.Request],
		}
		if m := d.cfg.AttachMarks; m != nil && !dr.Pod.VFIO {
			// The netdev goes into the pod netns: the container needs the
			// marker the NRI plugin creates once it is there.
			mount, err := attachMount(m, rec.UID, dr.Device)
			if err != nil {
				return nil, deviceError(claim, dr.Request, dr.Device, "", err)
			}
			cdev.Mounts = append(cdev.Mounts, mount)
		}
		cdiDevs = append(cdiDevs, cdev)
	}
	return cdiDevs, nil
}

// completePrepare records PrepareCompleted; vfio-pci devices never get
// attached, so their claim status (the addresses to use, not configured)
// is queued now.
func (d *Driver) completePrepare(rec *ClaimRecord) error {
	rec.Phase = PhasePrepareCompleted
	if err := d.state.Put(rec); err != nil {
		return err
	}
	faults.Point(faults.PrepareCompleted)
	d.queueStatus(rec)
	return nil
}

// attachMount is the CDI bind mount of a device's "attached" marker.
func attachMount(m *attachmark.Marks, claimUID, device string) (cdi.Mount, error) {
	host, err := m.HostPath(claimUID, device)
	if err != nil {
		return cdi.Mount{}, err
	}
	ctr, err := attachmark.ContainerPath(device)
	if err != nil {
		return cdi.Mount{}, err
	}
	return cdi.Mount{HostPath: host, ContainerPath: ctr, Options: attachmark.MountOptions()}, nil
}

// settingsFields names the config fields behind VF settings, for errors.
func settingsFields(s vfconfig.Settings) string {
	var f []string
	add := func(set bool, name string) {
		if set {
			f = append(f, name)
		}
	}
	add(s.MAC != nil, "mac")
	add(s.VLAN != nil, "vlan")
	add(s.QoS != nil, "vlanQoS")
	add(s.VLANProto != nil, "vlanProto")
	add(s.SpoofChk != nil, "spoofChk")
	add(s.Trust != nil, "trust")
	add(s.LinkState != nil, "linkState")
	add(s.MinTxRate != nil, "minTxRate")
	add(s.MaxTxRate != nil, "maxTxRate")
	return strings.Join(f, ",")
}

func hasVFSettings(s vfconfig.Settings) bool {
	return s != (vfconfig.Settings{})
}

// extendedResourceNames maps each request of a claim the scheduler made
// for a pod's extended resources (resources.limits) to the extended
// resource name its DeviceClass stands for. Such a claim names only the
// class in each request, so the name is read from the class. Other claims
// get an empty map.
func (d *Driver) extendedResourceNames(ctx context.Context, claim *resourceapi.ResourceClaim, devs []*DeviceRecord) (map[string]string, error) {
	names := map[string]string{}
	if claim.Annotations[resourceapi.ExtendedResourceClaimAnnotation] != "true" || d.cfg.ClassResourceName == nil {
		return names, nil
	}
	for _, dr := range devs {
		if _, ok := names[dr.Request]; ok {
			continue
		}
		class := requestClass(claim, dr.Request)
		if class == "" {
			return nil, deviceError(claim, dr.Request, dr.Device, "", errors.New("extended-resource claim: request names no DeviceClass"))
		}
		name, err := d.cfg.ClassResourceName(ctx, class)
		if err != nil {
			return nil, deviceError(claim, dr.Request, dr.Device, "", fmt.Errorf("extended resource name of DeviceClass %q: %w", class, err))
		}
		names[dr.Request] = name
	}
	klog.FromContext(ctx).V(4).Info("Extended-resource claim", "resourceNames", names)
	return names, nil
}

// originalReader is the optional part of Kernel that reads a netdev as the
// NRI plugin's detach restores it (netattach.ReadOriginal).
type originalReader interface {
	ReadOriginal(ctx context.Context, hostIfName, pciAddress string) (netattach.Original, error)
}

// recordAttachIntent makes the intent to attach durable before the
// runtime's hook: for every netdev the NRI plugin moves (no vfio-pci, no
// RDMA isolation, whose RDMA moves keep their durable records), the
// netdev as it is now (after the VF settings and GUID) is recorded as
// what its detach restores, with AttachStateFromKernel. The record goes
// to disk with PrepareCompleted; the plugin's RunPodSandbox then writes
// nothing, and after a restart the attach state is derived from the
// kernel. A netdev that cannot be read now keeps the durable records of
// the hook.
func (d *Driver) recordAttachIntent(ctx context.Context, rec *ClaimRecord) {
	r, ok := d.cfg.Kernel.(originalReader)
	if !ok {
		return
	}
	for _, dr := range rec.Devices {
		p := &dr.Pod
		if p.VFIO || p.RDMAIsolation || p.Spec.HostIfName == "" || p.NetnsPath != "" {
			continue
		}
		orig, err := r.ReadOriginal(ctx, p.Spec.HostIfName, dr.PCIAddress)
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Cannot read the netdev now: its attach will be recorded in the hook", "device", dr.Device, "hostIfName", p.Spec.HostIfName, "err", err)
			p.Original, p.AttachStateFromKernel = nil, false
			continue
		}
		p.Original, p.AttachStateFromKernel = &orig, true
	}
}

package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/api/v1alpha1/settings"
	"github.com/sriov-dra/sriov-dra/internal/faults"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// PrepareResourceClaims implements kubeletplugin.DRAPlugin. Each claim is
// prepared on its own: one claim's failure does not fail the others.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	results := make([]kubeletplugin.PrepareResult, len(claims))
	inParallel(len(claims), func(i int) {
		claim := claims[i]
		start := time.Now()
		logger := klog.LoggerWithValues(klog.FromContext(ctx), "claim", klog.KObj(claim), "claimUID", claim.UID)
		cctx := klog.NewContext(ctx, logger)
		devs, err := d.prepareClaim(cctx, claim)
		d.observe(true, start, err)
		if err != nil {
			logger.Error(err, "Prepare failed")
			d.warn(claim, "PrepareFailed", "Prepare", err)
			results[i] = kubeletplugin.PrepareResult{Err: err}
			return
		}
		logger.V(2).Info("Prepared", "devices", len(devs), "duration", time.Since(start))
		results[i] = kubeletplugin.PrepareResult{Devices: devs}
	})
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for i, c := range claims {
		out[c.UID] = results[i]
	}
	d.updateDeviceMetrics()
	return out, nil
}

func (d *Driver) observe(prepare bool, start time.Time, err error) {
	m := d.cfg.Metrics
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "error"
	}
	if prepare {
		m.prepares.WithLabelValues(result).Inc()
		m.prepareDur.Observe(time.Since(start).Seconds())
	} else {
		m.unprepares.WithLabelValues(result).Inc()
		m.unprepareDur.Observe(time.Since(start).Seconds())
	}
}

// warn posts a Warning event on the claim.
func (d *Driver) warn(claim *resourceapi.ResourceClaim, reason, action string, err error) {
	if d.cfg.Events == nil {
		return
	}
	msg := err.Error()
	if len(msg) > 1000 {
		msg = msg[:1000] + "..."
	}
	d.cfg.Events.Eventf(claim, nil, corev1.EventTypeWarning, reason, action, "%s", msg)
}

// deviceError names the claim, request and device (and the config field,
// when one is to blame) of a Prepare failure.
func deviceError(claim *resourceapi.ResourceClaim, request, device, configField string, err error) error {
	where := fmt.Sprintf("claim %s/%s request %q device %s", claim.Namespace, claim.Name, request, device)
	if configField != "" {
		where += " config field " + configField
	}
	return fmt.Errorf("%s: %w", where, err)
}

// prepareClaim prepares one claim and returns its CDI devices.
func (d *Driver) prepareClaim(ctx context.Context, claim *resourceapi.ResourceClaim) ([]kubeletplugin.Device, error) {
	logger := klog.FromContext(ctx)
	uid := string(claim.UID)
	defer d.lockClaim(uid)()
	if rec, ok := d.state.Claim(uid); ok && rec.Stale != nil {
		// The same claim was prepared before the node rebooted (its pod
		// survived the reboot): its old IPAM allocation uses the same
		// container ID, so it must go before a new one is made.
		logger.Info("Releasing the claim's record from before the node rebooted before preparing it again", "bootID", rec.Stale.BootID)
		if err := d.undo(ctx, rec, false); err != nil {
			d.staleReleaseFailed(ctx, rec, err)
			return nil, fmt.Errorf("claim %s/%s: release its record from before the node rebooted (boot %s) first: %w", claim.Namespace, claim.Name, rec.Stale.BootID, err)
		}
		d.updateStaleMetric()
	}
	if rec, ok := d.state.Claim(uid); ok {
		if rec.Phase == PhasePrepareCompleted {
			logger.V(3).Info("Claim already prepared; returning the recorded devices")
			out := resultOf(rec)
			d.withMetadata(ctx, rec, out, nil)
			return out, nil
		}
		// An earlier attempt died half-way: undo what it recorded, then
		// start over from a clean device.
		logger.Info("Rolling back an earlier unfinished prepare of the claim")
		if err := d.undo(ctx, rec, true); err != nil {
			return nil, fmt.Errorf("claim %s/%s: roll back earlier unfinished prepare: %w", claim.Namespace, claim.Name, err)
		}
		// The rollback changed the devices (a VF back from vfio-pci on its
		// network driver, say): plan from what they are now, not from the
		// scan before it, which would skip the bind the plan needs.
		if _, err := d.scan(ctx); err != nil {
			return nil, fmt.Errorf("claim %s/%s: rescan after rolling back: %w", claim.Namespace, claim.Name, err)
		}
	}

	rec, devs, err := d.start(ctx, claim)
	if err != nil || rec == nil {
		return []kubeletplugin.Device{}, err
	}
	prog := &progress{steps: make([]DeviceSteps, len(rec.Devices)), nodes: map[string]deviceNodes{}}
	if err := d.apply(ctx, claim, rec, devs, prog); err != nil {
		// Undo what this attempt ran (the failed step included: it may
		// have half-happened). The record's intents stay as they are for
		// the case that undo fails too and a later Unprepare has to finish.
		cur, ok := d.state.Claim(uid)
		if !ok {
			cur = rec.clone()
		}
		for i, dr := range cur.Devices {
			ipamDone := dr.Steps.IPAM
			dr.Steps = prog.steps[i]
			dr.Steps.IPAM = ipamDone
		}
		cur.Steps.CDI = prog.cdi
		if uerr := d.undo(ctx, cur, true); uerr != nil {
			//nolint:errorlint // the Prepare error is the cause callers match; the rollback failure is told, not matched (its step errors are Unprepare's)
			return nil, fmt.Errorf("%w; rolling back also failed (the claim stays recorded and is undone at Unprepare): %v", err, uerr)
		}
		return nil, err
	}
	out := resultOf(rec)
	d.withMetadata(ctx, rec, out, prog.nodes)
	return out, nil
}

// progress is what one apply attempt ran (or tried to run).
type progress struct {
	steps []DeviceSteps
	cdi   bool
	// nodes are the device nodes the CDI spec gives each device, by
	// device name (for the device metadata).
	nodes map[string]deviceNodes
}

// start plans the claim, reserves its devices, snapshots them and records
// "prepare started". A nil record means the claim has no device of this
// driver.
func (d *Driver) start(ctx context.Context, claim *resourceapi.ResourceClaim) (*ClaimRecord, []inventory.Device, error) {
	rec, devs, err := d.reserve(ctx, claim)
	if err != nil || rec == nil {
		return nil, nil, err
	}
	// Snapshot every device before anything changes, then record
	// "prepare started" with the snapshots and the steps to come. Both
	// run outside planMu: saves of concurrent claims share fsyncs.
	for i, dr := range rec.Devices {
		snap, err := d.cfg.Host.Snapshot(ctx, &devs[i])
		if err == nil {
			dr.Snapshot = snap
			continue
		}
		err = deviceError(claim, dr.Request, dr.Device, "", fmt.Errorf("snapshot: %w", err))
		if derr := d.state.Delete(rec.UID); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, nil, err
	}
	if err := d.state.Put(rec); err != nil {
		if derr := d.state.Delete(rec.UID); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, nil, err
	}
	faults.Point(faults.PrepareStartedRecorded)
	return rec, devs, nil
}

// reserve plans the claim and, under planMu, takes its devices in memory
// (a record without step intents) so no other claim can take them. A nil
// record means the claim has no device of this driver.
func (d *Driver) reserve(ctx context.Context, claim *resourceapi.ResourceClaim) (*ClaimRecord, []inventory.Device, error) {
	d.planMu.Lock()
	defer d.planMu.Unlock()
	rec, devs, err := d.plan(ctx, claim)
	if err != nil {
		return nil, nil, err
	}
	if len(rec.Devices) == 0 {
		return nil, nil, nil
	}
	held := rec.clone()
	held.Steps = ClaimSteps{}
	for _, dr := range held.Devices {
		dr.Steps = DeviceSteps{}
	}
	d.state.reserve(held)
	return rec, devs, nil
}

// apply runs the recorded steps of rec in order and records completion.
// The steps were marked in rec before the first change (the started
// record), so a rollback restores all of them; restoring a step that had
// not run yet puts back the snapshot's values, which the device still has.
// prog tells an in-process rollback what this attempt actually reached.
func (d *Driver) apply(ctx context.Context, claim *resourceapi.ResourceClaim, rec *ClaimRecord, devs []inventory.Device, prog *progress) error {
	host := d.cfg.Host
	for i, dr := range rec.Devices {
		ran := &prog.steps[i]
		if dr.Steps.VFSettings {
			ran.VFSettings = true
			if err := host.ApplyVF(ctx, &dr.Snapshot, dr.Settings); err != nil {
				return deviceError(claim, dr.Request, dr.Device, settingsFields(dr.Settings), err)
			}
			faults.Point(faults.PrepareVFApplied)
		}
		if dr.Steps.GUID {
			ran.GUID = true
			name, err := host.SetGUID(ctx, &dr.Snapshot, *dr.GUID)
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
			if err := host.BindVFIO(ctx, &dr.Snapshot); err != nil {
				return deviceError(claim, dr.Request, dr.Device, "driver", err)
			}
			faults.Point(faults.PrepareVFIOBound)
		}
	}
	for i, dr := range rec.Devices {
		if len(dr.IPAMConfig) == 0 {
			continue
		}
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
	}

	d.recordAttachIntent(ctx, rec)

	resourceNames, err := d.extendedResourceNames(ctx, claim, rec.Devices)
	if err != nil {
		return err
	}
	cdiDevs := make([]cdi.Device, 0, len(rec.Devices))
	for i, dr := range rec.Devices {
		nodes, err := d.deviceNodes(ctx, dr, &devs[i])
		if err != nil {
			return deviceError(claim, dr.Request, dr.Device, "", fmt.Errorf("find device nodes: %w", err))
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
				return deviceError(claim, dr.Request, dr.Device, "", err)
			}
			cdev.Mounts = append(cdev.Mounts, mount)
		}
		cdiDevs = append(cdiDevs, cdev)
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
	rec.Phase = PhasePrepareCompleted
	if err := d.state.Put(rec); err != nil {
		return err
	}
	faults.Point(faults.PrepareCompleted)
	// vfio-pci devices never get attached: their status (the addresses
	// to use, not configured) is known now.
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

// resultOf is the answer kubelet gets for a completed claim.
func resultOf(rec *ClaimRecord) []kubeletplugin.Device {
	out := make([]kubeletplugin.Device, 0, len(rec.Devices))
	for _, dr := range rec.Devices {
		out = append(out, kubeletplugin.Device{
			Requests:     []string{dr.Request},
			PoolName:     dr.Pool,
			DeviceName:   dr.Device,
			CDIDeviceIDs: append([]string(nil), dr.CDIDeviceIDs...),
		})
	}
	return out
}

// reservedPod is the one pod the claim is reserved for.
func reservedPod(claim *resourceapi.ResourceClaim) (resourceapi.ResourceClaimConsumerReference, error) {
	var pods []resourceapi.ResourceClaimConsumerReference
	for _, r := range claim.Status.ReservedFor {
		if r.APIGroup == "" && r.Resource == "pods" {
			pods = append(pods, r)
		}
	}
	if len(pods) != 1 || len(claim.Status.ReservedFor) != 1 {
		return resourceapi.ResourceClaimConsumerReference{}, fmt.Errorf("claim %s/%s: status.reservedFor must name exactly one pod (a network device is moved into one pod's network namespace), it has %d entries of which %d pods; use one claim per pod (a ResourceClaimTemplate)",
			claim.Namespace, claim.Name, len(claim.Status.ReservedFor), len(pods))
	}
	return pods[0], nil
}

// plan checks the claim against this node and resolves every device's
// config into a started record. It changes nothing; besides memory it reads
// only the host netns's link names (an ifName must not name a host link).
func (d *Driver) plan(ctx context.Context, claim *resourceapi.ResourceClaim) (*ClaimRecord, []inventory.Device, error) {
	if claim.Status.Allocation == nil {
		return nil, nil, fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)
	}
	pod, err := reservedPod(claim)
	if err != nil {
		return nil, nil, err
	}
	logger := klog.FromContext(ctx)
	inv := d.inventory()
	if inv == nil {
		return nil, nil, errors.New("no device scan yet")
	}
	publishable := map[string]bool{}
	for _, dev := range inv.Publishable(d.cfg.PassthroughPFs) {
		publishable[dev.Name] = true
	}
	rec := &ClaimRecord{
		UID: string(claim.UID), Namespace: claim.Namespace, Name: claim.Name,
		PodUID: string(pod.UID), PodName: pod.Name, PodNamespace: claim.Namespace,
		Phase: PhasePrepareStarted,
	}
	alloc := claim.Status.Allocation.Devices
	cfgPath := field.NewPath("status", "allocation", "devices", "config")
	var (
		devs     []inventory.Device
		results  []resourceapi.DeviceRequestAllocationResult
		resolved []*v1alpha1.Resolved
		inClaim  = map[string]bool{}
	)
	for i, r := range alloc.Results {
		if r.Driver != d.cfg.DriverName {
			continue
		}
		rpath := field.NewPath("status", "allocation", "devices", "results").Index(i)
		if r.Pool != d.cfg.NodeName {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", fmt.Errorf("%s: pool %q is not this node's pool %q", rpath.Child("pool"), r.Pool, d.cfg.NodeName))
		}
		if owner := d.state.Owner(r.Device); owner != "" && owner != rec.UID {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", fmt.Errorf("device is already prepared for claim %s", owner))
		}
		if l, lost := d.state.Lost(r.Device); lost {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", fmt.Errorf("device was lost (gone while claim %s/%s held it, released %s) and is not back with its identity (%s) yet", l.ClaimNamespace, l.ClaimName, l.Since, l.Identity))
		}
		dev, ok := inv.Find(r.Device)
		if !ok || !publishable[r.Device] {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", notOffered(inv, r.Device, d.cfg.PassthroughPFs))
		}
		if inClaim[r.Device] {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", errors.New("device is allocated twice in the claim"))
		}
		inClaim[r.Device] = true
		if owner := d.state.relatedOwner(dev); owner != "" && owner != rec.UID {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", fmt.Errorf("a PF and its own VFs are never handed out together: a related device is prepared for claim %s", owner))
		}
		if errs := v1alpha1.ForeignConfigs(cfgPath, &alloc, d.cfg.DriverName, r.Request); len(errs) > 0 {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", errs.ToAggregate())
		}
		res, errs := v1alpha1.Resolve(cfgPath, alloc.Config, d.cfg.DriverName, r.Request, requestClass(claim, r.Request), string(dev.Kind))
		if len(errs) > 0 {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", errs.ToAggregate())
		}
		if err := d.checkVFIO(ctx, dev, res); err != nil {
			return nil, nil, deviceError(claim, r.Request, r.Device, "driver", err)
		}
		devs = append(devs, *dev)
		results = append(results, r)
		resolved = append(resolved, res)
		logger.V(4).Info("Resolved device config", "request", r.Request, "device", r.Device, "config", res)
	}

	// Interface names in the pod: devices of the pod's other claims keep
	// theirs, this claim's devices get their configured or next free name.
	var netdevs []v1alpha1.PodNetdev
	for _, other := range d.state.podRecords(rec.PodUID, rec.UID) {
		for _, od := range other.Devices {
			if od.Pod.VFIO || od.Pod.Spec.PodIfName == "" {
				continue
			}
			name := od.Pod.Spec.PodIfName
			netdevs = append(netdevs, v1alpha1.PodNetdev{Claim: other.Namespace + "/" + other.Name, Request: od.Request, Device: od.Device, IfName: &name})
		}
	}
	fixed := len(netdevs)
	var mine []int
	for i, res := range resolved {
		if res.VFIO() {
			continue
		}
		name := res.IfName
		netdevs = append(netdevs, v1alpha1.PodNetdev{Claim: claim.Namespace + "/" + claim.Name, Request: results[i].Request, Device: devs[i].Name, IfName: &name})
		mine = append(mine, i)
	}
	names, err := v1alpha1.AssignIfNames(netdevs)
	if err != nil {
		return nil, nil, fmt.Errorf("claim %s/%s config field ifName: %w", claim.Namespace, claim.Name, err)
	}
	podIfName := map[int]string{}
	for k, i := range mine {
		podIfName[i] = names[fixed+k]
		if err := podIfNameOnHost(d.cfg.Netlink, podIfName[i], devs[i].IfName); err != nil {
			return nil, nil, deviceError(claim, results[i].Request, results[i].Device, "ifName", err)
		}
	}

	guids := d.state.heldGUIDs(rec.UID)
	for _, dev := range inv.Devices {
		for _, g := range []string{dev.NodeGUID, dev.PortGUID} {
			if g != "" {
				guids[strings.ToLower(g)] = "device " + dev.Name
			}
		}
	}
	// MACs: a device's own MACs are its to keep; claims' MACs name the
	// claim (they win over the device entry of the VF they are set on).
	macs := map[string]string{}
	if i := firstWithMAC(resolved); i >= 0 {
		if err := hostLinkMACs(d.cfg.Netlink, macs); err != nil {
			return nil, nil, deviceError(claim, results[i].Request, results[i].Device, "mac", err)
		}
	}
	nodeMACs(inv, macs)
	maps.Copy(macs, d.state.heldMACs(rec.UID))
	for k, r := range results {
		dev, res := devs[k], resolved[k]
		cfgJSON, err := json.Marshal(res)
		if err != nil {
			return nil, nil, deviceError(claim, r.Request, r.Device, "", err)
		}
		published := dev
		dr := &DeviceRecord{
			Request: r.Request, Pool: r.Pool, Device: dev.Name, PCIAddress: dev.PCIAddress, Kind: dev.Kind,
			Config: cfgJSON, IPAMConfig: res.IPAM, Driver: res.Driver, Published: &published,
			RDMAManagement: res.RDMAManagement,
			Pod: nri.PodDevice{
				VFIO:          res.VFIO(),
				LinkType:      dev.LinkType,
				RDMADevice:    dev.RDMADevice(),
				RDMAIsolation: res.RDMAIsolation,
				IRQAffinity:   res.IRQAffinity == v1alpha1.IRQAffinityContainer,
			},
		}
		if !res.VFIO() {
			dr.Pod.Spec = settings.NetSpec(res, dev.IfName, podIfName[k])
		}
		if fieldName, err := checkUsable(res, &dev, inv.RDMANetnsMode); err != nil {
			return nil, nil, deviceError(claim, r.Request, r.Device, fieldName, err)
		}
		if dev.Kind == inventory.KindVF {
			dr.Settings = settings.VF(res)
			dr.GUID = settings.GUID(res)
			if res.GUID == v1alpha1.GUIDAuto {
				g, err := pickAutoGUID(res.GUIDPrefix, pfOf(inv, &dev), &dev, rec.UID, guids)
				if err != nil {
					return nil, nil, deviceError(claim, r.Request, r.Device, "guid", err)
				}
				dr.GUID = &g
			}
			if res.MAC == v1alpha1.MACAuto {
				m, err := pickAutoMAC(&dev, rec.UID, macs)
				if err != nil {
					return nil, nil, deviceError(claim, r.Request, r.Device, "mac", err)
				}
				dr.Settings.MAC = &m
				if !res.VFIO() {
					dr.Pod.Spec.MAC = m
				}
			}
			if dr.Settings.MAC != nil {
				m := strings.ToLower(*dr.Settings.MAC)
				if holder, held := macs[m]; held && holder != deviceHolder(&dev) {
					return nil, nil, deviceError(claim, r.Request, r.Device, "mac", fmt.Errorf(
						"MAC %s is already in use on this node by %s: two VFs with one MAC break forwarding for both; give each claim its own mac, or mac: auto (a ResourceClaimTemplate with a mac gives every replica the same one)", m, holder))
				}
				macs[m] = fmt.Sprintf("request %q of this claim", r.Request)
			}
			if dr.GUID != nil {
				g := strings.ToLower(*dr.GUID)
				if holder, held := guids[g]; held && holder != "device "+dev.Name {
					return nil, nil, deviceError(claim, r.Request, r.Device, "guid", fmt.Errorf("GUID %s is held by %s", g, holder))
				}
				guids[g] = "claim " + rec.UID
			}
			dr.Steps.VFSettings = hasVFSettings(dr.Settings)
			dr.Steps.GUID = dr.GUID != nil
		}
		// The pkey table is the port GUID's: with a GUID change ahead,
		// apply checks the table the port has after it.
		if !dr.Steps.GUID {
			if err := checkPKey(res.PKey, pfOf(inv, &dev), &dev); err != nil {
				return nil, nil, deviceError(claim, r.Request, r.Device, "pkey", err)
			}
		} else if err := checkPKeyLink(res.PKey, &dev); err != nil {
			return nil, nil, deviceError(claim, r.Request, r.Device, "pkey", err)
		}
		dr.Steps.VFIO = res.VFIO() && dev.Driver != v1alpha1.DriverVFIOPCI
		rec.Devices = append(rec.Devices, dr)
	}
	rec.Steps.CDI = true
	klog.FromContext(ctx).V(3).Info("Planned claim", "devices", len(rec.Devices), "pod", klog.KRef(rec.PodNamespace, rec.PodName))
	return rec, devs, nil
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

// requestClass is the DeviceClass a request (or "req/sub" subrequest) of
// the claim names, "" if the claim has no such request.
func requestClass(claim *resourceapi.ResourceClaim, request string) string {
	main, sub, _ := strings.Cut(request, "/")
	for _, r := range claim.Spec.Devices.Requests {
		if r.Name != main {
			continue
		}
		if sub == "" && r.Exactly != nil {
			return r.Exactly.DeviceClassName
		}
		for _, s := range r.FirstAvailable {
			if s.Name == sub {
				return s.DeviceClassName
			}
		}
	}
	return ""
}

// checkUsable refuses a config that cannot work on the device as the
// last scan found it, so the claim fails at Prepare (kubelet retries, the
// claim gets a Warning event) rather than the pod at sandbox creation. It
// returns the config field to blame.
func checkUsable(res *v1alpha1.Resolved, dev *inventory.Device, rdmaMode string) (string, error) {
	if !res.VFIO() && dev.IfName == "" {
		var why string
		switch dev.Driver {
		case v1alpha1.DriverVFIOPCI:
			why = "it is bound to vfio-pci"
		case "":
			why = "it is bound to no driver"
		default:
			why = fmt.Sprintf("its driver %s shows no network interface for it (gone, or not probed yet)", dev.Driver)
		}
		return "driver", fmt.Errorf("driver %s (the default) moves the device's network interface into the pod, but device %s has none: %s; request it through a DeviceClass with driver: %s, or bind it to its network driver",
			v1alpha1.DriverNetdevice, dev.Name, why, v1alpha1.DriverVFIOPCI)
	}
	if res.RDMAIsolation {
		if dev.RDMADevice() == "" {
			return "rdmaIsolation", fmt.Errorf("rdmaIsolation: true moves the device's RDMA device into the pod, but device %s has no RDMA device", dev.Name)
		}
		if rdmaMode != rdma.ModeExclusive {
			mode := rdmaMode
			if mode == "" {
				mode = "unknown (the kernel did not report it)"
			}
			return "rdmaIsolation", fmt.Errorf("rdmaIsolation: true needs the node's RDMA netns mode to be %s (rdma system set netns exclusive) to move RDMA device %s of device %s into the pod; the mode is %s",
				rdma.ModeExclusive, dev.RDMADevice(), dev.Name, mode)
		}
	}
	return "", nil
}

// pkeyWaits bounds how long checkPKeyAfterGUID waits for the VF's port
// to show a pkey table after the rebind that set its GUID.
const (
	pkeyWaits    = 20
	pkeyWaitStep = 100 * time.Millisecond
)

// checkPKeyAfterGUID checks a device's configured pkey against the pkey
// table of its port as it is after the GUID step: the subnet manager
// keys partition membership on the port GUID, so the table the port had
// before the change says nothing about the new GUID's. A table that is
// not there yet (the VF's RDMA device is probing after the rebind) is
// read again for a short while. An error makes Prepare roll back,
// the GUID included.
func (d *Driver) checkPKeyAfterGUID(ctx context.Context, dr *DeviceRecord) error {
	var res v1alpha1.Resolved
	if err := json.Unmarshal(dr.Config, &res); err != nil {
		return fmt.Errorf("read the recorded config: %w", err)
	}
	if res.PKey == 0 || hw.PKey(res.PKey).IsDefault() {
		return nil
	}
	var (
		table []string
		err   error
	)
	for range pkeyWaits {
		table, err = d.cfg.Host.PKeys(ctx, &dr.Snapshot)
		if err == nil && len(table) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pkeyWaitStep):
		}
	}
	if err != nil {
		return fmt.Errorf("pkey %s: read the port's pkey table after setting GUID %s: %w", res.PKey, guidOf(dr), err)
	}
	if err := checkPKeyTable(res.PKey, table, dr.Device); err != nil {
		return fmt.Errorf("after setting GUID %s: %w", guidOf(dr), err)
	}
	return nil
}

func guidOf(dr *DeviceRecord) string {
	if dr.GUID == nil {
		return ""
	}
	return *dr.GUID
}

// checkPKeyLink refuses a pkey on a device that is not InfiniBand.
func checkPKeyLink(want v1alpha1.PKey, dev *inventory.Device) error {
	if want != 0 && dev.LinkType != inventory.LinkTypeInfiniBand {
		return fmt.Errorf("pkey %s is set but device %s is %s, not infiniband", want, dev.Name, dev.LinkType)
	}
	return nil
}

// checkPKey refuses a pkey the device's port does not carry. It is a
// pre-flight check, not a grant: a node agent cannot give a port
// partition membership, the fabric's subnet manager programs the pkey
// tables of the PF port and its VFs. So the driver compares the request
// with the port's table (the VF's own pkeys from sysfs, else its PF's port
// 1) and fails Prepare with the field named rather than start a pod that
// cannot reach its partition. All 16 bits are compared: a full-member key
// (0x8000 set) needs the full-member entry, a limited one the limited
// entry, so a claim never gets more (or less) membership than it asked
// for. The default partition (0x7fff/0xffff) is always accepted: every
// port is a member of it in the one way the SM configured.
func checkPKey(want v1alpha1.PKey, pf, dev *inventory.Device) error {
	if want == 0 {
		return nil
	}
	if err := checkPKeyLink(want, dev); err != nil {
		return err
	}
	table := dev.PKeys
	if len(table) == 0 && pf != nil {
		table = pf.PKeys
	}
	return checkPKeyTable(want, table, dev.Name)
}

// checkPKeyTable compares a pkey with a port's table (see checkPKey).
func checkPKeyTable(want v1alpha1.PKey, table []string, device string) error {
	w := hw.PKey(want)
	if w == 0 || w.IsDefault() {
		return nil
	}
	var other hw.PKey
	for _, s := range table {
		p, err := hw.ParsePKey(s)
		switch {
		case err != nil:
		case p == w:
			return nil
		case p.Partition() == w.Partition():
			other = p
		}
	}
	if other != 0 {
		return fmt.Errorf("pkey %s asks for %s membership but the port's pkey table %v of device %s has the partition as %s (%s membership): ask for %s, or have the subnet manager change the membership",
			w, membership(w), table, device, other, membership(other), other)
	}
	return fmt.Errorf("pkey %s is not in the port's pkey table %v of device %s: the subnet manager must add the partition first", w, table, device)
}

func membership(p hw.PKey) string {
	if p.FullMember() {
		return "full"
	}
	return "limited"
}

// pfOf returns the PF of a VF from the inventory, or nil.
func pfOf(inv *inventory.Inventory, vf *inventory.Device) *inventory.Device {
	for i := range inv.Devices {
		if d := &inv.Devices[i]; d.Kind == inventory.KindPF && d.PCIAddress == vf.PFPCIAddress {
			return d
		}
	}
	return nil
}

// originalReader is the optional part of Host that reads a netdev as the
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
	r, ok := d.cfg.Host.(originalReader)
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

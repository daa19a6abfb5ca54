package driver

// This file is Prepare's plan: the pure step that checks a claim against
// this node and turns every allocated device and its config into a device
// record with the steps to come. It changes nothing on the host.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/api/v1alpha1/settings"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// plannedDevice is one of the claim's devices as the plan resolved it.
type plannedDevice struct {
	alloc resourceapi.DeviceRequestAllocationResult
	dev   inventory.Device
	res   *v1alpha1.Resolved
	// podIfName is the device's interface name in the pod ("" for
	// vfio-pci).
	podIfName string
}

// heldIDs are the GUIDs and MACs in use on the node, lower-cased, each
// mapped to who holds it (for the error that names the holder).
type heldIDs struct {
	guids, macs map[string]string
}

// plan checks the claim against this node and resolves every device's
// config into a started record. It changes nothing; besides memory it reads
// only the host netns's links (an ifName must not name a host link, a mac
// must not copy one's address).
func (d *Driver) plan(ctx context.Context, claim *resourceapi.ResourceClaim) (*ClaimRecord, []inventory.Device, error) {
	rec, err := startedRecord(claim)
	if err != nil {
		return nil, nil, err
	}
	inv := d.inventory()
	if inv == nil {
		return nil, nil, errors.New("no device scan yet")
	}
	planned, err := d.resolveDevices(ctx, claim, rec, inv)
	if err != nil {
		return nil, nil, err
	}
	if err := d.assignPodIfNames(claim, rec, planned); err != nil {
		return nil, nil, err
	}
	held, err := d.heldIDs(ctx, claim, rec.UID, inv, planned)
	if err != nil {
		return nil, nil, err
	}
	devs := make([]inventory.Device, 0, len(planned))
	for _, p := range planned {
		dr, err := planDevice(claim, rec, inv, p, held)
		if err != nil {
			return nil, nil, err
		}
		rec.Devices = append(rec.Devices, dr)
		devs = append(devs, p.dev)
	}
	rec.Steps.CDI = true
	klog.FromContext(ctx).V(3).Info("Planned claim", "devices", len(rec.Devices), "pod", klog.KRef(rec.PodNamespace, rec.PodName))
	return rec, devs, nil
}

// startedRecord is the claim's record in phase PrepareStarted, still
// without devices; the claim must be allocated and reserved for one pod.
func startedRecord(claim *resourceapi.ResourceClaim) (*ClaimRecord, error) {
	if claim.Status.Allocation == nil {
		return nil, fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)
	}
	pod, err := reservedPod(claim)
	if err != nil {
		return nil, err
	}
	return &ClaimRecord{
		UID: string(claim.UID), Namespace: claim.Namespace, Name: claim.Name,
		PodUID: string(pod.UID), PodName: pod.Name, PodNamespace: claim.Namespace,
		Phase: PhasePrepareStarted,
	}, nil
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

// resolveDevices takes the allocation results of this driver in order,
// refuses a device this node cannot hand to the claim (another pool, held
// by another claim or lost, not offered, allocated twice, a PF whose VFs
// are in use or the reverse) and resolves each device's config (class
// configs, then claim configs).
func (d *Driver) resolveDevices(ctx context.Context, claim *resourceapi.ResourceClaim, rec *ClaimRecord, inv *inventory.Inventory) ([]*plannedDevice, error) {
	logger := klog.FromContext(ctx)
	publishable := map[string]bool{}
	for _, dev := range inv.Publishable(d.cfg.PassthroughPFs) {
		publishable[dev.Name] = true
	}
	alloc := claim.Status.Allocation.Devices
	cfgPath := field.NewPath("status", "allocation", "devices", "config")
	var planned []*plannedDevice
	inClaim := map[string]bool{}
	for i, r := range alloc.Results {
		if r.Driver != d.cfg.DriverName {
			continue
		}
		rpath := field.NewPath("status", "allocation", "devices", "results").Index(i)
		if r.Pool != d.cfg.NodeName {
			return nil, deviceError(claim, r.Request, r.Device, "", fmt.Errorf("%s: pool %q is not this node's pool %q", rpath.Child("pool"), r.Pool, d.cfg.NodeName))
		}
		if owner := d.state.Owner(r.Device); owner != "" && owner != rec.UID {
			return nil, deviceError(claim, r.Request, r.Device, "", fmt.Errorf("device is already prepared for claim %s", owner))
		}
		if l, lost := d.state.Lost(r.Device); lost {
			return nil, deviceError(claim, r.Request, r.Device, "", fmt.Errorf("device was lost (gone while claim %s/%s held it, released %s) and is not back with its identity (%s) yet", l.ClaimNamespace, l.ClaimName, l.Since, l.Identity))
		}
		dev, ok := inv.Find(r.Device)
		if !ok || !publishable[r.Device] {
			return nil, deviceError(claim, r.Request, r.Device, "", notOffered(inv, r.Device, d.cfg.PassthroughPFs))
		}
		if inClaim[r.Device] {
			return nil, deviceError(claim, r.Request, r.Device, "", errors.New("device is allocated twice in the claim"))
		}
		inClaim[r.Device] = true
		if owner := d.state.relatedOwner(dev); owner != "" && owner != rec.UID {
			return nil, deviceError(claim, r.Request, r.Device, "", fmt.Errorf("a PF and its own VFs are never handed out together: a related device is prepared for claim %s", owner))
		}
		if errs := v1alpha1.ForeignConfigs(cfgPath, &alloc, d.cfg.DriverName, r.Request); len(errs) > 0 {
			return nil, deviceError(claim, r.Request, r.Device, "", errs.ToAggregate())
		}
		res, errs := v1alpha1.Resolve(cfgPath, alloc.Config, d.cfg.DriverName, r.Request, requestClass(claim, r.Request), string(dev.Kind))
		if len(errs) > 0 {
			return nil, deviceError(claim, r.Request, r.Device, "", errs.ToAggregate())
		}
		if err := d.checkVFIO(ctx, dev, res); err != nil {
			return nil, deviceError(claim, r.Request, r.Device, "driver", err)
		}
		planned = append(planned, &plannedDevice{alloc: r, dev: *dev, res: res})
		logger.V(4).Info("Resolved device config", "request", r.Request, "device", r.Device, "config", res)
	}
	return planned, nil
}

// assignPodIfNames sets the pod interface name of each of the claim's
// netdevs: devices of the pod's other claims keep theirs, this claim's
// devices get their configured or next free name, which must not name a
// link of the host netns.
func (d *Driver) assignPodIfNames(claim *resourceapi.ResourceClaim, rec *ClaimRecord, planned []*plannedDevice) error {
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
	var mine []*plannedDevice
	for _, p := range planned {
		if p.res.VFIO() {
			continue
		}
		name := p.res.IfName
		netdevs = append(netdevs, v1alpha1.PodNetdev{Claim: claim.Namespace + "/" + claim.Name, Request: p.alloc.Request, Device: p.dev.Name, IfName: &name})
		mine = append(mine, p)
	}
	names, err := v1alpha1.AssignIfNames(netdevs)
	if err != nil {
		return fmt.Errorf("claim %s/%s config field ifName: %w", claim.Namespace, claim.Name, err)
	}
	for k, p := range mine {
		p.podIfName = names[fixed+k]
		if err := podIfNameOnHost(d.cfg.Netlink, p.podIfName, p.dev.IfName); err != nil {
			return deviceError(claim, p.alloc.Request, p.alloc.Device, "ifName", err)
		}
	}
	return nil
}

// heldIDs collects the GUIDs and MACs the claim must not take: those set
// by other claims and those the node's devices carry. A device's own MACs
// are its to keep; claims' MACs name the claim (they win over the device
// entry of the VF they are set on).
func (d *Driver) heldIDs(ctx context.Context, claim *resourceapi.ResourceClaim, claimUID string, inv *inventory.Inventory, planned []*plannedDevice) (heldIDs, error) {
	guids := d.state.heldGUIDs(claimUID)
	// A claim's guid must not copy one an RDMA device outside the
	// inventory carries either (another HCA, a PF the driver does not
	// handle): read them only when a device sets one.
	if i := firstWithGUID(planned); i >= 0 {
		if err := hostRDMAGUIDs(ctx, d.cfg.Kernel, inv, guids); err != nil {
			return heldIDs{}, deviceError(claim, planned[i].alloc.Request, planned[i].alloc.Device, "guid", err)
		}
	}
	for _, dev := range inv.Devices {
		for _, g := range []string{dev.NodeGUID, dev.PortGUID} {
			if g != "" {
				guids[strings.ToLower(g)] = deviceHolder(&dev)
			}
		}
	}
	macs := map[string]string{}
	// A claim's mac must not copy a host link's either (the node's uplink,
	// a bond, a pod's veth): read them only when a device sets one.
	if i := firstWithMAC(planned); i >= 0 {
		if err := hostLinkMACs(d.cfg.Netlink, macs); err != nil {
			return heldIDs{}, deviceError(claim, planned[i].alloc.Request, planned[i].alloc.Device, "mac", err)
		}
	}
	nodeMACs(inv, macs)
	maps.Copy(macs, d.state.heldMACs(claimUID))
	return heldIDs{guids: guids, macs: macs}, nil
}

// planDevice turns one resolved device into its record: the NRI view,
// the VF settings and GUID (auto values picked, values held elsewhere
// refused) and which steps apply runs for it. The GUIDs and MACs it takes
// are added to held.
func planDevice(claim *resourceapi.ResourceClaim, rec *ClaimRecord, inv *inventory.Inventory, p *plannedDevice, held heldIDs) (*DeviceRecord, error) {
	r, dev, res := p.alloc, p.dev, p.res
	cfgJSON, err := json.Marshal(res)
	if err != nil {
		return nil, deviceError(claim, r.Request, r.Device, "", err)
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
		dr.Pod.Spec = settings.NetSpec(res, dev.IfName, p.podIfName)
	}
	if fieldName, err := checkUsable(res, &dev, inv.RDMANetnsMode); err != nil {
		return nil, deviceError(claim, r.Request, r.Device, fieldName, err)
	}
	if dev.Kind == inventory.KindVF {
		if fieldName, err := planVFIdentity(dr, rec, inv, &dev, res, held); err != nil {
			return nil, deviceError(claim, r.Request, r.Device, fieldName, err)
		}
		dr.Steps.VFSettings = hasVFSettings(dr.Settings)
		dr.Steps.GUID = dr.GUID != nil
	}
	// The pkey table is the port GUID's: with a GUID change ahead,
	// apply checks the table the port has after it.
	if !dr.Steps.GUID {
		if err := checkPKey(res.PKey, pfOf(inv, &dev), &dev); err != nil {
			return nil, deviceError(claim, r.Request, r.Device, "pkey", err)
		}
	} else if err := checkPKeyLink(res.PKey, &dev); err != nil {
		return nil, deviceError(claim, r.Request, r.Device, "pkey", err)
	}
	dr.Steps.VFIO = res.VFIO() && dev.Driver != v1alpha1.DriverVFIOPCI
	return dr, nil
}

// planVFIdentity sets a VF's settings and GUID in dr: `guid: auto` and
// `mac: auto` are picked here, and a MAC or GUID another claim or device
// holds is refused. It returns the config field to blame.
func planVFIdentity(dr *DeviceRecord, rec *ClaimRecord, inv *inventory.Inventory, dev *inventory.Device, res *v1alpha1.Resolved, held heldIDs) (string, error) {
	dr.Settings = settings.VF(res)
	dr.GUID = settings.GUID(res)
	if res.GUID == v1alpha1.GUIDAuto {
		g, err := pickAutoGUID(res.GUIDPrefix, pfOf(inv, dev), dev, rec.UID, held.guids)
		if err != nil {
			return "guid", err
		}
		dr.GUID = &g
	}
	if res.MAC == v1alpha1.MACAuto {
		m, err := pickAutoMAC(dev, rec.UID, held.macs)
		if err != nil {
			return "mac", err
		}
		dr.Settings.MAC = &m
		if !res.VFIO() {
			dr.Pod.Spec.MAC = m
		}
	}
	if dr.Settings.MAC != nil {
		m := strings.ToLower(*dr.Settings.MAC)
		if holder, ok := held.macs[m]; ok && holder != deviceHolder(dev) {
			return "mac", macInUse(m, holder)
		}
		held.macs[m] = requestHolder(dr.Request)
	}
	if dr.GUID != nil {
		g := strings.ToLower(*dr.GUID)
		if holder, ok := held.guids[g]; ok && holder != deviceHolder(dev) {
			return "guid", fmt.Errorf("GUID %s is held by %s", g, holder)
		}
		held.guids[g] = "claim " + rec.UID
	}
	return "", nil
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

// pfOf returns the PF of a VF from the inventory, or nil.
func pfOf(inv *inventory.Inventory, vf *inventory.Device) *inventory.Device {
	for i := range inv.Devices {
		if d := &inv.Devices[i]; d.Kind == inventory.KindPF && d.PCIAddress == vf.PFPCIAddress {
			return d
		}
	}
	return nil
}

package driver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatav1alpha1 "k8s.io/dynamic-resource-allocation/api/metadata/v1alpha1"
	metadatav1beta1 "k8s.io/dynamic-resource-allocation/api/metadata/v1beta1"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/internal/atomicfile"
	"github.com/sriov-dra/sriov-dra/pkg/claimstatus"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// Device metadata (KEP-5304). With Config.DeviceMetadata the answer to
// kubelet carries, per device, what its containers may read about it; the
// kubelet server (pkg/kubeletserver) writes that as a JSON file (one per claim request,
// metadata.resource.k8s.io objects) and bind-mounts it read-only into every
// container of the claim, through a CDI device of its own it adds to the
// answer. Kubernetes needs no feature gate for it: only CDI, which the
// driver relies on anyway.
//
// The helper's format has two parts per device: typed attributes (the
// ResourceSlice's format) and networkData (the claim status's format).
// Everything a DPDK application or KubeVirt asks for fits into them, so
// the driver needs no file of its own:
//   - networkData: the same interface name, IPs and MAC the claim's
//     status.devices[] gets (deviceStatus, one function for both);
//   - attributes: the device's published ResourceSlice attributes
//     (resource.kubernetes.io/pciBusID, sriov.dra.dev/pciAddress, pfName,
//     vfIndex, numaNode, rdmaDevice, ...), with those the claim changed
//     replaced by what the container gets (ifName, mac, vlan, guid,
//     driver), plus what only a prepared device has: vfio, vfioGroup,
//     vfioDevice and rdmaCharDevices.
//
// The attribute values are those of the device as prepared; Prepare
// computes them, so a container never reads a value the pod does not have.

// Attributes only the device metadata carries (names under
// inventory.AttributeDomain).
const (
	// AttrVFIO is true for a device bound to vfio-pci for the claim.
	AttrVFIO resourceapi.QualifiedName = inventory.AttributeDomain + "/vfio"
	// AttrVFIOGroup is a vfio-pci device's IOMMU group number ("46").
	AttrVFIOGroup resourceapi.QualifiedName = inventory.AttributeDomain + "/vfioGroup"
	// AttrVFIODevice is its group's device node in the container
	// ("/dev/vfio/46"); /dev/vfio/vfio is there too.
	AttrVFIODevice resourceapi.QualifiedName = inventory.AttributeDomain + "/vfioDevice"
	// AttrRDMACharDevices lists the RDMA character devices in the
	// container (/dev/infiniband/uverbs3, ...).
	AttrRDMACharDevices resourceapi.QualifiedName = inventory.AttributeDomain + "/rdmaCharDevices"
)

// MetadataVersions are the device metadata API versions each metadata
// file carries, newest first: v1beta1 (Kubernetes 1.37) and, for readers
// built against Kubernetes 1.36, v1alpha1.
func MetadataVersions() []schema.GroupVersion {
	return []schema.GroupVersion{metadatav1beta1.SchemeGroupVersion, metadatav1alpha1.SchemeGroupVersion}
}

// WriteMetadataFile writes the kubelet server's metadata files and their
// CDI specs (kubeletserver.MetadataConfig.WriteFile): through a temporary file renamed
// over name, so a runtime creating a container meanwhile reads the old or
// the new content, never a part. Unlike the server's default it does not
// fsync: Prepare would wait for two syncs per request, and the files
// need not outlive the node's page cache (the CDI dir is a tmpfs, and
// kubelet prepares a claim again after a reboot, which writes them again).
func WriteMetadataFile(name string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(name, data, atomicfile.Options{TempPattern: "." + filepath.Base(name) + ".*.tmp", Mode: perm, NoSync: true})
}

// maxMetadataAttributes is the metadata API's limit per device.
const maxMetadataAttributes = 32

// deviceNodes are the device nodes a prepared device gives its containers.
type deviceNodes struct {
	// rdmaChar are the RDMA character devices (management ones only when
	// the class allows them).
	rdmaChar []string
	// vfioGroup is the IOMMU group of a vfio-pci device.
	vfioGroup string
}

// deviceNodes asks the host for the device nodes of dev, prepared as dr.
func (d *Driver) deviceNodes(ctx context.Context, dr *DeviceRecord, dev *inventory.Device) (deviceNodes, error) {
	rdmaChar, group, err := d.cfg.Kernel.CDIInfo(ctx, dev, dr.Pod.VFIO)
	if err != nil {
		return deviceNodes{}, err
	}
	if !dr.RDMAManagement {
		// umad sends raw management datagrams to the fabric, issm
		// claims the subnet manager role: the admin's to give.
		rdmaChar = slices.DeleteFunc(rdmaChar, rdma.IsManagementDevice)
	}
	return deviceNodes{rdmaChar: rdmaChar, vfioGroup: group}, nil
}

// withMetadata fills in the device metadata of a prepared claim's result
// (in record order). nodes are the device nodes apply found, by device
// name; a device without an entry (a retried Prepare of a claim prepared
// before) is asked for them again. Metadata is best effort: a device whose
// metadata cannot be made is logged and left without, and its pod still
// starts.
func (d *Driver) withMetadata(ctx context.Context, rec *ClaimRecord, out []kubeletserver.Device, nodes map[string]deviceNodes) {
	if !d.cfg.DeviceMetadata {
		return
	}
	logger := klog.FromContext(ctx)
	for i, dr := range rec.Devices {
		n, ok := nodes[dr.Device]
		if !ok {
			var err error
			if n, err = d.deviceNodes(ctx, dr, publishedOf(dr)); err != nil {
				logger.Error(err, "Device metadata without device nodes", "device", dr.Device)
			}
		}
		var attrs map[resourceapi.QualifiedName]resourceapi.DeviceAttribute
		if dr.Published != nil && d.cfg.Attributes != nil {
			attrs = d.cfg.Attributes(*dr.Published)
		}
		md, err := deviceMetadata(dr, attrs, n, d.podMAC(dr))
		if err != nil {
			logger.Error(err, "No device metadata for the device; its containers will not find it", "device", dr.Device)
			continue
		}
		out[i].Metadata = md
	}
}

// publishedOf is the device as it was published, or what the record
// knows of it.
func publishedOf(dr *DeviceRecord) *inventory.Device {
	if dr.Published != nil {
		return dr.Published
	}
	return &inventory.Device{Name: dr.Device, PCIAddress: dr.PCIAddress, Kind: dr.Kind}
}

// podMAC is the MAC of the device's netdev as the pod gets it when no
// MAC is configured: the one recorded at attach, else the netdev's MAC on
// the host now (after the GUID step: an IPoIB address changes with the
// GUID), else the snapshot's. deviceStatus prefers a configured MAC.
func (d *Driver) podMAC(dr *DeviceRecord) string {
	if dr.Pod.VFIO {
		return ""
	}
	if dr.Pod.Original != nil {
		return dr.Pod.Original.MAC
	}
	if h, name := d.cfg.Netlink, dr.Pod.Spec.HostIfName; h != nil && name != "" && dr.Pod.NetnsPath == "" {
		if l, err := h.LinkByName(name); err == nil {
			if mac := l.Attrs().HardwareAddr; len(mac) > 0 {
				return mac.String()
			}
		}
	}
	return dr.Snapshot.MAC
}

// deviceMetadata is what a claim's containers read about one prepared
// device: attrs (its published attributes) overlaid with the claim's view
// of it, and the claim status's networkData. mac is the netdev's MAC when
// no MAC is configured (podMAC). It errs, naming the device and field,
// when a value does not fit the metadata API.
func deviceMetadata(dr *DeviceRecord, attrs map[resourceapi.QualifiedName]resourceapi.DeviceAttribute, nodes deviceNodes, mac string) (*kubeletserver.DeviceMetadata, error) {
	st := deviceStatus(dr)
	if st.HardwareAddress == "" {
		st.HardwareAddress = strings.ToLower(mac)
	}
	nd, err := claimstatus.NetworkData(st)
	if err != nil {
		return nil, fmt.Errorf("device metadata: %w", err)
	}
	m := make(map[string]resourceapi.DeviceAttribute, len(attrs)+4)
	for k, v := range attrs {
		m[string(k)] = v
	}
	set := func(k resourceapi.QualifiedName, v string) {
		if v == "" {
			delete(m, string(k))
			return
		}
		m[string(k)] = resourceapi.DeviceAttribute{StringValue: &v}
	}
	// The published ifName and mac are the host's; in the container the
	// netdev has its pod name and the MAC the claim status reports.
	set(inventory.AttrIfName, st.InterfaceName)
	set(inventory.AttrMAC, st.HardwareAddress)
	if v := dr.Settings.VLAN; v != nil {
		if *v > 0 {
			n := int64(*v)
			m[string(inventory.AttrVLAN)] = resourceapi.DeviceAttribute{IntValue: &n}
		} else {
			delete(m, string(inventory.AttrVLAN))
		}
	}
	if g := dr.GUID; g != nil {
		set(inventory.AttrGUID, *g)
	}
	vfio := dr.Pod.VFIO
	if vfio {
		set(inventory.AttrDriver, v1alpha1.DriverVFIOPCI)
	}
	m[string(AttrVFIO)] = resourceapi.DeviceAttribute{BoolValue: &vfio}
	if nodes.vfioGroup != "" {
		set(AttrVFIOGroup, nodes.vfioGroup)
		set(AttrVFIODevice, "/dev/vfio/"+nodes.vfioGroup)
	}
	if len(nodes.rdmaChar) > 0 {
		m[string(AttrRDMACharDevices)] = resourceapi.DeviceAttribute{StringValues: slices.Clone(nodes.rdmaChar)}
	}
	if err := checkMetadataAttributes(dr.Device, m); err != nil {
		return nil, err
	}
	return &kubeletserver.DeviceMetadata{Attributes: m, NetworkData: nd}, nil
}

// checkMetadataAttributes refuses what the metadata API's validation
// would: more than 32 attributes, a string longer than 64 bytes.
func checkMetadataAttributes(device string, m map[string]resourceapi.DeviceAttribute) error {
	if len(m) > maxMetadataAttributes {
		return fmt.Errorf("device %s: device metadata: %d attributes, the API allows %d", device, len(m), maxMetadataAttributes)
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		a := m[k]
		vals := a.StringValues
		if a.StringValue != nil {
			vals = []string{*a.StringValue}
		}
		for _, v := range vals {
			if len(v) > resourceapi.DeviceAttributeMaxValueLength {
				errs = append(errs, fmt.Errorf("device %s: device metadata attribute %s: value %q is longer than %d bytes", device, k, v, resourceapi.DeviceAttributeMaxValueLength))
			}
		}
	}
	return errors.Join(errs...)
}

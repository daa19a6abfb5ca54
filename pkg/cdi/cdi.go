// Package cdi writes and removes the per-claim Container Device Interface
// (CDI) spec files through which the container runtime gives a pod's
// containers its SR-IOV devices' character devices and environment.
//
// Naming: every spec has kind "sriov.dra.dev/vf" (Vendor/Class) — one class
// for VFs and whole PFs alike, since what the runtime injects (device nodes
// and env vars) does not depend on the kind. A claim's spec is the file
// "sriov.dra.dev-vf_<claim UID>.json" in the CDI dir, and each prepared
// device is the CDI device "<claim UID>-<device name>", so the fully
// qualified ID is "sriov.dra.dev/vf=<claim UID>-<device name>". Device names
// are unique across claims, as CDI requires for one kind.
//
// Each CDI device carries:
//   - device nodes: the RDMA character devices given (/dev/infiniband/...),
//     and for a vfio-pci device /dev/vfio/<group> and /dev/vfio/vfio. Only
//     the path is written: the runtime fills type, major and minor from the
//     host path when it creates the container (CDI allows that), so a
//     renumbered node is picked up. Write checks the nodes exist now, under
//     the host root, so a missing one fails Prepare, not the container.
//   - environment variables naming the device, with the request name
//     upper-cased and every character outside [A-Z0-9] replaced by "_":
//     SRIOV_DRA_<REQUEST>_PCI_ADDRESS, _DEVICE, _IFNAME (netdev mode),
//     _RDMA_DEVICE (when the device has one), _VFIO_GROUP (vfio mode).
//     When one request has several devices in the claim, the prefix gets
//     the device's position: SRIOV_DRA_<REQUEST>_<i>_..., i from 0, in
//     allocation order. Set Device.EnvName to choose another name.
//   - for a device with a ResourceName (the extended resource name a pod
//     asked for in resources.limits), the SR-IOV device plugin's variable
//     PCIDEVICE_<RESOURCE>: the name upper-cased with every character outside
//     [A-Z0-9] replaced by "_", the value the comma-separated PCI addresses
//     of all the claim's devices with that ResourceName, in allocation order.
//     Every such device carries the whole list, so the container sees it
//     whichever devices the runtime applies last.
//   - mounts given in Device.Mounts (bind mounts; the driver uses one per
//     netdevice-mode device for its "attached" marker, see pkg/attachmark).
//     Their host paths are not checked: the marker is meant to be missing
//     until the device is attached.
package cdi

// This file holds the Writer: it puts a claim's spec into the CDI dir
// atomically, removes it, and lists the claims whose specs are there.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/klog/v2"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/sriov-dra/sriov-dra/internal/atomicfile"
)

const (
	// Vendor and Class make the CDI kind of every spec this package writes.
	Vendor = "sriov.dra.dev"
	Class  = "vf"
	// Kind is Vendor/Class.
	Kind = Vendor + "/" + Class
	// DefaultDir is where specs are written by default.
	DefaultDir = "/var/run/cdi"
	// EnvPrefix starts every environment variable.
	EnvPrefix = "SRIOV_DRA_"

	specMode = 0o644
)

// Device is one prepared device of a claim.
type Device struct {
	// Request is the claim request the device was allocated for
	// ("req" or "req/subrequest"); it names the env vars.
	Request string
	// Name is the ResourceSlice device name.
	Name       string
	PCIAddress string
	// IfName is the netdev's name in the pod; "" for vfio-pci devices.
	IfName string
	// RDMADevice is the RDMA device name (mlx5_3); "" when none.
	RDMADevice string
	// RDMACharDevices are host paths of the RDMA character devices to give
	// the container (/dev/infiniband/uverbs3, /dev/infiniband/rdma_cm, ...).
	RDMACharDevices []string
	// VFIOGroup is the IOMMU group number of a vfio-pci device; it adds
	// /dev/vfio/<group> and /dev/vfio/vfio.
	VFIOGroup string
	// EnvName replaces the request-derived part of the env var names.
	EnvName string
	// ResourceName is the extended resource name the device was requested
	// through (intel.com/sriov_netdevice); it adds PCIDEVICE_<RESOURCE>.
	// "" when the claim is not an extended-resource claim.
	ResourceName string
	// Mounts are bind mounts into the container.
	Mounts []Mount
}

// Mount is a bind mount of a host file or dir into the container.
type Mount struct {
	// HostPath is the source as the container runtime sees it.
	HostPath string
	// ContainerPath is where it appears in the container.
	ContainerPath string
	// Options are the mount options ("bind", "ro", ...).
	Options []string
}

// Writer writes specs into one CDI dir.
type Writer struct {
	dir  string
	root string
}

// New returns a Writer for dir ("" is DefaultDir). Device nodes are
// checked under root ("" is "/").
func New(dir, root string) *Writer {
	if dir == "" {
		dir = DefaultDir
	}
	if root == "" {
		root = "/"
	}
	return &Writer{dir: dir, root: root}
}

// Dir is the CDI spec dir.
func (w *Writer) Dir() string { return w.dir }

// DeviceID is the fully qualified CDI device ID of a claim's device.
func DeviceID(claimUID, device string) string {
	return parser.QualifiedName(Vendor, Class, cdiName(claimUID, device))
}

func cdiName(claimUID, device string) string { return claimUID + "-" + device }

// SpecPath is the file holding a claim's spec.
func (w *Writer) SpecPath(claimUID string) string {
	return filepath.Join(w.dir, cdiapi.GenerateTransientSpecName(Vendor, Class, claimUID)+".json")
}

// Write creates or replaces the claim's spec with one CDI device per entry
// of devs and returns their fully qualified IDs, in the order of devs. The
// file appears complete or not at all (temp file, fsync, rename). Bad
// input is an error naming the device and field, and leaves the dir as it
// was.
func (w *Writer) Write(ctx context.Context, claimUID string, devs []Device) ([]string, error) {
	if err := parser.ValidateDeviceName(claimUID); err != nil || claimUID == "" {
		return nil, fmt.Errorf("CDI spec for claim %q: claim UID: not usable in a CDI device name: %w", claimUID, err)
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("CDI spec for claim %s: no devices", claimUID)
	}
	spec, err := w.build(claimUID, devs)
	if err != nil {
		return nil, fmt.Errorf("CDI spec for claim %s: %w", claimUID, err)
	}
	if err := w.writeAtomic(w.SpecPath(claimUID), spec); err != nil {
		return nil, fmt.Errorf("CDI spec for claim %s: %w", claimUID, err)
	}
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = DeviceID(claimUID, d.Name)
	}
	klog.FromContext(ctx).V(2).Info("Wrote CDI spec", "claim", claimUID, "path", w.SpecPath(claimUID), "devices", ids)
	return ids, nil
}

// Remove deletes the claim's spec. Removing a spec that is not there is
// not an error.
func (w *Writer) Remove(ctx context.Context, claimUID string) error {
	p := w.SpecPath(claimUID)
	err := os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove CDI spec of claim %s: %w", claimUID, err)
	}
	klog.FromContext(ctx).V(2).Info("Removed CDI spec", "claim", claimUID, "path", p)
	return syncDir(w.dir)
}

// Claims lists the claim UIDs whose spec this package wrote into the dir,
// so specs without a claim can be found after a restart. A file counts
// only when everything says it is one of ours: a regular file named
// <vendor>-<class>_<claim UID>.json, holding a CDI spec of kind Kind
// whose every device is named "<claim UID>-<device>". Anything else in
// the dir (other vendors' specs, temp files, files that do not parse) is
// not listed, so a caller removing what is listed never touches it.
func (w *Writer) Claims() ([]string, error) {
	prefix := cdiapi.GenerateTransientSpecName(Vendor, Class, "")
	ents, err := os.ReadDir(w.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list CDI specs: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, ".json") {
			continue
		}
		uid := strings.TrimSuffix(strings.TrimPrefix(n, prefix), ".json")
		if ours(filepath.Join(w.dir, n), uid) {
			out = append(out, uid)
		}
	}
	sort.Strings(out)
	return out, nil
}

// ours tells whether the file at p is a spec Write made for claimUID.
func ours(p, claimUID string) bool {
	if claimUID == "" || parser.ValidateDeviceName(claimUID) != nil {
		return false
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	var spec cdispec.Spec
	if err := json.Unmarshal(b, &spec); err != nil || spec.Kind != Kind || len(spec.Devices) == 0 {
		return false
	}
	for _, d := range spec.Devices {
		if !strings.HasPrefix(d.Name, claimUID+"-") || len(d.Name) == len(claimUID)+1 {
			return false
		}
	}
	return true
}

// writeAtomic writes spec to path with atomicfile.Write: temp file (mode
// 0644) in the same dir, fsync, validate by reading it back with the CDI
// library, rename, fsync the dir. The temp name does not end in .json, so runtimes scanning the
// dir never read a partial spec.
func (w *Writer) writeAtomic(path string, spec *cdispec.Spec) (err error) {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return fmt.Errorf("create CDI dir: %w", err)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	err = atomicfile.Write(path, data, atomicfile.Options{
		TempPattern: "." + filepath.Base(path) + ".tmp-*",
		Mode:        specMode,
		// Validate exactly the bytes runtimes will read.
		Check: func(tmp string) error { _, err := cdiapi.ReadSpec(tmp, 0); return err },
	})
	return atomicfile.Explain(err, "CDI spec", "CDI dir")
}

func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("fsync CDI dir %s: %w", dir, err)
	}
	return nil
}

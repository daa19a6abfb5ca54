package cdi

// This file builds a claim's CDI spec from its devices: the device nodes,
// mounts and environment variables each CDI device carries.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"tags.cncf.io/container-device-interface/pkg/parser"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

func (w *Writer) build(claimUID string, devs []Device) (*cdispec.Spec, error) {
	perRequest := map[string]int{}
	perResource := map[string][]string{}
	for _, d := range devs {
		perRequest[envBase(d)]++
		if d.ResourceName != "" {
			perResource[d.ResourceName] = append(perResource[d.ResourceName], d.PCIAddress)
		}
	}
	index := map[string]int{}
	seen := map[string]bool{}
	spec := &cdispec.Spec{Kind: Kind}
	for _, d := range devs {
		name := cdiName(claimUID, d.Name)
		if d.Name == "" {
			return nil, errors.New("device with an empty name")
		}
		if err := parser.ValidateDeviceName(name); err != nil {
			return nil, fmt.Errorf("device %q: name: %w", d.Name, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("device %q: listed twice", d.Name)
		}
		seen[name] = true
		base := envBase(d)
		if base == "" {
			return nil, fmt.Errorf("device %q: request: empty (needed for env var names)", d.Name)
		}
		prefix := EnvPrefix + base + "_"
		if perRequest[base] > 1 {
			prefix += strconv.Itoa(index[base]) + "_"
			index[base]++
		}
		edits, err := w.edits(d, prefix)
		if err != nil {
			return nil, fmt.Errorf("device %q: %w", d.Name, err)
		}
		if d.ResourceName != "" {
			if d.PCIAddress == "" {
				return nil, fmt.Errorf("device %q: resourceName %q: no PCI address for %s", d.Name, d.ResourceName, DevicePluginEnv(d.ResourceName))
			}
			if strings.ContainsAny(d.ResourceName, "\x00\n=") {
				return nil, fmt.Errorf("device %q: resourceName %q: contains NUL, newline or '='", d.Name, d.ResourceName)
			}
			edits.Env = append(edits.Env, DevicePluginEnv(d.ResourceName)+"="+strings.Join(perResource[d.ResourceName], ","))
		}
		spec.Devices = append(spec.Devices, cdispec.Device{Name: name, ContainerEdits: edits})
	}
	v, err := cdispec.MinimumRequiredVersion(spec)
	if err != nil {
		return nil, fmt.Errorf("CDI version: %w", err)
	}
	spec.Version = v
	return spec, nil
}

func (w *Writer) edits(d Device, prefix string) (cdispec.ContainerEdits, error) {
	var e cdispec.ContainerEdits
	env := func(k, v string) {
		if v != "" {
			e.Env = append(e.Env, prefix+k+"="+v)
		}
	}
	for field, v := range map[string]string{"pciAddress": d.PCIAddress, "ifName": d.IfName, "rdmaDevice": d.RDMADevice, "vfioGroup": d.VFIOGroup} {
		if strings.ContainsAny(v, "\x00\n=") {
			return e, fmt.Errorf("%s %q: contains NUL, newline or '='", field, v)
		}
	}
	env("DEVICE", d.Name)
	env("PCI_ADDRESS", d.PCIAddress)
	env("IFNAME", d.IfName)
	env("RDMA_DEVICE", d.RDMADevice)
	env("VFIO_GROUP", d.VFIOGroup)

	var nodes []string
	for _, p := range d.RDMACharDevices {
		if !strings.HasPrefix(p, "/dev/") || filepath.Clean(p) != p {
			return e, fmt.Errorf("rdmaCharDevices: %q is not a clean path under /dev", p)
		}
		nodes = append(nodes, p)
	}
	if d.VFIOGroup != "" {
		if _, err := strconv.ParseUint(d.VFIOGroup, 10, 32); err != nil {
			return e, fmt.Errorf("vfioGroup %q: not an IOMMU group number", d.VFIOGroup)
		}
		nodes = append(nodes, "/dev/vfio/"+d.VFIOGroup, "/dev/vfio/vfio")
	}
	for _, p := range nodes {
		fi, err := os.Stat(filepath.Join(w.root, p))
		if err != nil {
			return e, fmt.Errorf("device node %s: %w", p, err)
		}
		if fi.Mode()&fs.ModeCharDevice == 0 {
			return e, fmt.Errorf("device node %s: not a character device (mode %v)", p, fi.Mode())
		}
		e.DeviceNodes = append(e.DeviceNodes, &cdispec.DeviceNode{Path: p, Permissions: "rw"})
	}
	for i, m := range d.Mounts {
		for field, p := range map[string]string{"hostPath": m.HostPath, "containerPath": m.ContainerPath} {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				return e, fmt.Errorf("mounts[%d].%s: %q is not a clean absolute path", i, field, p)
			}
		}
		e.Mounts = append(e.Mounts, &cdispec.Mount{
			HostPath: m.HostPath, ContainerPath: m.ContainerPath,
			Type: "bind", Options: append([]string(nil), m.Options...),
		})
	}
	return e, nil
}

// envBase is the request-derived part of a device's env var names.
func envBase(d Device) string {
	n := d.EnvName
	if n == "" {
		n = d.Request
	}
	return SanitizeEnv(n)
}

// SanitizeEnv upper-cases s and replaces every character outside [A-Z0-9]
// by "_".
func SanitizeEnv(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// DevicePluginEnvPrefix starts the device plugin's variable.
const DevicePluginEnvPrefix = "PCIDEVICE_"

// DevicePluginEnv is the SR-IOV device plugin's variable name for an
// extended resource name: PCIDEVICE_ and the name upper-cased with every
// character outside [A-Z0-9] replaced by "_".
func DevicePluginEnv(resourceName string) string {
	return DevicePluginEnvPrefix + SanitizeEnv(resourceName)
}

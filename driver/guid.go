package driver

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"strings"

	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// AutoGUID is the GUID `guid: auto` gives an InfiniBand VF for one claim.
//
// Scheme: a prefix, then bytes of SHA-256(claim UID, device, attempt) to
// fill 8 bytes. The prefix is the class's policy.guidPrefix, or else the
// PF port GUID's vendor OUI (its first 3 bytes) with the "locally
// administered" bit set:
//
//	PF port GUID  98:03:9b:03:00:9f:cc:12, claim c1, VF 0000:3b:00.4
//	VF GUID       9a:03:9b:<5 bytes of SHA-256("c1/0000:3b:00.4/0")>
//
// Properties:
//   - Per claim, not per VF: the next claim of the same VF gets another
//     GUID, so a tenant never inherits the previous tenant's identity
//     on the fabric (GUIDs are what SM policy, pkey membership and peers'
//     caches key on).
//   - Stable for the claim: a retried or restarted Prepare computes the
//     same value (the record keeps it too).
//   - Unique on the node: pickAutoGUID moves to the next attempt while the
//     GUID is held by another claim or carried by a device here.
//   - Apart from vendor GUIDs: the locally administered bit (default
//     prefix), or the admin's prefix, which the admin keeps apart.
//
// A PF without a port GUID (Ethernet, or a driver that does not report
// it) needs a class guidPrefix for `guid: auto`.
func AutoGUID(prefix string, pf, vf *inventory.Device, claimUID string, attempt int) (string, error) {
	if vf.Kind != inventory.KindVF {
		return "", fmt.Errorf("guid auto: device %s is a %s, not a VF", vf.Name, vf.Kind)
	}
	var head net.HardwareAddr
	if prefix != "" {
		p, err := v1alpha1.ParseGUIDPrefix(prefix)
		if err != nil {
			return "", fmt.Errorf("guid auto: class guidPrefix: %w", err)
		}
		g, err := hw.ParseGUID(padGUID(p))
		if err != nil {
			return "", fmt.Errorf("guid auto: class guidPrefix %q: %w", p, err)
		}
		head = g.HardwareAddr()[:len(strings.Split(p, ":"))]
	} else {
		if pf == nil || pf.Kind != inventory.KindPF || pf.PCIAddress != vf.PFPCIAddress {
			return "", fmt.Errorf("guid auto: PF %s of %s is not in the inventory", vf.PFPCIAddress, vf.Name)
		}
		base, err := parseGUID(pf.PortGUID)
		if err != nil {
			return "", fmt.Errorf("guid auto: PF %s of %s has no usable port GUID (set policy.guidPrefix in the DeviceClass): %w", vf.PFPCIAddress, vf.Name, err)
		}
		head = net.HardwareAddr{base[0] | 0x02, base[1], base[2]}
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d", claimUID, vf.Name, attempt))
	g := append(append(net.HardwareAddr{}, head...), sum[:8-len(head)]...)
	return g.String(), nil
}

// padGUID makes a prefix parseable as 8 bytes.
func padGUID(p string) string {
	n := len(strings.Split(p, ":"))
	return p + strings.Repeat(":00", 8-n)
}

// maxAutoGUIDAttempts bounds the search for a free auto GUID. With 5 or
// more hashed bytes a collision is already rare; a prefix of 7 bytes
// leaves 256 values, and then the node may really be full.
const maxAutoGUIDAttempts = 64

// pickAutoGUID returns the first AutoGUID that is a valid GUID and not
// in held (GUID -> holder).
func pickAutoGUID(prefix string, pf, vf *inventory.Device, claimUID string, held map[string]string) (string, error) {
	g, ok, err := pickFree(maxAutoGUIDAttempts, vf, held, func(attempt int) (string, bool, error) {
		g, err := AutoGUID(prefix, pf, vf, claimUID, attempt)
		if err != nil {
			return "", false, err
		}
		_, err = v1alpha1.ParseGUID(g) // all zero or all ones: try the next
		return g, err == nil, nil
	})
	if err != nil || ok {
		return g, err
	}
	return "", fmt.Errorf("guid auto: no free GUID for %s with prefix %q after %d tries: the prefix leaves too few values for the GUIDs held on this node", vf.Name, prefix, maxAutoGUIDAttempts)
}

// pickFree is the search behind the auto values (GUIDs, MACs): candidate gives
// the candidate of each attempt (and whether it is usable at all); the
// first usable one that held (value -> holder) does not give to another
// holder than the device itself is taken. ok is false when every attempt
// was taken.
func pickFree(attempts int, dev *inventory.Device, held map[string]string, candidate func(attempt int) (string, bool, error)) (string, bool, error) {
	for attempt := range attempts {
		v, usable, err := candidate(attempt)
		if err != nil {
			return "", false, err
		}
		if !usable {
			continue
		}
		if holder, taken := held[v]; !taken || holder == deviceHolder(dev) {
			return v, true, nil
		}
	}
	return "", false, nil
}

// firstWithGUID is the index of the first device configured with a guid
// (auto included), -1 for none.
func firstWithGUID(planned []*plannedDevice) int {
	for i, p := range planned {
		if p.res.GUID != "" {
			return i
		}
	}
	return -1
}

// hostRDMAGUIDs maps the node and port GUIDs of every RDMA device of the
// host to their holder: the RDMA devices of a device in the inventory to
// that device (deviceHolder: a VF keeps its own GUID), any other (another
// HCA, a PF that is no SR-IOV device of ours, a software RDMA device) to
// itself, "InfiniBand device mlx5_3 port 1". The inventory alone has
// only the GUIDs of its own PFs and VFs.
func hostRDMAGUIDs(ctx context.Context, k Kernel, inv *inventory.Inventory, into map[string]string) error {
	uses, err := k.RDMAGUIDs(ctx)
	if err != nil {
		return fmt.Errorf("read the GUIDs of the node's RDMA devices to check the GUID against them: %w", err)
	}
	owner := map[string]*inventory.Device{}
	for i := range inv.Devices {
		for _, r := range inv.Devices[i].RDMADevices {
			owner[r] = &inv.Devices[i]
		}
	}
	for _, u := range uses {
		holder := u.Holder()
		if dev := owner[u.Device]; dev != nil {
			holder = deviceHolder(dev)
		}
		into[u.GUID.String()] = holder
	}
	klog.FromContext(ctx).V(5).Info("Read the GUIDs of the node's RDMA devices", "guids", len(uses))
	return nil
}

// deviceHolderPrefix starts the name of a device as a holder.
const deviceHolderPrefix = "device "

// deviceHolder names a device as the holder of a GUID or MAC it carries.
func deviceHolder(dev *inventory.Device) string { return deviceHolderPrefix + dev.Name }

// parseGUID parses a GUID that must be assignable (not all zeros or ones).
func parseGUID(s string) (hw.GUID, error) {
	g, err := hw.ParseGUID(s)
	if err != nil {
		return hw.GUID{}, err
	}
	return g, g.CheckAssignable()
}

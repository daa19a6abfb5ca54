package driver

import (
	"fmt"
	"net"
	"strings"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// AutoGUID is the GUID `guid: auto` gives an InfiniBand VF.
//
// Scheme: start from the PF's port GUID, an EUI-64 the vendor assigned
// and so unique on the fabric. Vendors derive it from a 48-bit MAC-style
// number (3 bytes OUI, 3 bytes serial) with two filler bytes in the middle
// (bytes 3 and 4, e.g. "03:00" or "ff:fe"). The VF GUID keeps the OUI and
// the serial, drops the filler, sets the "locally administered" bit of the
// first byte, and ends with the VF index plus one:
//
//	PF port GUID  98:03:9b:03:00:9f:cc:12, VF 4
//	VF GUID       9a:03:9b:9f:cc:12:00:05
//
// Properties:
//   - Deterministic: the same PF and VF index give the same GUID, so a
//     retried or restarted Prepare sets the same value, and the GUID is
//     stable for the claim's lifetime.
//   - Unique on the fabric: the locally administered bit keeps it apart
//     from every vendor-assigned GUID, and two VFs share it only if their
//     PFs share OUI and serial (vendor GUIDs never do) and their index.
//   - Never handed out while held: Prepare refuses a GUID that another
//     claim on this node set or that a device on this node carries.
//
// A PF without a port GUID (Ethernet, or a driver that does not report
// it) cannot use `guid: auto`.
func AutoGUID(pf, vf *inventory.Device) (string, error) {
	if vf.Kind != inventory.KindVF {
		return "", fmt.Errorf("guid auto: device %s is a %s, not a VF", vf.Name, vf.Kind)
	}
	if vf.VFIndex < 0 || vf.VFIndex > 0xfffe {
		return "", fmt.Errorf("guid auto: VF index %d of %s out of range", vf.VFIndex, vf.Name)
	}
	if pf == nil || pf.Kind != inventory.KindPF || pf.PCIAddress != vf.PFPCIAddress {
		return "", fmt.Errorf("guid auto: PF %s of %s is not in the inventory", vf.PFPCIAddress, vf.Name)
	}
	base, err := parseGUID(pf.PortGUID)
	if err != nil {
		return "", fmt.Errorf("guid auto: PF %s of %s has no usable port GUID: %w", vf.PFPCIAddress, vf.Name, err)
	}
	n := vf.VFIndex + 1
	g := net.HardwareAddr{base[0] | 0x02, base[1], base[2], base[5], base[6], base[7], byte(n >> 8), byte(n)}
	return g.String(), nil
}

func parseGUID(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, fmt.Errorf("empty GUID")
	}
	hw, err := net.ParseMAC(strings.TrimSpace(s))
	if err != nil {
		return nil, err
	}
	if len(hw) != 8 {
		return nil, fmt.Errorf("GUID %q is not 8 bytes", s)
	}
	zero := true
	for _, b := range hw {
		if b != 0 {
			zero = false
		}
	}
	if zero {
		return nil, fmt.Errorf("GUID %q is all zero", s)
	}
	return hw, nil
}

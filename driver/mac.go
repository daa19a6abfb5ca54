package driver

import (
	"crypto/sha256"
	"fmt"
	"net"
	"strings"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// AutoMAC is the MAC `mac: auto` gives a VF for one claim.
//
// Scheme: the first 6 bytes of SHA-256("mac/<claim UID>/<device>/<attempt>"),
// with the first byte's two low bits set to 10: unicast (bit 0 clear) and
// locally administered (bit 1 set), so it never collides with a vendor's
// burned-in address:
//
//	claim UID c1, VF pci-0000-5e-00-3, attempt 0
//	SHA-256("mac/c1/pci-0000-5e-00-3/0") = 94 af 18 d9 0b 5b ...
//	MAC 96:af:18:d9:0b:5b   (0x94 -> 0x96: bit 1 set, bit 0 clear)
//
// Properties:
//   - Per claim and device: every replica of a ResourceClaimTemplate gets
//     its own claim and so its own MAC, and the next claim of the same VF
//     gets another one (no tenant inherits the previous one's address in
//     switch tables and neighbours' caches).
//   - Stable for the claim: a retried or restarted Prepare computes the
//     same value (the record keeps it too).
//   - Unique on the node: pickAutoMAC moves to the next attempt while the
//     MAC is held by another claim or carried by a device here.
//
// 46 hashed bits leave collisions between nodes of one L2 segment to
// chance (about 1 in 10^10 per pair of claims); a network that must rule
// them out gives each claim an explicit mac.
func AutoMAC(claimUID, device string, attempt int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "mac/%s/%s/%d", claimUID, device, attempt))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x03 | 0x02
	return mac.String()
}

// maxAutoMACAttempts bounds the search for a free auto MAC; with 46
// random bits the second attempt is already a rarity.
const maxAutoMACAttempts = 16

// pickAutoMAC returns the first AutoMAC not in held (MAC -> holder).
func pickAutoMAC(vf *inventory.Device, claimUID string, held map[string]string) (string, error) {
	m, ok, err := pickFree(maxAutoMACAttempts, vf, held, func(attempt int) (string, bool, error) {
		return AutoMAC(claimUID, vf.Name, attempt), true, nil
	})
	if err != nil || ok {
		return m, err
	}
	return "", fmt.Errorf("mac auto: no free MAC for %s after %d tries", vf.Name, maxAutoMACAttempts)
}

// hostLinkMACs maps the MAC of every link in the host netns (a management
// NIC, a bond or bridge, a pod's veth end) to "host link <name>", so that a
// claim's mac cannot take one the node itself uses on the wire. nodeMACs
// runs after it: a VF's own netdev stays the VF's.
func hostLinkMACs(h nlink.Handle, into map[string]string) error {
	if h == nil {
		return nil
	}
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("list the host's links to check the MAC against them: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if len(a.HardwareAddr) == 6 && !allZero(a.HardwareAddr) {
			into[a.HardwareAddr.String()] = hostLinkHolderPrefix + a.Name
		}
	}
	return nil
}

// Holders of a MAC besides another claim ("claim <ns>/<name> (<uid>)") and
// a device of the inventory (deviceHolder).
const (
	hostLinkHolderPrefix = "host link "
	requestHolderPrefix  = "request "
)

// requestHolder names a request of the claim being prepared as the
// holder of the MAC one of its devices takes.
func requestHolder(request string) string {
	return fmt.Sprintf("%s%q of this claim", requestHolderPrefix, request)
}

// macInUse refuses MAC m, which holder has: what breaks and what to do
// depend on who the holder is.
func macInUse(m, holder string) error {
	var why string
	switch {
	case strings.HasPrefix(holder, hostLinkHolderPrefix):
		why = "a VF with the MAC of a link the node itself uses breaks forwarding for both (switches and neighbours see one address in two places); give the claim a mac no host link carries, or mac: auto"
	case strings.HasPrefix(holder, deviceHolderPrefix):
		why = "a VF with the MAC another device of this node carries breaks forwarding for both; give the claim a mac of its own, or mac: auto"
	case strings.HasPrefix(holder, requestHolderPrefix):
		why = "two VFs with one MAC break forwarding for both; give each request its own mac, or mac: auto"
	default: // another claim
		why = "two VFs with one MAC break forwarding for both; give each claim its own mac, or mac: auto (a ResourceClaimTemplate with a mac gives every replica the same one)"
	}
	return fmt.Errorf("MAC %s is already in use on this node by %s: %s", m, holder, why)
}

// firstWithMAC is the index of the first device configured with a mac
// (auto included), -1 for none.
func firstWithMAC(planned []*plannedDevice) int {
	for i, p := range planned {
		if p.res.MAC != "" {
			return i
		}
	}
	return -1
}

// nodeMACs maps the MACs the node's devices carry (netdev and VF admin
// MACs; unset, all-zero and non-Ethernet addresses left out) to
// "device <name>".
func nodeMACs(inv *inventory.Inventory, into map[string]string) {
	add := func(s string, dev *inventory.Device) {
		hw, err := net.ParseMAC(s)
		if err != nil || len(hw) != 6 || allZero(hw) {
			return
		}
		into[hw.String()] = deviceHolder(dev)
	}
	for i := range inv.Devices {
		dev := &inv.Devices[i]
		add(dev.MAC, dev)
		if dev.Admin != nil {
			add(dev.Admin.MAC, dev)
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Package hw is the hardware vocabulary the inventory, the VF
// configuration, the API and the driver share: InfiniBand GUIDs and
// partition keys, VF VLAN protocols and link states, and the limits of VF
// settings. Each has one parser and one formatter, here; nothing else
// parses them.
package hw

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink/nl"
)

// VF setting limits, as the kernel and 802.1Q define them.
const (
	// MaxVLAN is the largest VLAN ID a VF can be given: 4095 is reserved
	// by 802.1Q, 0 means no VLAN.
	MaxVLAN = 4094
	// MaxVLANQoS is the largest 802.1p priority.
	MaxVLANQoS = 7
)

// GUID is an InfiniBand GUID (an EUI-64).
type GUID [8]byte

// ParseGUID parses a GUID written as 8 bytes in any form net.ParseMAC
// takes ("0c:42:a1:03:00:ab:cd:00", "-" separated, "0c42.a103.00ab.cd00")
// or as sysfs prints one ("0c42:a103:00ab:cd00"). It does not judge the
// value: see CheckAssignable.
func ParseGUID(s string) (GUID, error) {
	s = strings.TrimSpace(s)
	if parts := strings.Split(s, ":"); len(parts) == 4 {
		return guidFromGroups(parts, s)
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 8 {
		return GUID{}, fmt.Errorf("not a GUID (8 bytes, like 0c:42:a1:03:00:ab:cd:00): %q", clip(s))
	}
	g, _ := GUIDFromBytes(hw)
	return g, nil
}

// GUIDFromGID returns the interface ID (the low 64 bits) of a GID as sysfs
// prints it ("fe80:0000:0000:0000:0c42:a103:00ab:cd00"): the port GUID.
func GUIDFromGID(s string) (GUID, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ":")
	if len(parts) != 8 {
		return GUID{}, fmt.Errorf("not a GID (8 groups of 4 hex digits): %q", clip(s))
	}
	return guidFromGroups(parts[4:], s)
}

func guidFromGroups(groups []string, orig string) (GUID, error) {
	var g GUID
	for i, grp := range groups {
		if len(grp) != 4 {
			return GUID{}, fmt.Errorf("GUID group %d is not 4 hex digits: %q", i, clip(orig))
		}
		v, err := strconv.ParseUint(grp, 16, 16)
		if err != nil {
			return GUID{}, fmt.Errorf("GUID group %d is not hex: %q", i, clip(orig))
		}
		g[2*i], g[2*i+1] = byte(v>>8), byte(v)
	}
	return g, nil
}

// GUIDFromBytes is the GUID in b, which must be 8 bytes long (what
// netlink carries); ok is false otherwise.
func GUIDFromBytes(b []byte) (g GUID, ok bool) {
	if len(b) != len(g) {
		return GUID{}, false
	}
	copy(g[:], b)
	return g, true
}

// String formats the GUID as lower-case colon-separated bytes.
func (g GUID) String() string { return net.HardwareAddr(g[:]).String() }

// HardwareAddr is the GUID as netlink takes it.
func (g GUID) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(g[:]) }

// IsZero reports whether the GUID is all zeros: unset.
func (g GUID) IsZero() bool { return g == GUID{} }

// CheckAssignable refuses the values the kernel and the subnet manager
// read as "no GUID": all zeros and all ones.
func (g GUID) CheckAssignable() error {
	switch g {
	case GUID{}:
		return errors.New("the all-zero GUID is not a valid GUID")
	case GUID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}:
		return errors.New("the all-ones GUID is not a valid GUID")
	}
	return nil
}

// PKey is an InfiniBand partition key: the high bit is full membership,
// the low 15 bits the partition.
type PKey uint16

// ParsePKey parses a pkey written as "0x" and 1 to 4 hex digits, as sysfs
// prints pkey table entries and users write them. It does not judge the
// value: see Check.
func ParsePKey(s string) (PKey, error) {
	s = strings.TrimSpace(s)
	if len(s) < 3 || len(s) > 6 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') {
		return 0, fmt.Errorf("not a pkey (0x and up to 4 hex digits, like 0x8001): %q", clip(s))
	}
	v, err := strconv.ParseUint(s[2:], 16, 16)
	if err != nil {
		return 0, fmt.Errorf("not a pkey (0x and up to 4 hex digits, like 0x8001): %q", clip(s))
	}
	return PKey(v), nil
}

// String formats the pkey as "0x8001": 0x and 4 lower-case hex digits.
func (p PKey) String() string { return fmt.Sprintf("0x%04x", uint16(p)) }

// Partition is the pkey without its membership bit.
func (p PKey) Partition() uint16 { return uint16(p) & 0x7fff }

// IsDefault reports whether the pkey is the default partition (0x7fff
// limited, 0xffff full), of which every port is a member.
func (p PKey) IsDefault() bool { return p.Partition() == 0x7fff }

// FullMember reports whether the membership bit is set.
func (p PKey) FullMember() bool { return p&0x8000 != 0 }

// Check refuses partition 0: 0x0000 and 0x8000 are not usable pkeys.
func (p PKey) Check() error {
	if p.Partition() == 0 {
		return errors.New("partition number 0 is invalid (0x0000 and 0x8000 are not usable pkeys)")
	}
	return nil
}

// VLAN protocols as netlink carries them (host byte order).
const (
	VLANProto8021Q  = 0x8100
	VLANProto8021AD = 0x88a8
)

// VLANProtoName names a VLAN protocol: "802.1q", "802.1ad", or "" when the
// PF reported none (no IFLA_VF_VLAN_LIST), which means 802.1Q.
func VLANProtoName(p int) string {
	switch p {
	case VLANProto8021Q:
		return "802.1q"
	case VLANProto8021AD:
		return "802.1ad"
	}
	return ""
}

// VLANProtoNumber is the protocol number of a name VLANProtoName gives
// (either case; "" is 802.1Q).
func VLANProtoNumber(s string) (int, error) {
	switch strings.ToLower(s) {
	case "", "802.1q":
		return VLANProto8021Q, nil
	case "802.1ad":
		return VLANProto8021AD, nil
	}
	return 0, fmt.Errorf("vlanProto %q: want 802.1q or 802.1ad", clip(s))
}

// LinkStateName names a VF link state: "auto", "enable", "disable", or ""
// for a value the kernel does not define.
func LinkStateName(n uint32) string {
	switch n {
	case nl.IFLA_VF_LINK_STATE_AUTO:
		return "auto"
	case nl.IFLA_VF_LINK_STATE_ENABLE:
		return "enable"
	case nl.IFLA_VF_LINK_STATE_DISABLE:
		return "disable"
	}
	return ""
}

// LinkStateNumber is the netlink value of a VF link state name.
func LinkStateNumber(name string) (uint32, error) {
	for _, n := range []uint32{nl.IFLA_VF_LINK_STATE_AUTO, nl.IFLA_VF_LINK_STATE_ENABLE, nl.IFLA_VF_LINK_STATE_DISABLE} {
		if LinkStateName(n) == name {
			return n, nil
		}
	}
	return 0, fmt.Errorf("linkState %q: want auto, enable or disable", clip(name))
}

// clip keeps error messages about hostile input short.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

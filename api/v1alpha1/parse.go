package v1alpha1

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
)

// ParseMAC parses an Ethernet MAC address ("0A:1b:2c:3d:4e:5f",
// "0a-1b-2c-3d-4e-5f" or "0a1b.2c3d.4e5f") and returns it lower-case and
// colon separated. It must be 6 bytes, unicast and not all zero. It does
// not accept "auto"; callers handle that first.
func ParseMAC(s string) (string, error) {
	mac, err := net.ParseMAC(s)
	if err != nil {
		return "", errors.New(`not a MAC address; write 6 hex bytes like "02:00:00:00:00:01", or "auto"`)
	}
	if len(mac) != 6 {
		return "", fmt.Errorf("a MAC address has 6 bytes, this has %d", len(mac))
	}
	if allBytes(mac, 0) {
		return "", errors.New("the all-zero MAC address cannot be assigned")
	}
	if mac[0]&1 != 0 {
		return "", errors.New("a multicast MAC address cannot be assigned (the lowest bit of the first byte must be 0; locally administered unicast addresses start with x2, x6, xa or xe)")
	}
	return mac.String(), nil
}

func allBytes(b []byte, v byte) bool {
	for _, c := range b {
		if c != v {
			return false
		}
	}
	return true
}

// ParseGUID parses an InfiniBand GUID: 8 bytes written like
// "00:11:22:33:44:55:66:77" (also "-" separated or "0011.2233.4455.6677"),
// and returns it lower-case and colon separated. All-zero and all-ones are
// refused: the kernel and the subnet manager treat them as "no GUID". It
// does not accept "auto"; callers handle that first.
func ParseGUID(s string) (string, error) {
	g, err := hw.ParseGUID(s)
	if err != nil {
		if b, merr := net.ParseMAC(s); merr == nil {
			return "", fmt.Errorf("a GUID has 8 bytes, this has %d", len(b))
		}
		return "", errors.New(`not a GUID; write 8 hex bytes like "02:00:00:00:00:00:00:01", or "auto"`)
	}
	if err := g.CheckAssignable(); err != nil {
		return "", err
	}
	return g.String(), nil
}

// parsePKeyString parses the string form of a pkey: "0x" and 1 to 4 hex
// digits. The range is checked by checkPKey.
func parsePKeyString(s string) (PKey, error) {
	p, err := hw.ParsePKey(s)
	if err != nil || strings.TrimSpace(s) != s {
		return 0, errors.New(`write a pkey as a hex string with 0x and up to 4 digits ("0x8001") or as a number`)
	}
	return PKey(p), nil
}

// checkPKey checks a pkey's range: 0x0001-0xffff, and the 15-bit partition
// number must not be 0 (0x0000 and 0x8000 are invalid pkeys).
func checkPKey(p PKey) error {
	if p < MinPKey || p > MaxPKey {
		return fmt.Errorf("a pkey is between 0x0001 and 0xffff (0x7fff and 0xffff mean the default partition)")
	}
	return hw.PKey(p).Check()
}

// ParsePKey parses a pkey written as "0x8001" and checks its range.
func ParsePKey(s string) (PKey, error) {
	p, err := parsePKeyString(s)
	if err != nil {
		return 0, err
	}
	if err := checkPKey(p); err != nil {
		return 0, err
	}
	return p, nil
}

// CheckIfName checks an interface name for the pod: the kernel's rules
// (1-15 bytes, not "." or "..", no '/', ':' or white space, not "all" or
// "default", which name the per-netns defaults under
// /proc/sys/net/*/conf/), printable ASCII only, no '%' (the kernel would
// treat it as a template and pick a name itself), and not "lo" or "eth0",
// which belong to the pod.
func CheckIfName(s string) error {
	switch {
	case s == "":
		return errors.New("must not be empty; leave ifName out to get the default (net1, net2, ...)")
	case len(s) > MaxIfNameLen:
		return fmt.Errorf("at most %d characters (Linux IFNAMSIZ), this has %d", MaxIfNameLen, len(s))
	case s == "." || s == "..":
		return errors.New(`"." and ".." are not interface names`)
	case s == "all" || s == "default":
		return fmt.Errorf("%q is not an interface name the kernel accepts: /proc/sys/net/ipv4/conf/%s holds the namespace's settings", s, s)
	case s == "lo":
		return errors.New(`"lo" is the pod's loopback interface`)
	case s == "eth0":
		return errors.New(`"eth0" is the pod's primary (cluster network) interface`)
	}
	for _, c := range s {
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == '%' {
			return fmt.Errorf("may contain only printable ASCII characters other than '/', ':', '%%' and space; found %q", c)
		}
	}
	return nil
}

// CheckPluginName checks the name of a CNI plugin binary: a bare file
// name looked up in CNI_PATH. It starts with a letter or digit (no hidden
// files, no "." or ".."), then letters, digits, '-', '_' and '.', never
// "..", at most 64 characters. pkg/ipam runs plugins only by names that
// pass it, and `sriov-dra validate` checks ipam.type with it.
func CheckPluginName(s string) error {
	const rule = "must be a bare plugin name looked up in CNI_PATH"
	switch {
	case s == "":
		return errors.New(`must name the CNI IPAM plugin, e.g. "host-local", "static" or "whereabouts"`)
	case strings.Contains(s, ".."):
		return errors.New(rule + `; ".." is not allowed`)
	case len(s) > 64:
		return errors.New(rule + " of at most 64 characters")
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf(rule+", starting with a letter or digit; found %q", c)
		}
		if !alnum && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf(rule+" (letters, digits, '-', '_', '.'); found %q", c)
		}
	}
	return nil
}

// CheckIPAMType checks a config's ipam.type: a plugin name
// (CheckPluginName), and not "dhcp": its client daemon renews leases on
// the host side, which a VF moved into a pod and returned later cannot
// follow.
func CheckIPAMType(s string) error {
	if s == "dhcp" {
		return errors.New(`the dhcp IPAM plugin is not supported: it needs a long-lived DHCP client daemon following the interface, which a VF moved into a pod's netns does not have; use host-local, static or whereabouts`)
	}
	return CheckPluginName(s)
}

package v1alpha1

import (
	"fmt"
	"strconv"
)

// PodNetdev is one device of a pod that gets a netdev in the pod, in
// request order (claims in the pod's order, then each claim's requests).
// Devices bound to vfio-pci have no netdev and are left out.
type PodNetdev struct {
	Claim   string  // "namespace/name", for messages
	Request string  // "req" or "req/subreq"
	Device  string  // ResourceSlice device name
	IfName  *string // the resolved ifName; nil or "" when none was set
}

// AssignIfNames returns the pod interface name of each device, in the
// order given: its configured ifName, or else the next free of net1, net2,
// ... (names configured for other devices of the pod are skipped). Two
// devices configured with the same name is an error naming both, and so
// is a configured name that is not a valid interface name.
func AssignIfNames(devs []PodNetdev) ([]string, error) {
	taken := make(map[string]int, len(devs))
	for i, d := range devs {
		if d.IfName == nil || *d.IfName == "" {
			continue
		}
		name := *d.IfName
		if err := CheckIfName(name); err != nil {
			return nil, fmt.Errorf("ifName %q of device %s (claim %s, request %s): %w", name, d.Device, d.Claim, d.Request, err)
		}
		if j, dup := taken[name]; dup {
			o := devs[j]
			return nil, fmt.Errorf("ifName %q is configured for two devices of the pod: %s (claim %s, request %s) and %s (claim %s, request %s); give each its own ifName",
				name, o.Device, o.Claim, o.Request, d.Device, d.Claim, d.Request)
		}
		taken[name] = i
	}
	out := make([]string, len(devs))
	next := 1
	for i, d := range devs {
		if d.IfName != nil && *d.IfName != "" {
			out[i] = *d.IfName
			continue
		}
		for {
			name := "net" + strconv.Itoa(next)
			next++
			if _, used := taken[name]; !used {
				out[i] = name
				break
			}
		}
	}
	return out, nil
}

// Package hwevents tells the driver when the kernel changed something
// about a device it may publish: kernel uevents (NETLINK_KOBJECT_UEVENT:
// PCI functions added or removed, drivers bound or unbound, netdevs and
// RDMA devices added, removed or renamed) and rtnetlink link changes in
// the host network namespace. A sriov_numvfs write sends no rtnetlink
// event but one uevent per VF it creates or removes, so with both the
// driver rescans the PFs concerned when they change instead of polling
// every PF every second.
//
// An Event names the PCI function or the netdev it is about; the driver
// maps that to the PF to rescan when it rescans, after the burst is over
// (a VF's physfn link appears after its "add" uevent).
package hwevents

import (
	"context"
	"strings"

	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// Origin is the kernel interface an Event came from.
type Origin string

const (
	OriginUevent Origin = "uevent"
	OriginLink   Origin = "link"
)

// Event is one change the kernel reported.
type Event struct {
	Origin Origin
	// Action is the uevent action (add, remove, bind, unbind, change,
	// move) or, for a link event, "newlink" or "dellink".
	Action string
	// Subsystem is the uevent's subsystem: pci, net or infiniband; "net"
	// for a link event.
	Subsystem string
	// PCIAddress is the PCI function the event is about: the device
	// itself for the pci subsystem, the parent of a netdev or RDMA
	// device. "" when the event names no PCI function.
	PCIAddress string
	// IfName is the netdev's name (net subsystem, link events).
	IfName string
	// Resync says events were lost (the socket's buffer overflowed):
	// anything may have changed, rescan everything.
	Resync bool
}

// Source delivers the kernel's device events.
type Source interface {
	// Subscribe starts listening and returns the events until ctx ends;
	// the channel is closed then, or when the subscription fails later
	// (after logging why). An error means no subscription.
	Subscribe(ctx context.Context) (<-chan Event, error)
}

// pciOf returns the last PCI address among the components of a sysfs
// device path ("/devices/pci0000:00/0000:00:02.0/0000:03:00.1/net/eth1"
// -> "0000:03:00.1"), "" when there is none (a virtual device).
func pciOf(devpath string) string {
	parts := strings.Split(devpath, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if pcidev.IsBDF(parts[i]) {
			return parts[i]
		}
	}
	return ""
}

// relevant lists the uevent subsystems whose events can change what the
// driver publishes.
var relevant = map[string]bool{"pci": true, "net": true, "infiniband": true}

// ParseUevent reads one kernel uevent datagram ("ACTION@DEVPATH" then
// NUL-separated KEY=VALUE pairs). It reports false for a message that is
// no kernel uevent (udev's re-broadcasts start with "libudev") and for
// events the driver has no use for: other subsystems, and netdevs or RDMA
// devices without a PCI parent (veth, bridges, rxe).
func ParseUevent(msg []byte) (Event, bool) {
	fields := strings.Split(strings.TrimRight(string(msg), "\x00"), "\x00")
	if len(fields) < 2 {
		return Event{}, false
	}
	head := fields[0]
	at := strings.IndexByte(head, '@')
	if at <= 0 {
		return Event{}, false
	}
	kv := make(map[string]string, len(fields))
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	ev := Event{Origin: OriginUevent, Action: kv["ACTION"], Subsystem: kv["SUBSYSTEM"]}
	if ev.Action == "" {
		ev.Action = head[:at]
	}
	devpath := kv["DEVPATH"]
	if devpath == "" {
		devpath = head[at+1:]
	}
	if !relevant[ev.Subsystem] {
		return Event{}, false
	}
	switch ev.Subsystem {
	case "pci":
		ev.PCIAddress = strings.ToLower(kv["PCI_SLOT_NAME"])
		if !pcidev.IsBDF(ev.PCIAddress) {
			ev.PCIAddress = pciOf(devpath)
		}
	case "net":
		ev.IfName = kv["INTERFACE"]
		ev.PCIAddress = pciOf(devpath)
	default:
		ev.PCIAddress = pciOf(devpath)
	}
	if ev.PCIAddress == "" {
		return Event{}, false
	}
	return ev, true
}

// Quiet is a Source that never reports an event: for a simulated host,
// whose devices the kernel does not announce (the full rescan is then the
// only one).
type Quiet struct{}

// Subscribe implements Source.
func (Quiet) Subscribe(ctx context.Context) (<-chan Event, error) {
	ch := make(chan Event)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

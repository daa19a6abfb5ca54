package hwevents

import (
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

func uevent(head string, kv ...string) []byte {
	return []byte(head + "\x00" + strings.Join(kv, "\x00") + "\x00")
}

func TestParseUevent(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		want Event
		ok   bool
	}{
		{
			name: "VF added by a sriov_numvfs write",
			msg: uevent("add@/devices/pci0000:00/0000:00:12.0", "ACTION=add", "DEVPATH=/devices/pci0000:00/0000:00:12.0",
				"SUBSYSTEM=pci", "PCI_CLASS=20000", "PCI_SLOT_NAME=0000:00:12.0", "SEQNUM=1234"),
			want: Event{Origin: OriginUevent, Action: "add", Subsystem: "pci", PCIAddress: "0000:00:12.0"}, ok: true,
		},
		{
			name: "driver unbound",
			msg: uevent("unbind@/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.3", "ACTION=unbind", "DEVPATH=/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.3",
				"SUBSYSTEM=pci", "PCI_SLOT_NAME=0000:3b:00.3", "SEQNUM=9"),
			want: Event{Origin: OriginUevent, Action: "unbind", Subsystem: "pci", PCIAddress: "0000:3b:00.3"}, ok: true,
		},
		{
			name: "PCI event without PCI_SLOT_NAME: address from the path",
			msg:  uevent("remove@/devices/pci0000:00/0000:00:02.0/0000:02:10.1", "ACTION=remove", "DEVPATH=/devices/pci0000:00/0000:00:02.0/0000:02:10.1", "SUBSYSTEM=pci"),
			want: Event{Origin: OriginUevent, Action: "remove", Subsystem: "pci", PCIAddress: "0000:02:10.1"}, ok: true,
		},
		{
			name: "VF netdev added",
			msg: uevent("add@/devices/pci0000:00/0000:00:12.2/net/eth2", "ACTION=add", "DEVPATH=/devices/pci0000:00/0000:00:12.2/net/eth2",
				"SUBSYSTEM=net", "INTERFACE=eth2", "IFINDEX=7"),
			want: Event{Origin: OriginUevent, Action: "add", Subsystem: "net", PCIAddress: "0000:00:12.2", IfName: "eth2"}, ok: true,
		},
		{
			name: "netdev renamed",
			msg: uevent("move@/devices/pci0000:00/0000:00:12.2/net/enp0s18f2", "ACTION=move", "DEVPATH=/devices/pci0000:00/0000:00:12.2/net/enp0s18f2",
				"SUBSYSTEM=net", "DEVPATH_OLD=/devices/pci0000:00/0000:00:12.2/net/eth2", "INTERFACE=enp0s18f2"),
			want: Event{Origin: OriginUevent, Action: "move", Subsystem: "net", PCIAddress: "0000:00:12.2", IfName: "enp0s18f2"}, ok: true,
		},
		{
			name: "RDMA device of a VF",
			msg: uevent("add@/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.2/infiniband/mlx5_2", "ACTION=add",
				"DEVPATH=/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.2/infiniband/mlx5_2", "SUBSYSTEM=infiniband", "NAME=mlx5_2"),
			want: Event{Origin: OriginUevent, Action: "add", Subsystem: "infiniband", PCIAddress: "0000:3b:00.2"}, ok: true,
		},
		{
			name: "veth: no PCI parent",
			msg:  uevent("add@/devices/virtual/net/veth1", "ACTION=add", "DEVPATH=/devices/virtual/net/veth1", "SUBSYSTEM=net", "INTERFACE=veth1"),
		},
		{
			name: "other subsystem",
			msg:  uevent("add@/devices/pci0000:00/0000:00:1f.2/ata1/host0", "ACTION=add", "DEVPATH=/devices/pci0000:00/0000:00:1f.2/ata1/host0", "SUBSYSTEM=scsi"),
		},
		{
			name: "udev re-broadcast",
			msg:  []byte("libudev\x00\xfe\xed\xca\xfe garbage"),
		},
		{name: "empty", msg: nil},
		{name: "no header", msg: uevent("ACTION=add", "SUBSYSTEM=pci", "PCI_SLOT_NAME=0000:00:12.0")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseUevent(tc.msg)
			if ok != tc.ok || got != tc.want {
				t.Errorf("ParseUevent = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func FuzzParseUevent(f *testing.F) {
	f.Add(uevent("add@/devices/pci0000:00/0000:00:12.0", "ACTION=add", "SUBSYSTEM=pci", "PCI_SLOT_NAME=0000:00:12.0"))
	f.Add([]byte("libudev\x00"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		ev, ok := ParseUevent(msg)
		if ok && !pcidev.IsBDF(ev.PCIAddress) {
			t.Errorf("event without a valid PCI address: %+v", ev)
		}
	})
}

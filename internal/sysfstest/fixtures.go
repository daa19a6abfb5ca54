package sysfstest

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// VLAN protocols as netlink reports them in VfInfo.VlanProto.
const (
	VLANProto8021Q  = 0x8100
	VLANProto8021AD = 0x88a8
)

// ConnectX6IB is a ConnectX-6 InfiniBand PF (mlx5_core, 15b3:101b) at
// 0000:3b:00.0 with 8 VFs (15b3:101c, mlx5_core, netdevs ibp59s0f0v0..7,
// RDMA devices mlx5_1..mlx5_8). The PF is ibp59s0f0 / mlx5_0 with pkeys
// 0xffff, 0x8001, 0x8002. VFs 0-5 have node/port GUIDs set through the PF,
// VFs 6 and 7 have none. VF 0's link state is "enable". NUMA node 0.
func ConnectX6IB() PF {
	pf := PF{
		PCIAddress: "0000:3b:00.0", PCIeRoot: "pci0000:3a",
		Vendor: "15b3", DeviceID: "101b", VFDeviceID: "101c",
		SubsystemVendor: "15b3", SubsystemDevice: "0007",
		Driver: "mlx5_core", NUMANode: 0,
		IfName: "ibp59s0f0", LinkType: ARPHRDInfiniBand, MTU: 4092, SpeedMbps: 200000,
		TotalVFs: 16, RDMADevice: "mlx5_0",
		NodeGUID: "0c:42:a1:03:00:ab:cd:00", PortGUID: "0c:42:a1:03:00:ab:cd:00",
		PKeys:       []string{"0xffff", "0x8001", "0x8002"},
		EswitchMode: "legacy",
	}
	for i := 0; i < 8; i++ {
		vf := VF{
			Driver:     "mlx5_core",
			IfName:     fmt.Sprintf("ibp59s0f0v%d", i),
			RDMADevice: fmt.Sprintf("mlx5_%d", i+1),
			Admin:      netlink.VfInfo{Spoofchk: false, LinkState: netlink.VF_LINK_STATE_AUTO},
		}
		if i < 6 {
			vf.NodeGUID = fmt.Sprintf("0c:42:a1:03:00:ab:cd:%02x", 0x10+i)
			vf.PortGUID = fmt.Sprintf("0c:42:a1:03:00:ab:ce:%02x", 0x10+i)
		}
		if i == 0 {
			vf.Admin.LinkState = netlink.VF_LINK_STATE_ENABLE
		}
		pf.VFs = append(pf.VFs, vf)
	}
	return pf
}

// E810 is an Intel E810 Ethernet PF (ice, 8086:159b) at 0000:5e:00.0,
// netdev ens2f0, MTU 9000, 100 Gb/s, NUMA node 1, eswitch "legacy", with
// 16 VFs (8086:1889): VFs 0-11 bound to iavf (netdevs ens2f0v0..11), VFs
// 12-15 bound to vfio-pci (no netdev, /dev/vfio/<group>). Admin state:
// every VF has MAC 02:00:5e:00:00:<i> and spoofchk on, except
// VF1: VLAN 100 QoS 3 802.1ad; VF2: VLAN 200 802.1q; VF3: trusted;
// VF4: spoofchk off; VF5: link state disable; VF6: link state enable;
// VF7: min/max rate 100/1000 Mbps.
func E810() PF {
	pf := PF{
		PCIAddress: "0000:5e:00.0", PCIeRoot: "pci0000:5d",
		Vendor: "8086", DeviceID: "159b", VFDeviceID: "1889",
		SubsystemVendor: "8086", SubsystemDevice: "0003",
		Driver: "ice", NUMANode: 1,
		IfName: "ens2f0", MTU: 9000, SpeedMbps: 100000,
		TotalVFs: 128, EswitchMode: "legacy",
	}
	for i := 0; i < 16; i++ {
		vf := VF{Driver: "iavf", IfName: fmt.Sprintf("ens2f0v%d", i)}
		if i >= 12 {
			vf = VF{Driver: "vfio-pci"}
		}
		vf.Admin = netlink.VfInfo{
			Mac:       net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, byte(i)},
			Spoofchk:  true,
			LinkState: netlink.VF_LINK_STATE_AUTO,
		}
		switch i {
		case 1:
			vf.Admin.Vlan, vf.Admin.Qos, vf.Admin.VlanProto = 100, 3, VLANProto8021AD
		case 2:
			vf.Admin.Vlan, vf.Admin.VlanProto = 200, VLANProto8021Q
		case 3:
			vf.Admin.Trust = 1
		case 4:
			vf.Admin.Spoofchk = false
		case 5:
			vf.Admin.LinkState = netlink.VF_LINK_STATE_DISABLE
		case 6:
			vf.Admin.LinkState = netlink.VF_LINK_STATE_ENABLE
		case 7:
			vf.Admin.MinTxRate, vf.Admin.MaxTxRate = 100, 1000
		}
		pf.VFs = append(pf.VFs, vf)
	}
	return pf
}

// IGB is an Intel I350 PF (igb, 8086:1521) at 0000:02:00.0, netdev
// enp2s0f0, 1 Gb/s, no NUMA affinity (numa_node -1), no devlink, with 7
// VFs (8086:1520, igbvf, netdevs enp2s0f0v0..6, admin MAC unset).
func IGB() PF {
	pf := PF{
		PCIAddress: "0000:02:00.0", PCIeRoot: "pci0000:00",
		Vendor: "8086", DeviceID: "1521", VFDeviceID: "1520",
		Driver: "igb", NUMANode: -1,
		IfName: "enp2s0f0", SpeedMbps: 1000, TotalVFs: 7,
	}
	for i := 0; i < 7; i++ {
		pf.VFs = append(pf.VFs, VF{
			Driver: "igbvf", IfName: fmt.Sprintf("enp2s0f0v%d", i),
			Admin: netlink.VfInfo{Spoofchk: true, LinkState: netlink.VF_LINK_STATE_AUTO},
		})
	}
	return pf
}

// SRIOVDisabled is an Intel X710 PF (i40e, 8086:1572) at 0000:af:00.0,
// netdev ens5f0, NUMA node 1, SR-IOV capable (sriov_totalvfs 64) with no
// VFs enabled (sriov_numvfs 0).
func SRIOVDisabled() PF {
	return PF{
		PCIAddress: "0000:af:00.0", PCIeRoot: "pci0000:ae",
		Vendor: "8086", DeviceID: "1572", VFDeviceID: "154c",
		Driver: "i40e", NUMANode: 1,
		IfName: "ens5f0", SpeedMbps: 10000, TotalVFs: 64,
	}
}

// Standard is the four ready PFs together: ConnectX6IB, E810, IGB and
// SRIOVDisabled (33 VFs, 4 PFs).
func Standard() Topology {
	return Topology{PFs: []PF{ConnectX6IB(), E810(), IGB(), SRIOVDisabled()}}
}

// Scale is pfs ConnectX-6 Dx Ethernet PFs (mlx5_core, RoCE) with vfs VFs
// each, every PF and VF with a netdev and an RDMA device: the benchmark
// host (Scale(8, 128) is 8 PFs x 128 VFs). PF i is at 0000:<0x10+16i>:00.0,
// netdev ens<i>f0, VFs ens<i>f0v<j>.
func Scale(pfs, vfs int) Topology {
	var t Topology
	rdma := 0
	for i := 0; i < pfs; i++ {
		bus := 0x10 + 0x10*i
		pf := PF{
			PCIAddress: fmt.Sprintf("0000:%02x:00.0", bus), PCIeRoot: fmt.Sprintf("pci0000:%02x", bus-1),
			Vendor: "15b3", DeviceID: "101d", VFDeviceID: "101e",
			Driver: "mlx5_core", NUMANode: i % 2,
			IfName: fmt.Sprintf("ens%df0", i), MTU: 9000, SpeedMbps: 100000,
			TotalVFs: max(vfs, 1), RDMADevice: fmt.Sprintf("mlx5_%d", rdma),
			NodeGUID:    fmt.Sprintf("b8:ce:f6:03:00:%02x:00:00", i),
			EswitchMode: "legacy",
		}
		rdma++
		for j := 0; j < vfs; j++ {
			pf.VFs = append(pf.VFs, VF{
				Driver: "mlx5_core", IfName: fmt.Sprintf("ens%df0v%d", i, j),
				RDMADevice: fmt.Sprintf("mlx5_%d", rdma),
				Admin: netlink.VfInfo{
					Mac:  net.HardwareAddr{0x02, 0xce, byte(i), 0x00, byte(j >> 8), byte(j)},
					Vlan: j % 4094, VlanProto: VLANProto8021Q,
					Spoofchk: true, LinkState: netlink.VF_LINK_STATE_AUTO,
				},
			})
			rdma++
		}
		t.PFs = append(t.PFs, pf)
	}
	return t
}

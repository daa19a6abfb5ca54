// Package netattach moves a netdev into a pod network namespace and back.
package netattach

import "github.com/sriov-dra/sriov-dra/pkg/ethtool"

// Route, Spec and Original (and Identity) also go into the node's
// checkpoint, but as their own copies in api/checkpoint/v1 (Route,
// AttachSpec, Original, Identity), which driver/checkpointv1.go converts
// to and from. The likeness is deliberate: renaming a field or a JSON tag
// here must not change the file format (issue #18 part 2), so do not
// merge them.

// Route is one route to add in the pod netns for the device.
type Route struct {
	Dst string `json:"dst"`          // CIDR, e.g. "0.0.0.0/0" or "10.20.0.0/16"
	GW  string `json:"gw,omitempty"` // next hop IP, "" for a link route
}

// Spec is how a netdev must look inside the pod.
type Spec struct {
	HostIfName string   `json:"hostIfName"`          // its name on the host now
	PodIfName  string   `json:"podIfName"`           // its name in the pod
	MTU        int      `json:"mtu,omitempty"`       // 0: keep
	MAC        string   `json:"mac,omitempty"`       // "": keep
	Addresses  []string `json:"addresses,omitempty"` // "10.1.0.5/24"
	Routes     []Route  `json:"routes,omitempty"`
}

// Original is what Detach restores on the host: recorded before the move.
type Original struct {
	IfName string `json:"ifName"`
	MAC    string `json:"mac"`
	MTU    int    `json:"mtu"`
	// Up is whether the link was administratively up on the host.
	Up bool `json:"up,omitempty"`
	// IfIndex is its host ifindex before the move; the kernel names a
	// device it returns from a dying netns "dev<ifindex>" when its pod
	// name is taken on the host.
	IfIndex int `json:"ifIndex,omitempty"`
	// Identity is what Detach finds the link by, in the pod netns and on
	// the host; names are only hints. Records written before it existed
	// have the zero Identity: the caller fills in the PCI address it
	// recorded for the device, or Detach refuses to touch anything.
	Identity Identity `json:"identity"`
	// Flags are its link flags and alias on the host, which a pod with
	// NET_ADMIN can change and which stay with the netdev when it comes
	// back. Not Known in records written before they were recorded:
	// Detach then restores hostDefaultFlags.
	Flags LinkFlags `json:"flags,omitzero"`
	// Features are its offload features on the host ("ethtool -k"),
	// which a pod with NET_ADMIN can change too ("ethtool -K") and which
	// stay with the netdev. Count 0: not recorded (records from before
	// they were, or a netdev that does not report them), and then left
	// as the device comes back.
	Features Features `json:"features,omitzero"`
	// Rings are its ring sizes ("ethtool -g") and Channels its channel
	// counts ("ethtool -l"), which the same pod can change ("-G", "-L").
	// Not Known: not recorded (earlier records, or a driver without
	// them), and then left as the device comes back.
	Rings    Rings    `json:"rings,omitzero"`
	Channels Channels `json:"channels,omitzero"`
}

// Rings are the ring sizes of a netdev: the numbers of descriptors of
// its receive, mini, jumbo and transmit rings.
type Rings struct {
	Known   bool   `json:"known,omitempty"`
	RX      uint32 `json:"rx,omitempty"`
	RXMini  uint32 `json:"rxMini,omitempty"`
	RXJumbo uint32 `json:"rxJumbo,omitempty"`
	TX      uint32 `json:"tx,omitempty"`
}

// Channels are the channel counts of a netdev: receive-only,
// transmit-only, other and combined channels.
type Channels struct {
	Known    bool   `json:"known,omitempty"`
	RX       uint32 `json:"rx,omitempty"`
	TX       uint32 `json:"tx,omitempty"`
	Other    uint32 `json:"other,omitempty"`
	Combined uint32 `json:"combined,omitempty"`
}

// Features are the offload features of a netdev as recorded before the
// attach: of the features the kernel numbers (Count of them, its
// ETH_SS_FEATURES order), which ones a user can change and which ones
// were requested. A detach puts back the requested state of those that
// are changeable, on a netdev with the same Count only.
type Features struct {
	Count      int                      `json:"count,omitempty"`
	Changeable [ethtool.MaxWords]uint32 `json:"changeable,omitzero"`
	Requested  [ethtool.MaxWords]uint32 `json:"requested,omitzero"`
}

// LinkFlags are the link flags and the alias of a netdev that a process
// with NET_ADMIN in its netns can change ("ip link set promisc on",
// "allmulticast on", "arp off", "alias ..."). The kernel keeps them on
// the device across network namespaces.
type LinkFlags struct {
	// Known is whether the others were read from the device; the zero
	// LinkFlags records nothing.
	Known    bool   `json:"known,omitempty"`
	Promisc  bool   `json:"promisc,omitempty"`  // IFF_PROMISC set by a user
	AllMulti bool   `json:"allMulti,omitempty"` // IFF_ALLMULTI set by a user
	NoARP    bool   `json:"noARP,omitempty"`    // IFF_NOARP: "arp off"
	Alias    string `json:"alias,omitempty"`    // IFLA_IFALIAS, "" for none
	// TxQLen is the transmit queue length ("ip link set txqueuelen");
	// 0 when not recorded (records from before it was), and then left as
	// the device comes back: the driver's default is not known here.
	TxQLen int `json:"txQLen,omitempty"`
	// Group is the device group ("ip link set group"); every netdev is
	// created in group 0, so a record without it restores 0.
	Group uint32 `json:"group,omitempty"`
}

// hostDefaultFlags are the flags a VF (or PF) netdev has on the host
// when its driver creates it: not promiscuous, no all-multicast, ARP on,
// no alias, device group 0 (its queue length is its driver's and unknown). Detach restores them when the original's flags were not
// recorded.
func hostDefaultFlags() LinkFlags { return LinkFlags{Known: true} }

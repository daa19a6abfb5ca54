package v1

// This file is the schema's types. Many mirror a runtime type field for
// field (vfconfig.Settings and Snapshot, inventory.Device and
// VFAdminState, ipam.Result, IPConfig and DNS, netattach's attach spec)
// and look like duplicates of it: they are kept apart on purpose (see
// doc.go), so the file format changes only when this package does. Do
// not replace them with the runtime types, nor make the runtime types
// embed these.

import "encoding/json"

// Version is the value of Checkpoint.Version this package describes.
const Version = "sriov.dra.dev/checkpoint/v1"

// Phase values of Claim.Phase.
const (
	// PhasePrepareStarted: recorded with every device's snapshot before
	// the first change to the host; the record is rolled back, never
	// completed, by whoever finds it.
	PhasePrepareStarted = "PrepareStarted"
	// PhasePrepareCompleted: the CDI spec was written and kubelet may
	// have been answered.
	PhasePrepareCompleted = "PrepareCompleted"
)

// Kind values of Device.Kind and PublishedDevice.Kind.
const (
	KindVF = "vf"
	KindPF = "pf"
)

// Checkpoint is the whole document: everything the node daemon did to
// the host, keyed by claim UID.
type Checkpoint struct {
	// Version is always the package's Version.
	Version string `json:"version"`
	// BootID is the node boot the records belong to. Records of another
	// boot describe kernel state that is gone: they are released, never
	// restored.
	BootID string `json:"bootID"`
	// Claims maps a claim UID to its record (whose UID is the key). A
	// node's first start writes null.
	Claims map[string]*Claim `json:"claims"`
	// Owner names the daemon that took the file over last; empty when
	// none is enforced.
	Owner string `json:"owner,omitempty"`
	// DropRequests are the admin's requests to forget a claim's record.
	DropRequests []DropRequest `json:"dropRequests,omitempty"`
	// Lost (added after the first v1 release) are devices released while
	// they were gone (removed VF, hot-unplug), keyed by device name: not
	// handed out again until a scan finds them back with the same
	// identity. A release that does not know it hands such a device out
	// when it reappears, as before; nothing on the host is left to undo.
	Lost map[string]*LostDevice `json:"lost,omitempty"`
}

// LostDevice is a device released while it was gone.
type LostDevice struct {
	Device     string `json:"device"`
	PCIAddress string `json:"pciAddress,omitempty"`
	// Identity is the netdev's identity when it was attached.
	Identity Identity `json:"identity"`
	// The claim that held it.
	ClaimUID       string `json:"claimUID"`
	ClaimNamespace string `json:"claimNamespace"`
	ClaimName      string `json:"claimName"`
	// Since is when it was released as lost (RFC 3339).
	Since string `json:"since"`
	// Reason is the detach error that gave up on it.
	Reason string `json:"reason,omitempty"`
}

// DropRequest asks the daemon to forget one claim record, undoing nothing.
type DropRequest struct {
	ClaimUID string `json:"claimUID"`
	By       string `json:"by,omitempty"`
	// At is RFC 3339.
	At string `json:"at,omitempty"`
}

// Claim is one prepared (or being prepared) ResourceClaim.
type Claim struct {
	UID          string     `json:"uid"`
	Namespace    string     `json:"namespace"`
	Name         string     `json:"name"`
	PodUID       string     `json:"podUID"`
	PodName      string     `json:"podName"`
	PodNamespace string     `json:"podNamespace"`
	Phase        string     `json:"phase"`
	Steps        ClaimSteps `json:"steps"`
	// Devices are in allocation order; an undo walks them backwards.
	Devices []*Device `json:"devices"`
	// Stale is set on a record of an earlier boot.
	Stale *Stale `json:"stale,omitempty"`
}

// ClaimSteps are the claim-wide steps of Prepare that were started.
type ClaimSteps struct {
	CDI    bool `json:"cdi,omitempty"`
	Status bool `json:"status,omitempty"`
}

// Stale marks a record of an earlier boot, only ever released.
type Stale struct {
	// BootID is the boot the record was made in.
	BootID    string `json:"bootID"`
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// Device is one allocated device of a claim.
type Device struct {
	Request    string `json:"request"`
	Pool       string `json:"pool"`
	Device     string `json:"device"`
	PCIAddress string `json:"pciAddress"`
	Kind       string `json:"kind"`
	// Config is the resolved opaque config as the writer rendered it. It
	// is read only by the Prepare that wrote it; no undo depends on it.
	Config json.RawMessage `json:"config,omitempty"`
	// Settings are the VF knobs Prepare applies through the PF.
	Settings VFSettings `json:"settings"`
	// Driver is "" or "netdevice" (the vendor driver) or "vfio-pci".
	Driver string `json:"driver,omitempty"`
	// Snapshot is the device's state before any change.
	Snapshot Snapshot    `json:"snapshot"`
	Steps    DeviceSteps `json:"steps"`
	// RDMAManagement gives the containers umadN/issmN.
	RDMAManagement bool `json:"rdmaManagement,omitempty"`
	// IPAMConfig is the CNI IPAM configuration; empty for none.
	IPAMConfig json.RawMessage `json:"ipamConfig,omitempty"`
	// IPAM is the allocation (or its intent); nil for none.
	IPAM         *IPAMResult `json:"ipam,omitempty"`
	CDIDeviceIDs []string    `json:"cdiDeviceIDs,omitempty"`
	// Published is the device as published before it was prepared.
	Published *PublishedDevice `json:"published,omitempty"`
	// Pod is what the NRI side needs and records.
	Pod PodDevice `json:"pod"`
}

// DeviceSteps are the per-device steps of Prepare that were done.
type DeviceSteps struct {
	VFSettings bool `json:"vfSettings,omitempty"`
	GUID       bool `json:"guid,omitempty"`
	VFIO       bool `json:"vfio,omitempty"`
	IPAM       bool `json:"ipam,omitempty"`
}

// VFSettings are VF knobs set through the PF; nil is "leave as is".
type VFSettings struct {
	MAC       *string `json:"mac,omitempty"`
	VLAN      *int    `json:"vlan,omitempty"`
	QoS       *int    `json:"qos,omitempty"`
	VLANProto *string `json:"vlanProto,omitempty"`
	SpoofChk  *bool   `json:"spoofChk,omitempty"`
	Trust     *bool   `json:"trust,omitempty"`
	LinkState *string `json:"linkState,omitempty"`
	MinTxRate *int    `json:"minTxRate,omitempty"`
	MaxTxRate *int    `json:"maxTxRate,omitempty"`
	GUID      *string `json:"guid,omitempty"`
}

// Snapshot is a device's state before any change.
type Snapshot struct {
	PCIAddress   string `json:"pciAddress"`
	PFName       string `json:"pfName"`
	PFPCIAddress string `json:"pfPciAddress"`
	VFIndex      int    `json:"vfIndex"`
	PFDriver     string `json:"pfDriver,omitempty"`
	// AdminKnown is false when the PF reported no VF info: Admin is then
	// empty and the PF side is not restored.
	AdminKnown bool    `json:"adminKnown"`
	Admin      VFAdmin `json:"admin"`
	Driver     string  `json:"driver,omitempty"`
	IfName     string  `json:"ifName,omitempty"`
	MAC        string  `json:"mac,omitempty"`
	MTU        int     `json:"mtu,omitempty"`
	// IRQAffinity maps an IRQ number to its smp_affinity_list.
	IRQAffinity map[int]string `json:"irqAffinity,omitempty"`
}

// VFAdmin is a VF's admin state as its PF reports it.
type VFAdmin struct {
	MAC       string `json:"mac,omitempty"`
	VLAN      int    `json:"vlan"`
	QoS       int    `json:"qos"`
	VLANProto string `json:"vlanProto,omitempty"`
	SpoofChk  bool   `json:"spoofChk"`
	Trust     bool   `json:"trust"`
	LinkState string `json:"linkState,omitempty"`
	MinTxRate int    `json:"minTxRate"`
	MaxTxRate int    `json:"maxTxRate"`
	NodeGUID  string `json:"nodeGUID,omitempty"`
	PortGUID  string `json:"portGUID,omitempty"`
}

// IPAMResult is one device's CNI IPAM allocation and what releasing it
// needs.
type IPAMResult struct {
	Plugin      string     `json:"plugin"`
	Network     string     `json:"network"`
	ContainerID string     `json:"containerID"`
	IfName      string     `json:"ifName"`
	IPs         []IPConfig `json:"ips"`
	Routes      []Route    `json:"routes,omitempty"`
	DNS         DNS        `json:"dns,omitzero"`
	Args        string     `json:"args,omitempty"`
	// NetConf is the network config the plugin ran with.
	NetConf json.RawMessage `json:"netConf"`
	// Raw is the plugin's result.
	Raw json.RawMessage `json:"raw"`
}

// IPConfig is one allocated address.
type IPConfig struct {
	Address string `json:"address"`
	Gateway string `json:"gateway,omitempty"`
}

// DNS is the DNS configuration an IPAM plugin returned.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Route is a route in the pod.
type Route struct {
	Dst string `json:"dst"`
	GW  string `json:"gw,omitempty"`
}

// PublishedDevice is a device as it was published in a ResourceSlice.
type PublishedDevice struct {
	Name            string   `json:"name"`
	Kind            string   `json:"kind"`
	PCIAddress      string   `json:"pciAddress"`
	PFPCIAddress    string   `json:"pfPciAddress"`
	PFName          string   `json:"pfName,omitempty"`
	PFDriver        string   `json:"pfDriver,omitempty"`
	VFIndex         int      `json:"vfIndex"`
	Vendor          string   `json:"vendor"`
	DeviceID        string   `json:"deviceID"`
	SubsystemVendor string   `json:"subsystemVendor,omitempty"`
	SubsystemDevice string   `json:"subsystemDevice,omitempty"`
	Driver          string   `json:"driver,omitempty"`
	NUMANode        int      `json:"numaNode"`
	PCIeRoot        string   `json:"pcieRoot,omitempty"`
	IOMMUGroup      string   `json:"iommuGroup,omitempty"`
	IfName          string   `json:"ifName,omitempty"`
	IfNames         []string `json:"ifNames,omitempty"`
	LinkType        string   `json:"linkType"`
	MTU             int      `json:"mtu,omitempty"`
	SpeedMbps       int      `json:"speedMbps,omitempty"`
	MAC             string   `json:"mac,omitempty"`
	TotalVFs        int      `json:"totalVfs,omitempty"`
	NumVFs          int      `json:"numVfs,omitempty"`
	EswitchMode     string   `json:"eswitchMode,omitempty"`
	HostUse         string   `json:"hostUse,omitempty"`
	RDMADevices     []string `json:"rdmaDevices,omitempty"`
	NodeGUID        string   `json:"nodeGUID,omitempty"`
	PortGUID        string   `json:"portGUID,omitempty"`
	PKeys           []string `json:"pkeys,omitempty"`
	Admin           *VFAdmin `json:"admin,omitempty"`
}

// PodDevice is the NRI side of a device: how its netdev must look in the
// pod and the attach state the NRI plugin records. The claim, request,
// device and PCI address it is handed with come from the Claim and
// Device records; the first v1 release also wrote them here, always
// empty, and read them from nowhere.
type PodDevice struct {
	// VFIO: a vfio-pci device, no netdev to move.
	VFIO bool       `json:"vfio,omitempty"`
	Spec AttachSpec `json:"spec"`
	// LinkType is "ethernet", "infiniband" or "unknown".
	LinkType      string `json:"linkType,omitempty"`
	RDMADevice    string `json:"rdmaDevice,omitempty"`
	RDMAIsolation bool   `json:"rdmaIsolation,omitempty"`
	IRQAffinity   bool   `json:"irqAffinity,omitempty"`
	// NetnsPath is set when attaching began.
	NetnsPath string `json:"netnsPath,omitempty"`
	Attached  bool   `json:"attached,omitempty"`
	// Original is recorded before the move.
	Original  *Original `json:"original,omitempty"`
	RDMAMoved bool      `json:"rdmaMoved,omitempty"`
	// AttachStateFromKernel (added after the first v1 release): Original
	// was recorded at Prepare and the NRI hooks keep NetnsPath and
	// Attached in memory only; after a restart the device is found by its
	// identity in the pod's netns. Absent means as before: the hooks
	// recorded both durably. A release that does not know it reads such a
	// record as a device never attached, so a downgrade by one release
	// must be done on a node without running pods of this driver (the
	// VF's PF settings are restored either way; its host netdev name,
	// MAC and MTU would not be).
	AttachStateFromKernel bool `json:"attachStateFromKernel,omitempty"`
}

// AttachSpec is how a netdev must look inside the pod.
type AttachSpec struct {
	HostIfName string   `json:"hostIfName"`
	PodIfName  string   `json:"podIfName"`
	MTU        int      `json:"mtu,omitempty"`
	MAC        string   `json:"mac,omitempty"`
	Addresses  []string `json:"addresses,omitempty"`
	Routes     []Route  `json:"routes,omitempty"`
}

// Original is what a detach restores on the host.
type Original struct {
	IfName  string `json:"ifName"`
	MAC     string `json:"mac"`
	MTU     int    `json:"mtu"`
	Up      bool   `json:"up,omitempty"`
	IfIndex int    `json:"ifIndex,omitempty"`
	// Identity finds the link; the zero value (records from before it
	// existed) makes the reader use the device's PCI address.
	Identity Identity `json:"identity"`
	// Flags (added after the first v1 release) are the netdev's link
	// flags and alias on the host before the move, which a pod with
	// NET_ADMIN can change and the kernel keeps on the device. Absent:
	// not recorded (an earlier release's record); the release that added
	// it then restores what a host VF netdev has when its driver creates
	// it (not promiscuous, no all-multicast, ARP on, no alias) rather
	// than leave a tenant's flags for the next Prepare to record. A
	// release that does not know it leaves the flags as the pod left
	// them, as before; nothing it undoes depends on it.
	Flags *LinkFlags `json:"flags,omitempty"`
	// Features (added after Flags) are the netdev's offload features on
	// the host before the move ("ethtool -k"), which a pod with NET_ADMIN
	// can change and the kernel keeps on the device. Absent: not
	// recorded (an earlier release's record, or a netdev that does not
	// report them), and the detach leaves them as the device comes back.
	// A release that does not know it does the same.
	Features *Features `json:"features,omitempty"`
	// Rings and Channels (added with Features) are its ring sizes and
	// channel counts on the host before the move. Absent: not recorded
	// (an earlier release's record, or a driver without them), and left
	// as the device comes back.
	Rings    *Rings    `json:"rings,omitempty"`
	Channels *Channels `json:"channels,omitempty"`
}

// Rings are a netdev's ring sizes (descriptors per ring).
type Rings struct {
	RX      uint32 `json:"rx"`
	RXMini  uint32 `json:"rxMini,omitempty"`
	RXJumbo uint32 `json:"rxJumbo,omitempty"`
	TX      uint32 `json:"tx"`
}

// Channels are a netdev's channel counts.
type Channels struct {
	RX       uint32 `json:"rx,omitempty"`
	TX       uint32 `json:"tx,omitempty"`
	Other    uint32 `json:"other,omitempty"`
	Combined uint32 `json:"combined,omitempty"`
}

// Features are a netdev's offload features as bit words in the kernel's
// order (its ETH_SS_FEATURES string set): Count features, so
// (Count+31)/32 words in each of Changeable (the ones a user can turn on
// or off) and Requested (the ones asked for). A detach sets back the
// requested state of the changeable ones on a netdev with the same
// Count only.
type Features struct {
	Count      int      `json:"count"`
	Changeable []uint32 `json:"changeable"`
	Requested  []uint32 `json:"requested"`
}

// LinkFlags are a netdev's link flags and alias; an object with none set
// records the defaults.
type LinkFlags struct {
	Promisc  bool   `json:"promisc,omitempty"`
	AllMulti bool   `json:"allMulti,omitempty"`
	NoARP    bool   `json:"noARP,omitempty"`
	Alias    string `json:"alias,omitempty"`
	// TxQLen (added later still) is the transmit queue length; absent or
	// 0: not recorded, left as the device comes back.
	TxQLen int `json:"txQLen,omitempty"`
	// Group (added with TxQLen) is the device group; absent: group 0,
	// where every netdev starts.
	Group uint32 `json:"group,omitempty"`
}

// Identity is what identifies a link, by the first field set.
type Identity struct {
	PCIAddress    string `json:"pciAddress,omitempty"`
	PermAddr      string `json:"permAddr,omitempty"`
	HostPeerIndex int    `json:"hostPeerIndex,omitempty"`
	Kind          string `json:"kind,omitempty"`
}

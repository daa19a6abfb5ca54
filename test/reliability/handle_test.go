package reliability

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// pfHandle is the simulated host's netlink: the VF netdevs are real veth
// links, reached through a real handle; the PF (which a veth cannot be)
// and its VFs' admin state live in the sysfstest fake. The fake's VF
// state is written to a file after every change and read back on open,
// so it survives the daemon's crash and restart like a real PF's does.
//
// Chosen over a product-side file-backed PF: the crashing daemon here is
// the test binary itself (see crash_test.go), so the test owns the seam.
type pfHandle struct {
	*nlink.Real
	fake   *nlinktest.Fake
	pfName string
	vfs    int
	file   string

	mu sync.Mutex // serializes save
}

var _ nlink.Handle = (*pfHandle)(nil)

// vfState is the persisted admin state of one VF.
type vfState struct {
	MAC       string `json:"mac"`
	VLAN      int    `json:"vlan"`
	QoS       int    `json:"qos"`
	Proto     int    `json:"proto"`
	Spoofchk  bool   `json:"spoofchk"`
	Trust     uint32 `json:"trust"`
	LinkState uint32 `json:"linkState"`
	MinRate   uint32 `json:"minRate"`
	MaxRate   uint32 `json:"maxRate"`
}

// stateOf reads one VF's admin state. A protocol the fake leaves unset
// (0) is reported as 802.1Q, the kernel's default for a VF's VLAN.
func stateOf(v netlink.VfInfo) vfState {
	if v.VlanProto == 0 {
		v.VlanProto = 0x8100
	}
	return vfState{
		MAC: v.Mac.String(), VLAN: v.Vlan, QoS: v.Qos, Proto: v.VlanProto, Spoofchk: v.Spoofchk, Trust: v.Trust,
		LinkState: v.LinkState, MinRate: v.MinTxRate, MaxRate: v.MaxTxRate,
	}
}

func openPFHandle(fake *nlinktest.Fake, pfName string, vfs int, file string) (*pfHandle, error) {
	real, err := nlink.NewHost()
	if err != nil {
		return nil, err
	}
	h := &pfHandle{Real: real, fake: fake, pfName: pfName, vfs: vfs, file: file}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return h, h.save()
	}
	if err != nil {
		return nil, err
	}
	var st []vfState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("PF state %s: %w", file, err)
	}
	pf, err := fake.LinkByName(pfName)
	if err != nil {
		return nil, err
	}
	for i, s := range st {
		mac, _ := net.ParseMAC(s.MAC)
		if mac == nil {
			mac = make(net.HardwareAddr, 6)
		}
		errs := errors.Join(
			fake.LinkSetVfHardwareAddr(pf, i, mac),
			fake.LinkSetVfVlanQosProto(pf, i, s.VLAN, s.QoS, s.Proto),
			fake.LinkSetVfSpoofchk(pf, i, s.Spoofchk),
			fake.LinkSetVfTrust(pf, i, s.Trust == 1),
			fake.LinkSetVfState(pf, i, s.LinkState),
			fake.LinkSetVfRate(pf, i, int(s.MinRate), int(s.MaxRate)),
		)
		if errs != nil {
			return nil, fmt.Errorf("restore VF %d state: %w", i, errs)
		}
	}
	fake.ResetCalls()
	return h, nil
}

// VFStates reads the PF's VF admin state.
func (h *pfHandle) VFStates() []vfState {
	out := make([]vfState, h.vfs)
	for i := range out {
		v, _ := h.fake.VF(h.pfName, i)
		out[i] = stateOf(v)
	}
	return out
}

func (h *pfHandle) save() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := json.Marshal(h.VFStates())
	if err != nil {
		return err
	}
	tmp := h.file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, h.file)
}

func (h *pfHandle) isPF(l netlink.Link) bool { return l != nil && l.Attrs().Name == h.pfName }

func (h *pfHandle) LinkByName(name string) (netlink.Link, error) {
	if name == h.pfName {
		return h.fake.LinkByName(name)
	}
	return h.Real.LinkByName(name)
}

func (h *pfHandle) LinkList() ([]netlink.Link, error) {
	ls, err := h.Real.LinkList()
	if err != nil {
		return nil, err
	}
	pf, err := h.fake.LinkByName(h.pfName)
	if err != nil {
		return nil, err
	}
	return append(ls, pf), nil
}

func (h *pfHandle) LinkByIndex(index int) (netlink.Link, error) {
	if pf, err := h.fake.LinkByName(h.pfName); err == nil && pf.Attrs().Index == index {
		return pf, nil
	}
	return h.Real.LinkByIndex(index)
}

func (h *pfHandle) LinkSetUp(l netlink.Link) error {
	if h.isPF(l) {
		return h.fake.LinkSetUp(l)
	}
	return h.Real.LinkSetUp(l)
}

func (h *pfHandle) LinkSetDown(l netlink.Link) error {
	if h.isPF(l) {
		return h.fake.LinkSetDown(l)
	}
	return h.Real.LinkSetDown(l)
}

func (h *pfHandle) after(err error) error {
	if err != nil {
		return err
	}
	return h.save()
}

func (h *pfHandle) LinkSetVfHardwareAddr(l netlink.Link, vf int, hw net.HardwareAddr) error {
	return h.after(h.fake.LinkSetVfHardwareAddr(l, vf, hw))
}

func (h *pfHandle) LinkSetVfVlanQosProto(l netlink.Link, vf, vlan, qos, proto int) error {
	return h.after(h.fake.LinkSetVfVlanQosProto(l, vf, vlan, qos, proto))
}

func (h *pfHandle) LinkSetVfSpoofchk(l netlink.Link, vf int, check bool) error {
	return h.after(h.fake.LinkSetVfSpoofchk(l, vf, check))
}

func (h *pfHandle) LinkSetVfTrust(l netlink.Link, vf int, state bool) error {
	return h.after(h.fake.LinkSetVfTrust(l, vf, state))
}

func (h *pfHandle) LinkSetVfState(l netlink.Link, vf int, state uint32) error {
	return h.after(h.fake.LinkSetVfState(l, vf, state))
}

func (h *pfHandle) LinkSetVfRate(l netlink.Link, vf, minRate, maxRate int) error {
	return h.after(h.fake.LinkSetVfRate(l, vf, minRate, maxRate))
}

func (h *pfHandle) LinkSetVfGUID(l netlink.Link, vf int, guid net.HardwareAddr, guidType int) error {
	return h.after(h.fake.LinkSetVfGUID(l, vf, guid, guidType))
}

func (h *pfHandle) VFGUIDs(pf netlink.Link) ([]nlink.VFGUID, error) { return h.fake.VFGUIDs(pf) }

func (h *pfHandle) RdmaLinkByName(name string) (*netlink.RdmaLink, error) {
	return h.fake.RdmaLinkByName(name)
}

func (h *pfHandle) RdmaLinkSetNsFd(l *netlink.RdmaLink, fd uint32) error {
	return h.fake.RdmaLinkSetNsFd(l, fd)
}

func (h *pfHandle) RdmaSystemGetNetnsMode() (string, error) { return h.fake.RdmaSystemGetNetnsMode() }

func (h *pfHandle) DevLinkGetDeviceByName(bus, device string) (*netlink.DevlinkDevice, error) {
	return h.fake.DevLinkGetDeviceByName(bus, device)
}

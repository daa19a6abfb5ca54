package nlinktest

// The link requests: lookups, the list dump, and the changes the driver
// makes to a link (state, MTU, name, MAC, netns, flags, alias).

import (
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func (f *Fake) LinkByName(name string) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("LinkByName", nil, name); err != nil {
		return nil, err
	}
	d, err := f.byName(name)
	if err != nil {
		return nil, err
	}
	return cloneLink(d), nil
}

func (f *Fake) LinkByIndex(index int) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("LinkByIndex", nil, index); err != nil {
		return nil, err
	}
	for _, d := range f.links {
		if d.Index == index {
			return cloneLink(d), nil
		}
	}
	return nil, notFound(fmt.Sprintf("link index %d", index))
}

func (f *Fake) LinkList() ([]netlink.Link, error) {
	return nlink.RetryDump("link", f.linkListOnce)
}

func (f *Fake) linkListOnce() ([]netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("LinkList", nil); err != nil {
		return nil, err
	}
	out := make([]netlink.Link, 0, len(f.links))
	for _, d := range f.links {
		out = append(out, cloneLink(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Index < out[j].Attrs().Index })
	if f.interrupted("LinkList") {
		return partial(out)
	}
	return out, nil
}

func (f *Fake) LinkSetUp(l netlink.Link) error {
	return f.mutate("LinkSetUp", l, nil, func(d *netlink.Device) error {
		d.Flags |= net.FlagUp
		d.OperState = netlink.OperUp
		return nil
	})
}

func (f *Fake) LinkSetDown(l netlink.Link) error {
	return f.mutate("LinkSetDown", l, nil, func(d *netlink.Device) error {
		d.Flags &^= net.FlagUp
		d.OperState = netlink.OperDown
		return nil
	})
}

func (f *Fake) LinkSetMTU(l netlink.Link, mtu int) error {
	return f.mutate("LinkSetMTU", l, []any{mtu}, func(d *netlink.Device) error {
		d.MTU = mtu
		return nil
	})
}

func (f *Fake) LinkSetName(l netlink.Link, name string) error {
	return f.mutate("LinkSetName", l, []any{name}, func(d *netlink.Device) error {
		if _, taken := f.links[name]; taken && name != d.Name {
			return unix.EEXIST
		}
		delete(f.links, d.Name)
		d.Name = name
		f.links[name] = d
		return nil
	})
}

func (f *Fake) LinkSetHardwareAddr(l netlink.Link, hw net.HardwareAddr) error {
	return f.mutate("LinkSetHardwareAddr", l, []any{hw}, func(d *netlink.Device) error {
		d.HardwareAddr = append(net.HardwareAddr(nil), hw...)
		return nil
	})
}

// LinkSetNsFd removes the link from the fake (it left this namespace).
func (f *Fake) LinkSetNsFd(l netlink.Link, fd int) error {
	return f.mutate("LinkSetNsFd", l, []any{fd}, func(d *netlink.Device) error {
		delete(f.links, d.Name)
		return nil
	})
}

func (f *Fake) mutate(method string, l netlink.Link, args []any, fn func(d *netlink.Device) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(method, l, args...); err != nil {
		return err
	}
	d, err := f.target(l)
	if err != nil {
		return err
	}
	return fn(d)
}

func (f *Fake) mutateVF(method string, l netlink.Link, vf int, args []any, fn func(v *netlink.VfInfo)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(method, l, append([]any{vf}, args...)...); err != nil {
		return err
	}
	v, err := f.vf(l, vf)
	if err != nil {
		return err
	}
	fn(v)
	return nil
}

// setRawFlag sets or clears one IFF_* flag in the link's RawFlags, where
// the kernel reports promisc, allmulti and noarp (netlink.LinkAttrs.Promisc
// and Allmulti are counters, not these flags).
func (f *Fake) setRawFlag(method string, l netlink.Link, flag uint32, on bool) error {
	return f.mutate(method, l, nil, func(d *netlink.Device) error {
		if on {
			d.RawFlags |= flag
		} else {
			d.RawFlags &^= flag
		}
		return nil
	})
}

func (f *Fake) SetPromiscOn(l netlink.Link) error {
	return f.setRawFlag("SetPromiscOn", l, unix.IFF_PROMISC, true)
}

func (f *Fake) SetPromiscOff(l netlink.Link) error {
	return f.setRawFlag("SetPromiscOff", l, unix.IFF_PROMISC, false)
}

func (f *Fake) LinkSetAllmulticastOn(l netlink.Link) error {
	return f.setRawFlag("LinkSetAllmulticastOn", l, unix.IFF_ALLMULTI, true)
}

func (f *Fake) LinkSetAllmulticastOff(l netlink.Link) error {
	return f.setRawFlag("LinkSetAllmulticastOff", l, unix.IFF_ALLMULTI, false)
}

// LinkSetARPOn clears IFF_NOARP.
func (f *Fake) LinkSetARPOn(l netlink.Link) error {
	return f.setRawFlag("LinkSetARPOn", l, unix.IFF_NOARP, false)
}

// LinkSetARPOff sets IFF_NOARP.
func (f *Fake) LinkSetARPOff(l netlink.Link) error {
	return f.setRawFlag("LinkSetARPOff", l, unix.IFF_NOARP, true)
}

func (f *Fake) LinkSetTxQLen(l netlink.Link, qlen int) error {
	return f.mutate("LinkSetTxQLen", l, []any{qlen}, func(d *netlink.Device) error {
		d.TxQLen = qlen
		return nil
	})
}

func (f *Fake) LinkSetGroup(l netlink.Link, group int) error {
	return f.mutate("LinkSetGroup", l, []any{group}, func(d *netlink.Device) error {
		d.Group = uint32(group)
		return nil
	})
}

func (f *Fake) LinkSetAlias(l netlink.Link, alias string) error {
	return f.mutate("LinkSetAlias", l, []any{alias}, func(d *netlink.Device) error {
		d.Alias = alias
		return nil
	})
}

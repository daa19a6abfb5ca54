package netattach

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// hostFlags is what the tests compare: the flags as the kernel reports
// them in the ifinfomsg, the alias, the transmit queue length and the
// device group, read without flagsOf.
type hostFlags struct {
	Promisc, AllMulti, NoARP bool
	Alias                    string
	TxQLen                   int
	Group                    uint32
}

func hostFlagsOf(l netlink.Link) hostFlags {
	a := l.Attrs()
	return hostFlags{
		Promisc:  a.RawFlags&unix.IFF_PROMISC != 0,
		AllMulti: a.RawFlags&unix.IFF_ALLMULTI != 0,
		NoARP:    a.RawFlags&unix.IFF_NOARP != 0,
		Alias:    a.Alias,
		TxQLen:   a.TxQLen,
		Group:    a.Group,
	}
}

// setFlags sets f on l through h, as a process with NET_ADMIN in h's
// netns would ("ip link set ... promisc on allmulticast on arp off alias
// ... txqueuelen ... group ..."); a TxQLen of 0 keeps the link's.
func setFlags(t *testing.T, h nlink.Handle, l netlink.Link, f hostFlags) {
	t.Helper()
	on := func(b bool, yes, no func(netlink.Link) error) error {
		if b {
			return yes(l)
		}
		return no(l)
	}
	err := errors.Join(
		on(f.Promisc, h.SetPromiscOn, h.SetPromiscOff),
		on(f.AllMulti, h.LinkSetAllmulticastOn, h.LinkSetAllmulticastOff),
		on(f.NoARP, h.LinkSetARPOff, h.LinkSetARPOn),
		h.LinkSetAlias(l, f.Alias),
		h.LinkSetGroup(l, int(f.Group)),
	)
	if f.TxQLen > 0 {
		err = errors.Join(err, h.LinkSetTxQLen(l, f.TxQLen))
	} else {
		f.TxQLen = l.Attrs().TxQLen
	}
	if err != nil {
		t.Fatalf("set flags %+v on %s: %v", f, l.Attrs().Name, err)
	}
	if got := hostFlagsOf(mustLink(t, h, l.Attrs().Name)); got != f {
		t.Fatalf("%s after setting its flags: %+v, want %+v", l.Attrs().Name, got, f)
	}
}

// TestDetachRestoresLinkFlags: a pod with NET_ADMIN turns on promiscuous
// and all-multicast mode, turns ARP off, sets an alias, a transmit queue
// length and a device group on its netdev;
// the kernel keeps all of them on the device when it leaves the netns.
// Detach puts back the ones recorded before the attach, or, for an
// original recorded without them (an earlier release's record), the
// defaults of a host VF netdev (the queue length, whose default is the
// driver's, then stays as the pod left it). Also when the device is found back on
// the host (no pod netns known: the restart and gone-netns paths).
func TestDetachRestoresLinkFlags(t *testing.T) {
	requireRoot(t)
	tenant := hostFlags{Promisc: true, AllMulti: true, NoARP: true, Alias: "tenant was here", TxQLen: 42, Group: 7}
	const vethQLen = 1000 // a new veth's transmit queue length
	for _, tc := range []struct {
		name      string
		host      hostFlags // the host link's flags before the attach
		forget    bool      // the record holds no flags
		fromHost  bool      // the pod changed it, then it is back on the host unrestored
		wantAfter hostFlags
	}{
		{name: "recorded", host: hostFlags{AllMulti: true, Alias: "pool a", TxQLen: 500, Group: 3}, wantAfter: hostFlags{AllMulti: true, Alias: "pool a", TxQLen: 500, Group: 3}},
		{name: "recorded defaults", host: hostFlags{TxQLen: vethQLen}, wantAfter: hostFlags{TxQLen: vethQLen}},
		{name: "not recorded", host: hostFlags{AllMulti: true, Alias: "pool a", TxQLen: 500, Group: 3}, forget: true, wantAfter: hostFlags{TxQLen: tenant.TxQLen}},
		{name: "back on the host", host: hostFlags{Alias: "pool a", TxQLen: vethQLen}, fromHost: true, wantAfter: hostFlags{Alias: "pool a", TxQLen: vethQLen}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pfx, host, nsPath, pod := newPodBed(t)
			hl := newVeth(t, host, pfx+"vf", pfx+"vfp", "02:aa:00:00:00:51", 1500)
			setFlags(t, host, hl, tc.host)
			if err := host.LinkSetUp(hl); err != nil {
				t.Fatal(err)
			}
			before := stateOf(mustLink(t, host, pfx+"vf"))
			spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1", MTU: 1400}
			orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
			if err != nil {
				t.Fatal(err)
			}
			want := LinkFlags{Known: true, Promisc: tc.host.Promisc, AllMulti: tc.host.AllMulti, NoARP: tc.host.NoARP, Alias: tc.host.Alias, TxQLen: tc.host.TxQLen, Group: tc.host.Group}
			if orig.Flags != want {
				t.Fatalf("Attach recorded flags %+v, want %+v", orig.Flags, want)
			}
			setFlags(t, pod, mustLink(t, pod, "net1"), tenant)
			if tc.forget {
				orig.Flags = LinkFlags{}
			}
			nsArg := nsPath
			if tc.fromHost {
				// Back on the host under its pod name, changed, with no
				// netns to look in (as after a restart).
				pl := mustLink(t, pod, "net1")
				if err := pod.LinkSetDown(pl); err != nil {
					t.Fatal(err)
				}
				moveToHostNs(t, pod, pl)
				t.Cleanup(func() { delLink(host, "net1") })
				if got := hostFlagsOf(mustLink(t, host, "net1")); got != tenant {
					t.Fatalf("the kernel did not keep the pod's flags across the move: %+v", got)
				}
				nsArg = ""
			}

			if err := Detach(ctx, host, nsArg, spec.PodIfName, orig); err != nil {
				t.Fatal(err)
			}
			back := mustLink(t, host, spec.HostIfName)
			if got := hostFlagsOf(back); got != tc.wantAfter {
				t.Errorf("flags after detach: %+v, want %+v (the pod set %+v)", got, tc.wantAfter, tenant)
			}
			if got := stateOf(back); got != before {
				t.Errorf("after detach: %+v, want %+v", got, before)
			}
			// A second detach finds it restored and changes nothing.
			if err := Detach(ctx, host, nsArg, spec.PodIfName, orig); err != nil {
				t.Fatalf("second detach: %v", err)
			}
		})
	}
}

// moveToHostNs moves l from the pod's netns to this process's, as the
// kernel does with a physical netdev when the pod's netns goes.
func moveToHostNs(t *testing.T, pod nlink.Handle, l netlink.Link) {
	t.Helper()
	fd, err := unix.Open(HostNetnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := pod.LinkSetNsFd(l, fd); err != nil {
		t.Fatalf("move %s to the host: %v", l.Attrs().Name, err)
	}
}

// TestRestoreFlags: each flag and the alias is set only when it differs,
// a failure names the flag, the link and the cause and does not stop the
// others, and an unrecorded original means the host defaults.
func TestRestoreFlags(t *testing.T) {
	poisoned := uint32(unix.IFF_PROMISC | unix.IFF_ALLMULTI | unix.IFF_NOARP)
	for _, tc := range []struct {
		name      string
		raw       uint32
		alias     string
		qlen      int
		group     uint32
		want      LinkFlags
		fail      string // method that fails
		wantCalls []string
		wantErr   string
	}{
		{name: "all as recorded", raw: unix.IFF_ALLMULTI, alias: "a", want: LinkFlags{Known: true, AllMulti: true, Alias: "a"}},
		{name: "defaults already", want: LinkFlags{}},
		{
			name: "all changed", raw: poisoned, alias: "x", want: LinkFlags{Known: true, Alias: "a"},
			wantCalls: []string{"SetPromiscOff(vf0)", "LinkSetAllmulticastOff(vf0)", "LinkSetARPOn(vf0)", "LinkSetAlias(vf0, a)"},
		},
		{
			name: "not recorded", raw: poisoned, alias: "x", want: LinkFlags{},
			wantCalls: []string{"SetPromiscOff(vf0)", "LinkSetAllmulticastOff(vf0)", "LinkSetARPOn(vf0)", "LinkSetAlias(vf0)"}, // alias ""
		},
		{
			name: "recorded on", raw: 0, want: LinkFlags{Known: true, Promisc: true, AllMulti: true, NoARP: true},
			wantCalls: []string{"SetPromiscOn(vf0)", "LinkSetAllmulticastOn(vf0)", "LinkSetARPOff(vf0)"},
		},
		{
			name: "queue and group changed", qlen: 42, group: 7, want: LinkFlags{Known: true, TxQLen: 1000},
			wantCalls: []string{"LinkSetTxQLen(vf0, 1000)", "LinkSetGroup(vf0, 0)"},
		},
		{
			name: "queue length not recorded", qlen: 42, group: 7, want: LinkFlags{},
			wantCalls: []string{"LinkSetGroup(vf0, 0)"},
		},
		{
			name: "one fails", raw: poisoned, want: LinkFlags{Known: true}, fail: "LinkSetARPOn",
			wantCalls: []string{"SetPromiscOff(vf0)", "LinkSetAllmulticastOff(vf0)", "LinkSetARPOn(vf0)"},
			wantErr:   "restore ARP on of vf0: operation not permitted",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := nlinktest.New()
			l := f.AddLink(netlink.LinkAttrs{Name: "vf0", RawFlags: tc.raw, Alias: tc.alias, TxQLen: tc.qlen, Group: tc.group})
			if tc.fail != "" {
				f.FailMethod(tc.fail, "", unix.EPERM)
			}
			errs := restoreFlags(context.Background(), f, l, tc.want)
			var calls []string
			for _, c := range f.MutatingCalls() {
				calls = append(calls, c.String())
			}
			if strings.Join(calls, " ") != strings.Join(tc.wantCalls, " ") {
				t.Errorf("calls %q, want %q", calls, tc.wantCalls)
			}
			err := errors.Join(errs...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
			if tc.fail != "" {
				return
			}
			got, _ := f.Link("vf0")
			wantFlags := tc.want
			if !wantFlags.Known {
				wantFlags = hostDefaultFlags()
			}
			if wantFlags.TxQLen == 0 {
				wantFlags.TxQLen = tc.qlen // not recorded: left as it was
			}
			if g := flagsOf(got); g != wantFlags {
				t.Errorf("link after restore: %+v, want %+v", g, wantFlags)
			}
		})
	}
}

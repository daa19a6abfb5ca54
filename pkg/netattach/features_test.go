package netattach

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/pkg/ethtool"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// fakeEthtool is the ethtool seam over one netdev's features, recording
// the sets; the errors make a call fail, keep makes the kernel ignore a set.
type fakeEthtool struct {
	mu       sync.Mutex
	f        ethtool.Features
	names    []string
	sets     [][ethtool.MaxWords]uint32 // the valid masks of SetFeatures
	getErr   error
	setErr   error
	keep     bool
	opened   int
	openFail error

	rings                 ethtool.Rings
	ringsErr, setRingsErr error
	chans                 ethtool.Channels
	chansErr, setChansErr error
	ringSets, chanSets    int
}

func (e *fakeEthtool) Rings(string, int) (ethtool.Rings, error) { return e.rings, e.ringsErr }
func (e *fakeEthtool) SetRings(_ string, _ int, r ethtool.Rings) error {
	e.ringSets++
	if e.setRingsErr != nil {
		return e.setRingsErr
	}
	e.rings = r
	return nil
}
func (e *fakeEthtool) Channels(string, int) (ethtool.Channels, error) { return e.chans, e.chansErr }
func (e *fakeEthtool) SetChannels(_ string, _ int, ch ethtool.Channels) error {
	e.chanSets++
	if e.setChansErr != nil {
		return e.setChansErr
	}
	e.chans = ch
	return nil
}

func (e *fakeEthtool) open() (ethtool.Handle, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opened++
	if e.openFail != nil {
		return nil, e.openFail
	}
	return e, nil
}

func (e *fakeEthtool) Features(string, int) (ethtool.Features, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.f, e.getErr
}

func (e *fakeEthtool) SetFeatures(_ string, _ int, valid [ethtool.MaxWords]uint32, want ethtool.Features) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sets = append(e.sets, valid)
	if e.setErr != nil {
		return e.setErr
	}
	if e.keep {
		return nil
	}
	for i := range valid {
		e.f.Requested[i] = e.f.Requested[i]&^valid[i] | want.Requested[i]&valid[i]
	}
	return nil
}

func (e *fakeEthtool) FeatureNames(string, int) ([]string, error) { return e.names, nil }
func (e *fakeEthtool) Close()                                     {}

// TestRestoreFeatures: only the changeable features whose requested
// state differs are set, in one call; nothing is set when none differs
// or nothing was recorded; a device numbering its features otherwise is
// not touched; every failure names the features, the link and the cause.
func TestRestoreFeatures(t *testing.T) {
	names := []string{"tx-checksum-ip-generic", "rx-gro", "tx-tcp-segmentation", "highdma"}
	const csum, gro, tso, highdma = 1 << 0, 1 << 1, 1 << 2, 1 << 3
	rec := Features{Count: 4, Changeable: [4]uint32{csum | gro | tso}, Requested: [4]uint32{csum | gro | highdma}}
	cause := errors.New("device busy")
	for _, tc := range []struct {
		name      string
		want      Features
		have      ethtool.Features
		getErr    error
		setErr    error
		keep      bool
		wantSet   []uint32 // the valid masks set, word 0
		wantAfter uint32   // requested word 0 after
		wantErr   []string
	}{
		{name: "not recorded", want: Features{}, have: ethtool.Features{Count: 4, Changeable: rec.Changeable}, wantAfter: 0},
		{name: "as recorded", want: rec, have: ethtool.Features{Count: 4, Changeable: rec.Changeable, Requested: rec.Requested}, wantAfter: rec.Requested[0]},
		{
			name: "pod turned offloads off and tso on", want: rec,
			have:    ethtool.Features{Count: 4, Changeable: rec.Changeable, Requested: [4]uint32{tso | highdma}},
			wantSet: []uint32{csum | gro | tso}, wantAfter: csum | gro | highdma,
		},
		{
			// highdma is fixed: never set, whatever it says now.
			name: "fixed features left", want: rec,
			have:    ethtool.Features{Count: 4, Changeable: rec.Changeable, Requested: [4]uint32{csum}},
			wantSet: []uint32{gro}, wantAfter: csum | gro,
		},
		{
			name: "another feature count", want: rec,
			have: ethtool.Features{Count: 5, Changeable: rec.Changeable}, wantErr: []string{"eth9", "5 features now", "record 4"},
		},
		{
			name: "read fails", want: rec, have: ethtool.Features{Count: 4}, getErr: cause,
			wantErr: []string{"offload features of eth9", "device busy"},
		},
		{
			name: "set fails", want: rec, have: ethtool.Features{Count: 4, Changeable: rec.Changeable, Requested: [4]uint32{csum}},
			setErr: cause, wantSet: []uint32{gro}, wantAfter: csum,
			wantErr: []string{"rx-gro on", "eth9", "device busy"},
		},
		{
			name: "kernel keeps them", want: rec, have: ethtool.Features{Count: 4, Changeable: rec.Changeable, Requested: [4]uint32{tso}},
			keep: true, wantSet: []uint32{csum | gro | tso}, wantAfter: tso,
			wantErr: []string{"eth9", "kept tx-checksum-ip-generic on, rx-gro on, tx-tcp-segmentation off"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := &fakeEthtool{f: tc.have, names: names, getErr: tc.getErr, setErr: tc.setErr, keep: tc.keep}
			a := attacher{openEthtool: fe.open}
			l := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth9", Index: 9}}
			err := a.restoreFeatures(context.Background(), l, tc.want)
			if len(tc.wantErr) == 0 && err != nil {
				t.Fatalf("restore: %v", err)
			}
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("restore: error %v, want it to say %q", err, w)
				}
			}
			var sets []uint32
			for _, s := range fe.sets {
				sets = append(sets, s[0])
			}
			if !slices.Equal(sets, tc.wantSet) {
				t.Errorf("sets %x, want %x", sets, tc.wantSet)
			}
			if fe.getErr == nil && fe.f.Requested[0] != tc.wantAfter {
				t.Errorf("requested after: %x, want %x", fe.f.Requested[0], tc.wantAfter)
			}
			// A second restore sets nothing more.
			n := len(fe.sets)
			_ = a.restoreFeatures(context.Background(), l, tc.want)
			if tc.setErr == nil && !tc.keep && len(fe.sets) != n {
				t.Errorf("a second restore set features again: %x", fe.sets[n:])
			}
		})
	}
}

// TestReadFeatures: a netdev that does not report its features has none
// recorded and no error; any other failure is an error naming the link.
func TestReadFeatures(t *testing.T) {
	l := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth9", Index: 9}}
	full := ethtool.Features{Count: 40, Changeable: [4]uint32{7, 1}, Requested: [4]uint32{5, 1}, Active: [4]uint32{4}}
	for _, tc := range []struct {
		name     string
		fe       *fakeEthtool
		want     Features
		wantErr  string
		noHandle bool
	}{
		{name: "read", fe: &fakeEthtool{f: full}, want: Features{Count: 40, Changeable: full.Changeable, Requested: full.Requested}},
		{name: "unsupported", fe: &fakeEthtool{f: full, getErr: fmt.Errorf("count: %w", ethtool.ErrUnsupported)}},
		{name: "fails", fe: &fakeEthtool{getErr: errors.New("no such device")}, wantErr: "offload features of eth9: no such device"},
		{name: "cannot open", fe: &fakeEthtool{openFail: errors.New("too many files")}, wantErr: "offload features of eth9: too many files"},
		{name: "no seam", fe: &fakeEthtool{f: full}, noHandle: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := attacher{openEthtool: tc.fe.open}
			if tc.noHandle {
				a.openEthtool = nil
			}
			got, err := a.readFeatures(context.Background(), l)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("read %+v, want %+v", got, tc.want)
			}
		})
	}
}

// countingEthtool counts the SetFeatures calls of a real handle, and
// fails them with fail when set.
type countingEthtool struct {
	ethtool.Handle
	sets *int
	fail error
}

func (c countingEthtool) SetFeatures(name string, index int, valid [ethtool.MaxWords]uint32, want ethtool.Features) error {
	*c.sets++
	if c.fail != nil {
		return c.fail
	}
	return c.Handle.SetFeatures(name, index, valid, want)
}

// flipFeatures turns the features named over (on to off, off to on) on
// the link name in the netns at nsPath, as "ethtool -K" in a pod with
// NET_ADMIN would, skipping those the link cannot change; it returns the
// features as they are then and the names flipped.
func flipFeatures(t *testing.T, nsPath, name string, which ...string) (ethtool.Features, []string) {
	t.Helper()
	c, err := ethtool.OpenAt(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := podHandle(t, nsPath)
	l := mustLink(t, h, name)
	f, err := c.Features(name, l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	names, err := c.FeatureNames(name, l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	var valid [ethtool.MaxWords]uint32
	var flipped []string
	for _, w := range which {
		b := slices.Index(names, w)
		if b < 0 || f.Changeable[b/32]&(1<<(b%32)) == 0 {
			continue
		}
		valid[b/32] |= 1 << (b % 32)
		flipped = append(flipped, w)
	}
	if len(flipped) == 0 {
		t.Fatalf("%s can change none of %v", name, which)
	}
	want := f
	for i := range want.Requested {
		want.Requested[i] ^= valid[i]
	}
	if err := c.SetFeatures(name, l.Attrs().Index, valid, want); err != nil {
		t.Fatal(err)
	}
	got, err := c.Features(name, l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requested != want.Requested {
		t.Fatalf("the pod's features on %s: requested %x, want %x", name, got.Requested, want.Requested)
	}
	return got, flipped
}

// hostFeatures reads the features of the host link name.
func hostFeatures(t *testing.T, host nlink.Handle, name string) ethtool.Features {
	t.Helper()
	c, err := ethtool.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := c.Features(name, mustLink(t, host, name).Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestDetachRestoresFeatures: a pod with NET_ADMIN turns tx-checksumming,
// GRO and TSO over on its netdev (a veth here); the kernel keeps them on
// the device when it leaves the netns. Detach puts back what Attach
// recorded, and a second detach sets nothing; a record without features
// (an earlier release's) leaves them as the pod left them; a failing
// restore is named in the error and the link flags, name and state are
// restored all the same. Also when the device is found back on the host,
// and when the Original was read before and the move is AttachRecorded's
// (as the NRI plugin does it).
func TestDetachRestoresFeatures(t *testing.T) {
	requireRoot(t)
	flip := []string{"tx-checksum-ip-generic", "rx-gro", "tx-tcp-segmentation"}
	for _, tc := range []struct {
		name     string
		forget   bool  // the record holds no features
		fromHost bool  // back on the host unrestored, no netns known
		fail     error // the restore's SetFeatures fails
		readOrig bool  // ReadOriginal, then AttachRecorded
	}{
		{name: "recorded"},
		{name: "read before, attached by the hook's path", readOrig: true},
		{name: "not recorded", forget: true},
		{name: "back on the host", fromHost: true},
		{name: "restore fails", fail: errors.New("injected")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pfx, host, nsPath, pod := newPodBed(t)
			hl := newVeth(t, host, pfx+"vf", pfx+"vfp", "02:aa:00:00:00:52", 1500)
			if err := host.LinkSetUp(hl); err != nil {
				t.Fatal(err)
			}
			before := stateOf(mustLink(t, host, pfx+"vf"))
			beforeF := hostFeatures(t, host, pfx+"vf")
			sets := 0
			a := kernelAttacher()
			a.openEthtool = func() (ethtool.Handle, error) {
				c, err := ethtool.Open()
				if err != nil {
					return nil, err
				}
				return countingEthtool{Handle: c, sets: &sets, fail: tc.fail}, nil
			}
			spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1"}
			var orig Original
			var err error
			if tc.readOrig {
				if orig, err = ReadOriginal(ctx, host, spec.HostIfName, ""); err == nil {
					err = AttachRecorded(ctx, host, nsPath, spec, orig.Identity)
				}
			} else {
				orig, err = a.attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
			}
			if err != nil {
				t.Fatal(err)
			}
			if orig.Features.Count != beforeF.Count || orig.Features.Requested != beforeF.Requested || orig.Features.Changeable != beforeF.Changeable {
				t.Fatalf("Attach recorded %+v, the host had %+v", orig.Features, beforeF)
			}
			podF, flipped := flipFeatures(t, nsPath, "net1", flip...)
			t.Logf("the pod flipped %v", flipped)
			if err := pod.LinkSetAlias(mustLink(t, pod, "net1"), "tenant"); err != nil {
				t.Fatal(err)
			}
			if tc.forget {
				orig.Features = Features{}
			}
			nsArg := nsPath
			if tc.fromHost {
				pl := mustLink(t, pod, "net1")
				if err := pod.LinkSetDown(pl); err != nil {
					t.Fatal(err)
				}
				moveToHostNs(t, pod, pl)
				t.Cleanup(func() { delLink(host, "net1") })
				if got := hostFeatures(t, host, "net1"); got.Requested != podF.Requested {
					t.Fatalf("the kernel did not keep the pod's features across the move: %x, the pod's %x", got.Requested, podF.Requested)
				}
				nsArg = ""
			}

			err = a.detach(ctx, host, nsArg, spec.PodIfName, orig)
			switch {
			case tc.fail != nil:
				for _, w := range []string{"injected", "offload features", flipped[0], spec.HostIfName} {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("detach: %v, want an error saying %q", err, w)
					}
				}
			case err != nil:
				t.Fatal(err)
			}
			back := mustLink(t, host, spec.HostIfName)
			if got := stateOf(back); got != before {
				t.Errorf("after detach: %+v, want %+v", got, before)
			}
			if back.Attrs().Alias != "" {
				t.Errorf("alias after detach: %q, want none", back.Attrs().Alias)
			}
			got := hostFeatures(t, host, spec.HostIfName)
			wantReq := beforeF.Requested
			if tc.forget || tc.fail != nil {
				wantReq = podF.Requested
			}
			if got.Requested != wantReq {
				t.Errorf("requested features after detach: %x, want %x (before the attach %x, the pod's %x)", got.Requested, wantReq, beforeF.Requested, podF.Requested)
			}
			wantSets := 1
			if tc.forget {
				wantSets = 0
			}
			if sets != wantSets {
				t.Errorf("%d sets of features, want %d", sets, wantSets)
			}
			if tc.fail != nil {
				return
			}
			// A second detach finds it restored and changes nothing.
			if err := a.detach(ctx, host, nsArg, spec.PodIfName, orig); err != nil {
				t.Fatalf("second detach: %v", err)
			}
			if sets != wantSets {
				t.Errorf("the second detach set features (%d sets)", sets)
			}
		})
	}
}

// TestRestoreRingsChannels: ring sizes and channel counts are set back
// only when they differ, keeping the driver's limits; not recorded means
// left alone; a failure of one names the setting, the link and the
// cause and does not stop the other.
func TestRestoreRingsChannels(t *testing.T) {
	rings := ethtool.Rings{RX: 256, TX: 256, MaxRX: 4096, MaxTX: 4096}
	chans := ethtool.Channels{Combined: 4, MaxCombined: 8}
	recR := Rings{Known: true, RX: 256, TX: 256}
	recC := Channels{Known: true, Combined: 4}
	cause := errors.New("device busy")
	for _, tc := range []struct {
		name                  string
		orig                  Original
		fe                    *fakeEthtool
		wantRingSets, wantChS int
		wantErr               []string
	}{
		{name: "not recorded", orig: Original{}, fe: &fakeEthtool{rings: ethtool.Rings{RX: 64}, chans: ethtool.Channels{Combined: 1}}},
		{name: "as recorded", orig: Original{Rings: recR, Channels: recC}, fe: &fakeEthtool{rings: rings, chans: chans}},
		{name: "both changed", orig: Original{Rings: recR, Channels: recC},
			fe: &fakeEthtool{rings: ethtool.Rings{RX: 64, TX: 128, MaxRX: 4096, MaxTX: 4096}, chans: ethtool.Channels{Combined: 1, MaxCombined: 8}}, wantRingSets: 1, wantChS: 1},
		{name: "rings fail, channels restored", orig: Original{Rings: recR, Channels: recC},
			fe:           &fakeEthtool{rings: ethtool.Rings{RX: 64, TX: 256, MaxRX: 4096, MaxTX: 4096}, setRingsErr: cause, chans: ethtool.Channels{Combined: 1, MaxCombined: 8}},
			wantRingSets: 1, wantChS: 1, wantErr: []string{"ring sizes rx 256", "eth9", "it has rx 64", "device busy"}},
		{name: "channels unreadable", orig: Original{Rings: recR, Channels: recC},
			fe:      &fakeEthtool{rings: rings, chansErr: fmt.Errorf("read the channel counts of eth9: %w", cause)},
			wantErr: []string{"channel counts of eth9", "device busy"}},
		{name: "channels fail", orig: Original{Channels: recC},
			fe:      &fakeEthtool{chans: ethtool.Channels{Combined: 2, MaxCombined: 8}, setChansErr: cause},
			wantChS: 1, wantErr: []string{"channel counts rx 0, tx 0, other 0, combined 4 of eth9", "combined 2", "device busy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := attacher{openEthtool: tc.fe.open}
			l := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth9", Index: 9}}
			err := errors.Join(a.restoreRingsChannels(context.Background(), l, tc.orig)...)
			if len(tc.wantErr) == 0 && err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want it to say %q", err, w)
				}
			}
			if tc.fe.ringSets != tc.wantRingSets || tc.fe.chanSets != tc.wantChS {
				t.Errorf("%d ring and %d channel sets, want %d and %d", tc.fe.ringSets, tc.fe.chanSets, tc.wantRingSets, tc.wantChS)
			}
			if tc.wantRingSets > 0 && tc.fe.setRingsErr == nil {
				if got := tc.fe.rings; got.RX != recR.RX || got.TX != recR.TX || got.MaxRX != 4096 {
					t.Errorf("rings after: %+v, want the recorded sizes with the driver's limits", got)
				}
			}
			if tc.wantChS > 0 && tc.fe.setChansErr == nil {
				if got := tc.fe.chans; got.Combined != recC.Combined || got.MaxCombined != 8 {
					t.Errorf("channels after: %+v, want the recorded counts with the driver's limits", got)
				}
			}
			if err == nil {
				rs, cs := tc.fe.ringSets, tc.fe.chanSets
				if errs := a.restoreRingsChannels(context.Background(), l, tc.orig); len(errs) != 0 || tc.fe.ringSets != rs || tc.fe.chanSets != cs {
					t.Errorf("a second restore: %v, %d ring and %d channel sets more", errs, tc.fe.ringSets-rs, tc.fe.chanSets-cs)
				}
			}
		})
	}
}

// TestDetachRestoresChannels: a pod with NET_ADMIN lowers the channel
// counts of its netdev (a veth with four queues; "ethtool -L"), which
// the kernel keeps on it; Detach sets back those Attach recorded. veth
// has no ring sizes: none are recorded, and none restored.
func TestDetachRestoresChannels(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	pfx, host, nsPath, _ := newPodBed(t)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pfx + "vf", NumTxQueues: 4, NumRxQueues: 4}, PeerName: pfx + "vfp"}
	if err := host.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { delLink(host, pfx+"vf"); delLink(host, pfx+"vfp") })
	spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1"}
	orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
	if err != nil {
		t.Fatal(err)
	}
	if !orig.Channels.Known || orig.Channels.RX != 4 || orig.Channels.TX != 4 || orig.Rings.Known {
		t.Fatalf("Attach recorded channels %+v and rings %+v; want 4 rx and 4 tx channels and no rings", orig.Channels, orig.Rings)
	}
	c, err := ethtool.OpenAt(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pl := mustLink(t, podHandle(t, nsPath), "net1")
	ch, err := c.Channels("net1", pl.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	ch.RX, ch.TX = 1, 2
	if err := c.SetChannels("net1", pl.Attrs().Index, ch); err != nil {
		t.Fatal(err)
	}
	if err := Detach(ctx, host, nsPath, spec.PodIfName, orig); err != nil {
		t.Fatal(err)
	}
	h, err := ethtool.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	got, err := h.Channels(spec.HostIfName, mustLink(t, host, spec.HostIfName).Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	if got.RX != 4 || got.TX != 4 {
		t.Errorf("channels after detach: %+v, want 4 rx and 4 tx as before the attach (the pod set 1 and 2)", got)
	}
}

// TestReadRingsChannels: what the driver does not have is not recorded,
// and no error; any other failure is an error naming the link.
func TestReadRingsChannels(t *testing.T) {
	l := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth9", Index: 9}}
	unsupported := fmt.Errorf("read: %w", ethtool.ErrUnsupported)
	for _, tc := range []struct {
		name    string
		fe      *fakeEthtool
		wantR   Rings
		wantC   Channels
		wantErr string
	}{
		{name: "both", fe: &fakeEthtool{rings: ethtool.Rings{RX: 256, TX: 128, MaxRX: 4096}, chans: ethtool.Channels{Combined: 2, MaxCombined: 8}},
			wantR: Rings{Known: true, RX: 256, TX: 128}, wantC: Channels{Known: true, Combined: 2}},
		{name: "no channels", fe: &fakeEthtool{rings: ethtool.Rings{RX: 256, TX: 128}, chansErr: unsupported}, wantR: Rings{Known: true, RX: 256, TX: 128}},
		{name: "neither", fe: &fakeEthtool{ringsErr: unsupported, chansErr: unsupported}},
		{name: "rings fail", fe: &fakeEthtool{ringsErr: errors.New("read the ring sizes of eth9: no such device")}, wantErr: "ring sizes of eth9: no such device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o Original
			err := attacher{openEthtool: tc.fe.open}.readRingsChannels(context.Background(), l, &o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Rings != tc.wantR || o.Channels != tc.wantC {
				t.Errorf("recorded rings %+v, channels %+v; want %+v, %+v", o.Rings, o.Channels, tc.wantR, tc.wantC)
			}
		})
	}
}

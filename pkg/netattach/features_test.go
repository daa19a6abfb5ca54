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
// restored all the same. Also when the device is found back on the host.
func TestDetachRestoresFeatures(t *testing.T) {
	requireRoot(t)
	flip := []string{"tx-checksum-ip-generic", "rx-gro", "tx-tcp-segmentation"}
	for _, tc := range []struct {
		name     string
		forget   bool  // the record holds no features
		fromHost bool  // back on the host unrestored, no netns known
		fail     error // the restore's SetFeatures fails
	}{
		{name: "recorded"},
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
			orig, err := a.attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
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

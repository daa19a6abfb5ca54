package ethtool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
)

func TestBits(t *testing.T) {
	for _, tc := range []struct {
		in   [MaxWords]uint32
		want []int
	}{
		{want: nil},
		{in: [MaxWords]uint32{1}, want: []int{0}},
		{in: [MaxWords]uint32{0x80000001, 2, 0, 1 << 31}, want: []int{0, 31, 33, 127}},
	} {
		if got := Bits(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Bits(%x) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for n, want := range map[int]int{0: 0, 1: 1, 32: 1, 33: 2, 66: 3, 128: 4} {
		if got := Words(n); got != want {
			t.Errorf("Words(%d) = %d, want %d", n, got, want)
		}
	}
}

// vethBed makes a veth pair in a netns of the test's own and returns a
// Conn in it, the veth's name and ifindex.
func vethBed(t *testing.T) (*Conn, string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates a network namespace and a veth); CI runs it as root")
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	pfx := "e" + hex.EncodeToString(b)
	nsPath := nlinktest.NewNetns(t, pfx+"ns")
	h := nlinktest.HandleAt(t, nsPath)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pfx + "a", NumTxQueues: 4, NumRxQueues: 4}, PeerName: pfx + "b"}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	l, err := h.LinkByName(pfx + "a")
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenAt(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, l.Attrs().Name, l.Attrs().Index
}

func bit(words [MaxWords]uint32, b int) bool { return words[b/32]&(1<<(b%32)) != 0 }

// TestVethFeatures: on a real veth, the features are read, the names
// match the count, turning tx-checksumming, GRO and TSO off (one call
// for all) is read back, and turning them on again restores the read
// features exactly. A name that now names another link is refused.
func TestVethFeatures(t *testing.T) {
	c, name, index := vethBed(t)
	f, err := c.Features(name, index)
	if err != nil {
		t.Fatal(err)
	}
	names, err := c.FeatureNames(name, index)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != f.Count {
		t.Fatalf("%d feature names, %d features", len(names), f.Count)
	}
	var valid [MaxWords]uint32
	var toggled []string
	for _, want := range []string{"tx-checksum-ip-generic", "rx-gro", "tx-tcp-segmentation"} {
		b := slices.Index(names, want)
		if b < 0 || !bit(f.Changeable, b) {
			t.Logf("veth cannot change %s here", want)
			continue
		}
		valid[b/32] |= 1 << (b % 32)
		toggled = append(toggled, want)
	}
	if len(toggled) == 0 {
		t.Fatalf("veth can change none of the features tried; changeable: %v", Bits(f.Changeable))
	}
	t.Logf("toggling %s on veth", strings.Join(toggled, ", "))
	flipped := f
	for i := range flipped.Requested {
		flipped.Requested[i] ^= valid[i]
	}
	if err := c.SetFeatures(name, index, valid, flipped); err != nil {
		t.Fatal(err)
	}
	got, err := c.Features(name, index)
	if err != nil {
		t.Fatal(err)
	}
	if got.Requested != flipped.Requested {
		t.Fatalf("requested after flipping %v: %x, want %x", toggled, got.Requested, flipped.Requested)
	}
	if err := c.SetFeatures(name, index, valid, f); err != nil {
		t.Fatal(err)
	}
	if got, err = c.Features(name, index); err != nil {
		t.Fatal(err)
	}
	if got != f {
		t.Errorf("features after setting them back: %+v, want %+v", got, f)
	}

	if _, err := c.Features(name, index+1000); err == nil || !strings.Contains(err.Error(), "not touching it") {
		t.Errorf("Features with another ifindex: %v, want a refusal", err)
	}
	if err := c.SetFeatures(name, index+1000, valid, flipped); err == nil {
		t.Error("SetFeatures with another ifindex: no error")
	}
	if got, _ = c.Features(name, index); got != f {
		t.Errorf("a refused set changed the features: %+v, want %+v", got, f)
	}
	wrong := flipped
	wrong.Count++
	if err := c.SetFeatures(name, index, valid, wrong); err == nil || !strings.Contains(err.Error(), "features, the record") {
		t.Errorf("SetFeatures with another count: %v, want a refusal", err)
	}
	if _, err := c.Features("nosuchlink0", 1); err == nil || errors.Is(err, ErrUnsupported) {
		t.Errorf("Features of a missing link: %v, want an error that is not ErrUnsupported", err)
	}
}

// TestVethChannels: a veth with four queues reports its channel counts;
// setting fewer is read back and setting them back restores them. Its
// ring sizes, which veth does not have, are ErrUnsupported.
func TestVethChannels(t *testing.T) {
	c, name, index := vethBed(t)
	ch, err := c.Channels(name, index)
	if err != nil {
		t.Fatal(err)
	}
	if ch.MaxRX < 2 || ch.RX == 0 {
		t.Fatalf("veth channels %+v: want a maximum of at least 2 receive channels", ch)
	}
	fewer := ch
	fewer.RX, fewer.TX = 1, 1
	if err := c.SetChannels(name, index, fewer); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Channels(name, index); err != nil || got != fewer {
		t.Fatalf("channels after setting %+v: %+v, %v", fewer, got, err)
	}
	if err := c.SetChannels(name, index, ch); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Channels(name, index); err != nil || got != ch {
		t.Fatalf("channels after setting them back: %+v, %v; want %+v", got, err, ch)
	}
	if err := c.SetChannels(name, index+1000, fewer); err == nil {
		t.Error("SetChannels with another ifindex: no error")
	}
	if _, err := c.Rings(name, index); !errors.Is(err, ErrUnsupported) {
		t.Logf("veth ring sizes: %v (not ErrUnsupported: this kernel's veth has them)", err)
	}
}

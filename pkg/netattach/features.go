package netattach

// The offload features of a netdev ("ethtool -k"), its ring sizes and
// channel counts: recorded on the host before the move, put back at
// detach. A pod with NET_ADMIN can turn
// them on or off in its netns; the kernel keeps them on the device when
// it goes back to the host, and the next pod of the device would get
// them (a device with checksum offload off is slow, one with a feature
// on that the host turned off may be unsafe for the host's use of it).

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/ethtool"
)

// readFeatures reads the offload features of the host link l. A netdev
// or kernel that does not report them (ethtool.ErrUnsupported) has none
// recorded, and no error; any other failure is returned.
func (a attacher) readFeatures(ctx context.Context, l netlink.Link) (Features, error) {
	if a.openEthtool == nil {
		return Features{}, nil
	}
	name, index := l.Attrs().Name, l.Attrs().Index
	h, err := a.openEthtool()
	if err != nil {
		return Features{}, fmt.Errorf("record the offload features of %s: %w", name, err)
	}
	defer h.Close()
	f, err := h.Features(name, index)
	if errors.Is(err, ethtool.ErrUnsupported) {
		klog.FromContext(ctx).V(2).Info("The netdev does not report its offload features; they are not recorded", "link", name, "reason", err.Error())
		return Features{}, nil
	}
	if err != nil {
		return Features{}, fmt.Errorf("record the offload features of %s: %w", name, err)
	}
	return Features{Count: f.Count, Changeable: f.Changeable, Requested: f.Requested}, nil
}

// restoreFeatures puts back on the host link l, which the caller
// identified as the device, the requested state of the offload features
// that want records as changeable and that differ now; nothing is set
// when none does (a second detach changes nothing), nor when want is not
// recorded (Count 0). A device that now numbers its features otherwise
// (another kernel) is not touched: the bits would mean other features.
// The error names the features, the link and the cause.
func (a attacher) restoreFeatures(ctx context.Context, l netlink.Link, want Features) error {
	if want.Count == 0 || a.openEthtool == nil {
		return nil
	}
	name, index := l.Attrs().Name, l.Attrs().Index
	h, err := a.openEthtool()
	if err != nil {
		return fmt.Errorf("restore the offload features of %s: %w", name, err)
	}
	defer h.Close()
	have, err := h.Features(name, index)
	if err != nil {
		return fmt.Errorf("restore the offload features of %s: %w", name, err)
	}
	if have.Count != want.Count {
		return fmt.Errorf("restore the offload features of %s: it has %d features now, the record %d: not restored", name, have.Count, want.Count)
	}
	var valid [ethtool.MaxWords]uint32
	for i := range valid {
		valid[i] = want.Changeable[i] & have.Changeable[i] & (want.Requested[i] ^ have.Requested[i])
	}
	if valid == ([ethtool.MaxWords]uint32{}) {
		return nil
	}
	what := describeFeatures(h, name, index, valid, want.Requested)
	set := ethtool.Features{Count: want.Count, Requested: want.Requested}
	if err := h.SetFeatures(name, index, valid, set); err != nil {
		return fmt.Errorf("restore offload features %s of %s: %w", what, name, err)
	}
	after, err := h.Features(name, index)
	if err != nil {
		return fmt.Errorf("restore offload features %s of %s: read them back: %w", what, name, err)
	}
	var still [ethtool.MaxWords]uint32
	for i := range still {
		still[i] = valid[i] & (after.Requested[i] ^ want.Requested[i])
	}
	if still != ([ethtool.MaxWords]uint32{}) {
		return fmt.Errorf("restore offload features of %s: the kernel kept %s as the pod left them", name, describeFeatures(h, name, index, still, want.Requested))
	}
	klog.FromContext(ctx).V(2).Info("Restored offload features the device came back with changed", "link", name, "features", what)
	return nil
}

// describeFeatures names the features of the bits in which with the
// state on ("rx-gro on, tx-tcp-segmentation off"); a feature whose name
// cannot be read is "feature <bit>".
func describeFeatures(h ethtool.Handle, name string, index int, which, on [ethtool.MaxWords]uint32) string {
	names, _ := h.FeatureNames(name, index)
	var parts []string
	for _, b := range ethtool.Bits(which) {
		n := fmt.Sprintf("feature %d", b)
		if b < len(names) && names[b] != "" {
			n = names[b]
		}
		state := "off"
		if on[b/32]&(1<<(b%32)) != 0 {
			state = "on"
		}
		parts = append(parts, n+" "+state)
	}
	return strings.Join(parts, ", ")
}

// readRingsChannels records the ring sizes and channel counts of the host
// link l into o; those its driver does not have (ethtool.ErrUnsupported)
// are not recorded, and no error.
func (a attacher) readRingsChannels(ctx context.Context, l netlink.Link, o *Original) error {
	if a.openEthtool == nil {
		return nil
	}
	name, index := l.Attrs().Name, l.Attrs().Index
	h, err := a.openEthtool()
	if err != nil {
		return fmt.Errorf("record the ring sizes and channel counts of %s: %w", name, err)
	}
	defer h.Close()
	r, err := h.Rings(name, index)
	switch {
	case errors.Is(err, ethtool.ErrUnsupported):
	case err != nil:
		return fmt.Errorf("record: %w", err)
	default:
		o.Rings = Rings{Known: true, RX: r.RX, RXMini: r.RXMini, RXJumbo: r.RXJumbo, TX: r.TX}
	}
	ch, err := h.Channels(name, index)
	switch {
	case errors.Is(err, ethtool.ErrUnsupported):
	case err != nil:
		return fmt.Errorf("record: %w", err)
	default:
		o.Channels = Channels{Known: true, RX: ch.RX, TX: ch.TX, Other: ch.Other, Combined: ch.Combined}
	}
	klog.FromContext(ctx).V(3).Info("Recorded ring sizes and channel counts", "link", name, "rings", o.Rings, "channels", o.Channels)
	return nil
}

// restoreRingsChannels puts back on the host link l the ring sizes and
// channel counts want records, each only when it differs (a second
// detach sets nothing); each failure is returned, naming the setting,
// the link and the cause, and does not stop the other.
func (a attacher) restoreRingsChannels(ctx context.Context, l netlink.Link, want Original) []error {
	if (!want.Rings.Known && !want.Channels.Known) || a.openEthtool == nil {
		return nil
	}
	name, index := l.Attrs().Name, l.Attrs().Index
	h, err := a.openEthtool()
	if err != nil {
		return []error{fmt.Errorf("restore the ring sizes and channel counts of %s: %w", name, err)}
	}
	defer h.Close()
	log := klog.FromContext(ctx)
	var errs []error
	if w := want.Rings; w.Known {
		have, err := h.Rings(name, index)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("restore: %w", err))
		case have.RX != w.RX || have.RXMini != w.RXMini || have.RXJumbo != w.RXJumbo || have.TX != w.TX:
			set := have
			set.RX, set.RXMini, set.RXJumbo, set.TX = w.RX, w.RXMini, w.RXJumbo, w.TX
			if err := h.SetRings(name, index, set); err != nil {
				errs = append(errs, fmt.Errorf("restore ring sizes rx %d, rx-mini %d, rx-jumbo %d, tx %d of %s (it has rx %d, tx %d): %w",
					w.RX, w.RXMini, w.RXJumbo, w.TX, name, have.RX, have.TX, err))
			} else {
				log.V(2).Info("Restored the ring sizes the device came back with changed", "link", name, "rx", w.RX, "tx", w.TX)
			}
		}
	}
	if w := want.Channels; w.Known {
		have, err := h.Channels(name, index)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("restore: %w", err))
		case have.RX != w.RX || have.TX != w.TX || have.Other != w.Other || have.Combined != w.Combined:
			set := have
			set.RX, set.TX, set.Other, set.Combined = w.RX, w.TX, w.Other, w.Combined
			if err := h.SetChannels(name, index, set); err != nil {
				errs = append(errs, fmt.Errorf("restore channel counts rx %d, tx %d, other %d, combined %d of %s (it has rx %d, tx %d, other %d, combined %d): %w",
					w.RX, w.TX, w.Other, w.Combined, name, have.RX, have.TX, have.Other, have.Combined, err))
			} else {
				log.V(2).Info("Restored the channel counts the device came back with changed", "link", name, "rx", w.RX, "tx", w.TX, "combined", w.Combined)
			}
		}
	}
	return errs
}

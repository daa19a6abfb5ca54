package ethtool

// Ring sizes ("ethtool -g/-G") and channel counts ("ethtool -l/-L"),
// which a pod with NET_ADMIN can change too and the kernel keeps on the
// device. Both are driver operations: a driver without them answers
// EOPNOTSUPP (ErrUnsupported).

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Rings are a netdev's ring sizes (struct ethtool_ringparam): the
// numbers of descriptors in use and the driver's limits.
type Rings struct {
	RX, RXMini, RXJumbo, TX             uint32
	MaxRX, MaxRXMini, MaxRXJumbo, MaxTX uint32
}

// Channels are a netdev's channel counts (struct ethtool_channels): in
// use and the driver's limits.
type Channels struct {
	RX, TX, Other, Combined             uint32
	MaxRX, MaxTX, MaxOther, MaxCombined uint32
}

// Both structs are the command and eight u32: four limits, then four
// counts.
const paramsLen = 36

func (c *Conn) getParams(name string, index int, cmd uint32, what string) ([8]uint32, error) {
	var out [8]uint32
	buf := make([]byte, paramsLen)
	binary.NativeEndian.PutUint32(buf, cmd)
	if _, err := c.ioctl(name, index, buf); err != nil {
		return out, fmt.Errorf("read the %s of %s: %w", what, name, err)
	}
	for i := range out {
		out[i] = binary.NativeEndian.Uint32(buf[4+4*i:])
	}
	return out, nil
}

func (c *Conn) setParams(name string, index int, cmd uint32, what string, v [8]uint32) error {
	buf := make([]byte, paramsLen)
	binary.NativeEndian.PutUint32(buf, cmd)
	for i, x := range v {
		binary.NativeEndian.PutUint32(buf[4+4*i:], x)
	}
	if _, err := c.ioctl(name, index, buf); err != nil {
		return fmt.Errorf("set the %s of %s: %w", what, name, err)
	}
	return nil
}

// Rings reads the ring sizes (ETHTOOL_GRINGPARAM).
func (c *Conn) Rings(name string, index int) (Rings, error) {
	v, err := c.getParams(name, index, unix.ETHTOOL_GRINGPARAM, "ring sizes")
	return Rings{MaxRX: v[0], MaxRXMini: v[1], MaxRXJumbo: v[2], MaxTX: v[3], RX: v[4], RXMini: v[5], RXJumbo: v[6], TX: v[7]}, err
}

// SetRings sets the ring sizes (ETHTOOL_SRINGPARAM); the limits are
// the driver's and not set.
func (c *Conn) SetRings(name string, index int, r Rings) error {
	return c.setParams(name, index, unix.ETHTOOL_SRINGPARAM, "ring sizes",
		[8]uint32{r.MaxRX, r.MaxRXMini, r.MaxRXJumbo, r.MaxTX, r.RX, r.RXMini, r.RXJumbo, r.TX})
}

// Channels reads the channel counts (ETHTOOL_GCHANNELS).
func (c *Conn) Channels(name string, index int) (Channels, error) {
	v, err := c.getParams(name, index, unix.ETHTOOL_GCHANNELS, "channel counts")
	return Channels{MaxRX: v[0], MaxTX: v[1], MaxOther: v[2], MaxCombined: v[3], RX: v[4], TX: v[5], Other: v[6], Combined: v[7]}, err
}

// SetChannels sets the channel counts (ETHTOOL_SCHANNELS).
func (c *Conn) SetChannels(name string, index int, ch Channels) error {
	return c.setParams(name, index, unix.ETHTOOL_SCHANNELS, "channel counts",
		[8]uint32{ch.MaxRX, ch.MaxTX, ch.MaxOther, ch.MaxCombined, ch.RX, ch.TX, ch.Other, ch.Combined})
}

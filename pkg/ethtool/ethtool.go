// Package ethtool reads and sets a netdev's offload features (what
// "ethtool -k" shows and "ethtool -K" changes), ring sizes and channel
// counts through the SIOCETHTOOL ioctl. A process with NET_ADMIN in a pod's netns can change them; the
// kernel keeps them on the device when it goes back to the host, so the
// detach (pkg/netattach) puts back what was recorded before the attach.
//
// The ioctl names the netdev by name, which the kernel looks up in the
// netns of the socket: every call is given the ifindex the caller
// identified the netdev by too, and refuses to act when the name now
// names another netdev.
package ethtool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// MaxWords is how many 32-bit words of features a Features holds: 128
// features (kernels of 2026 have about 66). A netdev with more is
// reported as ErrUnsupported rather than recorded in part.
const MaxWords = 4

// ErrUnsupported is wrapped by the errors of a netdev or kernel that
// does not report its features this way (EOPNOTSUPP, or more features
// than MaxWords holds): nothing is recorded for it and nothing restored.
var ErrUnsupported = errors.New("offload features not supported")

// Features are a netdev's offload features as ETHTOOL_GFEATURES reports
// them, one bit per feature in the kernel's order (ETH_SS_FEATURES).
type Features struct {
	// Count is the number of features the kernel reports; the words past
	// (Count+31)/32 are zero.
	Count int
	// Changeable are the features a user can turn on or off: those the
	// driver offers (available) that are not fixed (never_changed).
	Changeable [MaxWords]uint32
	// Requested are the features a user (or the driver's defaults) asked
	// for; Active may differ where a feature depends on another.
	Requested [MaxWords]uint32
	Active    [MaxWords]uint32
}

// Words is the number of 32-bit words Count features take.
func Words(count int) int { return (count + 31) / 32 }

// Handle is the seam between the detach and the kernel, so unit tests
// can fake it. name and index are the netdev as the caller identified it
// (its name now and its ifindex, in the handle's netns).
type Handle interface {
	// Features reads the netdev's features.
	Features(name string, index int) (Features, error)
	// SetFeatures asks for the features of want.Requested whose bit is
	// set in valid (want.Count must be the netdev's count).
	SetFeatures(name string, index int, valid [MaxWords]uint32, want Features) error
	// FeatureNames are the names of the netdev's features, in bit order
	// ("tx-checksum-ip-generic", "rx-gro", ...), for messages.
	FeatureNames(name string, index int) ([]string, error)
	// Rings and Channels read, SetRings and SetChannels set the ring
	// sizes and the channel counts (params.go).
	Rings(name string, index int) (Rings, error)
	SetRings(name string, index int, r Rings) error
	Channels(name string, index int) (Channels, error)
	SetChannels(name string, index int, ch Channels) error
	Close()
}

// The uapi linux/ethtool.h facts this file uses.
const (
	ethSSFeatures  = 4  // ETH_SS_FEATURES, a string set
	ethGStringLen  = 32 // ETH_GSTRING_LEN
	ethFUnsupport  = 1 << 0
	gfeaturesBlock = 16 // struct ethtool_get_features_block: available, requested, active, never_changed
	sfeaturesBlock = 8  // struct ethtool_set_features_block: valid, requested
)

// ifreq is struct ifreq with ifr_data, the pointer to the ethtool
// command, as its union member.
type ifreq struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// Conn is a Handle on a socket in one network namespace.
type Conn struct{ fd int }

var _ Handle = (*Conn)(nil)

// Open returns a Conn in the network namespace of the calling thread;
// for a goroutine not locked to its thread, the process's own.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open a socket for ethtool: %w", err)
	}
	return &Conn{fd: fd}, nil
}

// OpenAt returns a Conn whose socket lives in the network namespace at
// nsPath; no goroutine but a short locked one enters it.
func OpenAt(nsPath string) (*Conn, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	var c *Conn
	err = nlink.InNetns(ns, func() error {
		var err error
		c, err = Open()
		return err
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("in netns %s: %w", nsPath, err)
	}
	return c, nil
}

// Close closes the socket.
func (c *Conn) Close() { _ = unix.Close(c.fd) }

// ioctl runs the ethtool command in buf (its first word the command) on
// the netdev name, after checking that name is still ifindex index. It
// returns the ioctl's non-negative result.
func (c *Conn) ioctl(name string, index int, buf []byte) (int, error) {
	if err := c.check(name, index); err != nil {
		return 0, err
	}
	var r ifreq
	copy(r.name[:unix.IFNAMSIZ-1], name)
	r.data = unsafe.Pointer(&buf[0])
	n, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&r)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		if errno == unix.EOPNOTSUPP {
			return 0, fmt.Errorf("%w (%w)", ErrUnsupported, errno)
		}
		return 0, errno
	}
	return int(n), nil
}

// check refuses a name that does not name the netdev of ifindex index.
func (c *Conn) check(name string, index int) error {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("bad interface name %q", name)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(c.fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return fmt.Errorf("look up the ifindex of %s: %w", name, err)
	}
	if got := int(int32(ifr.Uint32())); got != index {
		return fmt.Errorf("the name %s now names ifindex %d, not %d: not touching it", name, got, index)
	}
	return nil
}

// count is the number of features of the netdev (ETHTOOL_GSSET_INFO).
func (c *Conn) count(name string, index int) (int, error) {
	// struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
	buf := make([]byte, 20)
	binary.NativeEndian.PutUint32(buf[0:], unix.ETHTOOL_GSSET_INFO)
	binary.NativeEndian.PutUint64(buf[8:], 1<<ethSSFeatures)
	if _, err := c.ioctl(name, index, buf); err != nil {
		return 0, fmt.Errorf("count its features (ETHTOOL_GSSET_INFO): %w", err)
	}
	if binary.NativeEndian.Uint64(buf[8:])&(1<<ethSSFeatures) == 0 {
		return 0, fmt.Errorf("count its features: %w (no feature string set)", ErrUnsupported)
	}
	n := int(binary.NativeEndian.Uint32(buf[16:]))
	if n == 0 || Words(n) > MaxWords {
		return 0, fmt.Errorf("count its features: %w (%d features)", ErrUnsupported, n)
	}
	return n, nil
}

// Features implements Handle (ETHTOOL_GSSET_INFO, ETHTOOL_GFEATURES).
func (c *Conn) Features(name string, index int) (Features, error) {
	n, err := c.count(name, index)
	if err != nil {
		return Features{}, fmt.Errorf("read the offload features of %s: %w", name, err)
	}
	w := Words(n)
	buf := make([]byte, 8+w*gfeaturesBlock)
	binary.NativeEndian.PutUint32(buf[0:], unix.ETHTOOL_GFEATURES)
	binary.NativeEndian.PutUint32(buf[4:], uint32(w))
	if _, err := c.ioctl(name, index, buf); err != nil {
		return Features{}, fmt.Errorf("read the offload features of %s (ETHTOOL_GFEATURES): %w", name, err)
	}
	if got := int(binary.NativeEndian.Uint32(buf[4:])); got != w {
		return Features{}, fmt.Errorf("read the offload features of %s: the kernel has %d words of them, its string set %d features", name, got, n)
	}
	f := Features{Count: n}
	for i := range w {
		b := buf[8+i*gfeaturesBlock:]
		available, requested, active, never := binary.NativeEndian.Uint32(b[0:]), binary.NativeEndian.Uint32(b[4:]), binary.NativeEndian.Uint32(b[8:]), binary.NativeEndian.Uint32(b[12:])
		f.Changeable[i] = available &^ never
		f.Requested[i] = requested
		f.Active[i] = active
	}
	return f, nil
}

// SetFeatures implements Handle (ETHTOOL_SFEATURES). The kernel asking
// for a feature that cannot be on now (ETHTOOL_F_WISH) is no error: it
// is requested, as recorded, and comes on when it can.
func (c *Conn) SetFeatures(name string, index int, valid [MaxWords]uint32, want Features) error {
	n, err := c.count(name, index)
	if err != nil {
		return fmt.Errorf("set the offload features of %s: %w", name, err)
	}
	if n != want.Count {
		return fmt.Errorf("set the offload features of %s: it has %d features, the record %d", name, n, want.Count)
	}
	w := Words(n)
	buf := make([]byte, 8+w*sfeaturesBlock)
	binary.NativeEndian.PutUint32(buf[0:], unix.ETHTOOL_SFEATURES)
	binary.NativeEndian.PutUint32(buf[4:], uint32(w))
	for i := range w {
		b := buf[8+i*sfeaturesBlock:]
		binary.NativeEndian.PutUint32(b[0:], valid[i])
		binary.NativeEndian.PutUint32(b[4:], want.Requested[i]&valid[i])
	}
	r, err := c.ioctl(name, index, buf)
	if err != nil {
		return fmt.Errorf("set the offload features of %s (ETHTOOL_SFEATURES): %w", name, err)
	}
	if r&ethFUnsupport != 0 {
		return fmt.Errorf("set the offload features of %s: some are not changeable on it (ETHTOOL_F_UNSUPPORTED)", name)
	}
	return nil
}

// FeatureNames implements Handle (ETHTOOL_GSTRINGS of ETH_SS_FEATURES).
func (c *Conn) FeatureNames(name string, index int) ([]string, error) {
	n, err := c.count(name, index)
	if err != nil {
		return nil, fmt.Errorf("read the feature names of %s: %w", name, err)
	}
	// struct ethtool_gstrings: cmd, string_set, len, data[len*32].
	buf := make([]byte, 12+n*ethGStringLen)
	binary.NativeEndian.PutUint32(buf[0:], unix.ETHTOOL_GSTRINGS)
	binary.NativeEndian.PutUint32(buf[4:], ethSSFeatures)
	binary.NativeEndian.PutUint32(buf[8:], uint32(n))
	if _, err := c.ioctl(name, index, buf); err != nil {
		return nil, fmt.Errorf("read the feature names of %s (ETHTOOL_GSTRINGS): %w", name, err)
	}
	if got := int(binary.NativeEndian.Uint32(buf[8:])); got < n {
		n = got
	}
	names := make([]string, n)
	for i := range n {
		s := buf[12+i*ethGStringLen : 12+(i+1)*ethGStringLen]
		if j := bytes.IndexByte(s, 0); j >= 0 {
			s = s[:j]
		}
		names[i] = string(s)
	}
	return names, nil
}

// Bits lists the numbers of the bits set in words, lowest first.
func Bits(words [MaxWords]uint32) []int {
	var out []int
	for i, w := range words {
		for b := range 32 {
			if w&(1<<b) != 0 {
				out = append(out, i*32+b)
			}
		}
	}
	return out
}

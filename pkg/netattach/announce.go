package netattach

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// socketIn creates a socket inside the network namespace at nsPath
// (nlink.InNetns: a thread of its own, which never runs anything else in
// the pod's netns).
func socketIn(nsPath string, domain, typ, proto int) (int, error) {
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return -1, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer target.Close()
	fd := -1
	err = nlink.InNetns(target, func() error {
		s, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		fd = s
		return nil
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("socket in netns %s: %w", nsPath, err)
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// garp is a gratuitous ARP request for ip from mac (ARP payload only; the
// packet socket adds the Ethernet header).
func garp(mac net.HardwareAddr, ip net.IP) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // htype Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // ptype IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:], mac)
	copy(b[14:], ip.To4())
	// target hardware address stays zero
	copy(b[24:], ip.To4())
	return b
}

var allNodes = net.ParseIP("ff02::1")

// unsolicitedNA is an IPv6 packet (header + ICMPv6 neighbour
// advertisement, Override set, with the target link-layer address option)
// from ip to all-nodes, hop limit 255 (RFC 4861 7.2.6).
func unsolicitedNA(mac net.HardwareAddr, ip net.IP) []byte {
	const icmpLen = 24 + 8
	b := make([]byte, 40+icmpLen)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], icmpLen)
	b[6] = unix.IPPROTO_ICMPV6
	b[7] = 255
	copy(b[8:24], ip.To16())
	copy(b[24:40], allNodes)
	icmp := b[40:]
	icmp[0] = 136                               // neighbour advertisement
	binary.BigEndian.PutUint32(icmp[4:], 1<<29) // Override
	copy(icmp[8:24], ip.To16())
	icmp[24], icmp[25] = 2, 1 // target link-layer address, 8 bytes
	copy(icmp[26:32], mac)
	binary.BigEndian.PutUint16(icmp[2:], icmpv6Checksum(ip.To16(), allNodes, icmp))
	return b
}

func icmpv6Checksum(src, dst net.IP, icmp []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	var pl [8]byte
	binary.BigEndian.PutUint32(pl[0:], uint32(len(icmp)))
	pl[7] = unix.IPPROTO_ICMPV6
	add(pl[:])
	add(icmp)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// announce sends one gratuitous ARP per IPv4 address and one unsolicited
// NA per IPv6 address, out of the link ifIndex only, from a packet socket
// created in the pod's netns.
//
// The socket is closed on a goroutine of its own: the kernel's release of
// a packet socket waits for an RCU grace period (synchronize_net), 4-15 ms
// on the development VM (strace -T), longer than everything else the
// attach adds to the move. The frames are queued on the link by the time
// sendto returns, and nothing waits on the close.
func announce(nsPath string, ifIndex int, mac net.HardwareAddr, ips []net.IP) error {
	fd, err := socketIn(nsPath, unix.AF_PACKET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return fmt.Errorf("packet socket in %s: %w", nsPath, err)
	}
	defer func() { go closeFd(fd) }()
	for _, ip := range ips {
		var pkt []byte
		sa := &unix.SockaddrLinklayer{Ifindex: ifIndex, Halen: 6}
		if ip.To4() != nil {
			pkt = garp(mac, ip)
			sa.Protocol = htons(unix.ETH_P_ARP)
			copy(sa.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		} else {
			pkt = unsolicitedNA(mac, ip)
			sa.Protocol = htons(unix.ETH_P_IPV6)
			copy(sa.Addr[:], []byte{0x33, 0x33, 0, 0, 0, 1})
		}
		if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
			return fmt.Errorf("announce %s on ifindex %d: %w", ip, ifIndex, err)
		}
	}
	return nil
}

// closeFd closes fd, for a deferred close on a goroutine of its own.
func closeFd(fd int) { _ = unix.Close(fd) }

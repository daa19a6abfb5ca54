package netattach

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ValidIfName checks a netdev name as the kernel would (dev_valid_name).
func ValidIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("interface name is empty")
	case len(name) >= unix.IFNAMSIZ:
		return fmt.Errorf("interface name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n\r\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}

type route struct {
	dst *net.IPNet // nil: default route
	gw  net.IP
	v6  bool
}

type parsed struct {
	mtu    int
	mac    net.HardwareAddr
	addrs  []*netlink.Addr
	routes []route
}

// parse validates the spec; errors name the field.
func (s Spec) parse() (parsed, error) {
	var p parsed
	if err := ValidIfName(s.HostIfName); err != nil {
		return p, fmt.Errorf("hostIfName: %w", err)
	}
	if err := ValidIfName(s.PodIfName); err != nil {
		return p, fmt.Errorf("podIfName: %w", err)
	}
	if s.MTU != 0 && (s.MTU < 68 || s.MTU > 65535) {
		return p, fmt.Errorf("mtu %d: want 68..65535 (or 0 to keep)", s.MTU)
	}
	p.mtu = s.MTU
	if s.MAC != "" {
		m, err := net.ParseMAC(s.MAC)
		if err != nil || len(m) != 6 {
			return p, fmt.Errorf("mac %q: not an Ethernet MAC address", s.MAC)
		}
		if m[0]&1 == 1 {
			return p, fmt.Errorf("mac %q: a multicast address cannot be a link address", s.MAC)
		}
		p.mac = m
	}
	for _, a := range s.Addresses {
		ip, ipn, err := net.ParseCIDR(a)
		if err != nil {
			return p, fmt.Errorf("addresses: %q is not IP/prefix: %w", a, err)
		}
		p.addrs = append(p.addrs, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: ipn.Mask}})
	}
	for _, r := range s.Routes {
		_, dst, err := net.ParseCIDR(r.Dst)
		if err != nil {
			return p, fmt.Errorf("routes: dst %q is not a CIDR: %w", r.Dst, err)
		}
		rt := route{dst: dst, v6: dst.IP.To4() == nil}
		if ones, _ := dst.Mask.Size(); ones == 0 {
			rt.dst = nil
		}
		if r.GW != "" {
			if rt.gw = net.ParseIP(r.GW); rt.gw == nil {
				return p, fmt.Errorf("routes: gw %q of %s is not an IP address", r.GW, r.Dst)
			}
			if (rt.gw.To4() == nil) != rt.v6 {
				return p, fmt.Errorf("routes: gw %s and dst %s are of different IP families", r.GW, r.Dst)
			}
		}
		p.routes = append(p.routes, rt)
	}
	return p, nil
}

// Validate reports the first problem with the spec, naming the field.
func (s Spec) Validate() error {
	_, err := s.parse()
	return err
}

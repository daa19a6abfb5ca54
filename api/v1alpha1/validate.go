package v1alpha1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// pathFunc gives the path at which to report a problem with a field (by
// its JSON name). For one decoded object it is parameters.<field>; for a
// merged result it is the field in the config that set it.
type pathFunc func(jsonName string) *field.Path

// validate checks a config's values. final is true for the merged result
// of all configs of a request: then unset means "default" for cross-field
// rules (vlanQoS > 0 with no vlan anywhere is an error); for a single
// object unset means "may come from another config".
func validate(obj Config, at pathFunc, final bool) field.ErrorList {
	switch c := obj.(type) {
	case *VfConfig:
		return c.validate(at, final)
	case *PfConfig:
		return c.validate(at, final)
	}
	return field.ErrorList{field.InternalError(at("kind"), fmt.Errorf("unknown config type %T", obj))}
}

func (c *VfConfig) validate(at pathFunc, final bool) field.ErrorList {
	errs := checkCommon(at, c.IfName, c.MTU, c.Driver, c.IPAM, c.Routes)
	if c.MAC != nil && *c.MAC != MACAuto {
		if _, err := ParseMAC(*c.MAC); err != nil {
			errs = append(errs, field.Invalid(at("mac"), *c.MAC, err.Error()))
		}
	}
	errs = append(errs, intRange(at("vlan"), c.VLAN, 0, MaxVLAN, "a VLAN ID is 0 (no VLAN) to 4094")...)
	errs = append(errs, intRange(at("vlanQoS"), c.VLANQoS, 0, MaxVLANQoS, "the VLAN priority (802.1p) is 0 to 7")...)
	errs = append(errs, enum(at("vlanProto"), c.VLANProto, VLANProto8021Q, VLANProto8021AD)...)
	errs = append(errs, enum(at("linkState"), c.LinkState, LinkStateAuto, LinkStateEnable, LinkStateDisable)...)
	errs = append(errs, intRange(at("minTxRate"), c.MinTxRate, 0, MaxTxRate, "a rate in Mbps (0 means no guarantee), at most 1000000")...)
	errs = append(errs, intRange(at("maxTxRate"), c.MaxTxRate, 0, MaxTxRate, "a rate in Mbps (0 means no limit), at most 1000000")...)
	if c.GUID != nil && *c.GUID != GUIDAuto {
		if _, err := ParseGUID(*c.GUID); err != nil {
			errs = append(errs, field.Invalid(at("guid"), *c.GUID, err.Error()))
		}
	}
	if c.PKey != nil {
		if err := checkPKey(*c.PKey); err != nil {
			errs = append(errs, field.Invalid(at("pkey"), c.PKey.String(), err.Error()))
		}
	}
	errs = append(errs, enum(at("irqAffinity"), c.IRQAffinity, IRQAffinityNone, IRQAffinityContainer)...)
	errs = append(errs, c.Policy.validate(at("policy"), KindVfConfig)...)

	// Cross-field rules.
	noVLAN := (c.VLAN != nil && *c.VLAN == 0) || (c.VLAN == nil && final)
	if c.VLANQoS != nil && *c.VLANQoS > 0 && noVLAN {
		errs = append(errs, field.Invalid(at("vlanQoS"), *c.VLANQoS, "a VLAN priority needs a VLAN: set vlan to 1-4094, or vlanQoS to 0"))
	}
	if c.VLANProto != nil && *c.VLANProto == VLANProto8021AD && noVLAN {
		errs = append(errs, field.Invalid(at("vlanProto"), *c.VLANProto, "802.1ad needs a VLAN: set vlan to 1-4094, or vlanProto to 802.1q"))
	}
	if c.MinTxRate != nil && c.MaxTxRate != nil && *c.MaxTxRate > 0 && *c.MinTxRate > *c.MaxTxRate {
		errs = append(errs, field.Invalid(at("minTxRate"), *c.MinTxRate, fmt.Sprintf("must not exceed maxTxRate (%d Mbps); lower it or raise maxTxRate", *c.MaxTxRate)))
	}
	if isVFIO(c.Driver) {
		errs = append(errs, vfioForbidden(at, c.IfName, c.MTU, c.Routes)...)
		if c.RDMAIsolation != nil && *c.RDMAIsolation {
			errs = append(errs, field.Forbidden(at("rdmaIsolation"), "not used with driver vfio-pci: a VF bound to vfio-pci has no RDMA device; remove rdmaIsolation or use driver netdevice"))
		}
		if c.IRQAffinity != nil && *c.IRQAffinity == IRQAffinityContainer {
			errs = append(errs, field.Forbidden(at("irqAffinity"), "not used with driver vfio-pci: the DPDK application polls the device and owns its interrupts; remove irqAffinity or use driver netdevice"))
		}
	}
	return errs
}

func (c *PfConfig) validate(at pathFunc, _ bool) field.ErrorList {
	errs := checkCommon(at, c.IfName, c.MTU, c.Driver, c.IPAM, c.Routes)
	errs = append(errs, c.Policy.validate(at("policy"), KindPfConfig)...)
	if isVFIO(c.Driver) {
		errs = append(errs, vfioForbidden(at, c.IfName, c.MTU, c.Routes)...)
	}
	return errs
}

func isVFIO(driver *string) bool { return driver != nil && *driver == DriverVFIOPCI }

// vfioForbidden refuses the settings of a netdev in the pod for a device
// bound to vfio-pci, which has none.
func vfioForbidden(at pathFunc, ifName *string, mtu *int, routes []Route) field.ErrorList {
	var errs field.ErrorList
	const why = "not used with driver vfio-pci: the device has no netdev in the pod (DPDK drives it from user space); remove it or use driver netdevice"
	if ifName != nil {
		errs = append(errs, field.Forbidden(at("ifName"), why))
	}
	if mtu != nil {
		errs = append(errs, field.Forbidden(at("mtu"), why))
	}
	if routes != nil {
		errs = append(errs, field.Forbidden(at("routes"), why))
	}
	return errs
}

// checkCommon checks the fields VfConfig and PfConfig share.
func checkCommon(at pathFunc, ifName *string, mtu *int, driver *string, ipam json.RawMessage, routes []Route) field.ErrorList {
	var errs field.ErrorList
	if ifName != nil {
		if err := CheckIfName(*ifName); err != nil {
			errs = append(errs, field.Invalid(at("ifName"), *ifName, err.Error()))
		}
	}
	errs = append(errs, intRange(at("mtu"), mtu, MinMTU, MaxMTU, "the MTU is 68 to 65535 bytes (the device may allow less)")...)
	errs = append(errs, enum(at("driver"), driver, DriverNetdevice, DriverVFIOPCI)...)
	if ipam != nil {
		errs = append(errs, checkIPAM(at("ipam"), ipam)...)
	}
	errs = append(errs, checkRoutes(at("routes"), routes)...)
	return errs
}

func checkIPAM(p *field.Path, ipam json.RawMessage) field.ErrorList {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(ipam, &obj); err != nil {
		return field.ErrorList{field.TypeInvalid(p, omit, `must be an object: a CNI IPAM configuration with a "type"`)}
	}
	raw, ok := obj["type"]
	if !ok || string(raw) == "null" {
		return field.ErrorList{field.Required(p.Child("type"), `name the CNI IPAM plugin, e.g. "host-local", "static" or "whereabouts"`)}
	}
	var typ string
	if err := json.Unmarshal(raw, &typ); err != nil {
		return field.ErrorList{typeErr(p.Child("type"), raw, "must be a string")}
	}
	if err := CheckIPAMType(typ); err != nil {
		return field.ErrorList{field.Invalid(p.Child("type"), typ, err.Error())}
	}
	return checkJSONKeys(p, ipam)
}

func checkRoutes(p *field.Path, routes []Route) field.ErrorList {
	var errs field.ErrorList
	seen := map[netip.Prefix]int{}
	for i, r := range routes {
		ip := p.Index(i)
		if r.Dst == "" {
			errs = append(errs, field.Required(ip.Child("dst"), `the destination network, e.g. "10.20.0.0/16" or "0.0.0.0/0"`))
			continue
		}
		dst, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			errs = append(errs, field.Invalid(ip.Child("dst"), r.Dst, `must be a network in CIDR form, e.g. "10.20.0.0/16" or "fd00::/64"`))
			continue
		}
		if dst.Masked() != dst {
			errs = append(errs, field.Invalid(ip.Child("dst"), r.Dst, fmt.Sprintf("has host bits set; the network is %s", dst.Masked())))
			continue
		}
		if j, dup := seen[dst]; dup {
			errs = append(errs, field.Invalid(ip.Child("dst"), r.Dst, fmt.Sprintf("the same destination as routes[%d]; keep one", j)))
			continue
		}
		seen[dst] = i
		if r.GW != "" {
			gw, err := netip.ParseAddr(r.GW)
			switch {
			case err != nil || gw.Zone() != "":
				errs = append(errs, field.Invalid(ip.Child("gw"), r.GW, "must be an IP address (the next hop)"))
			case gw.Is4() != dst.Addr().Is4():
				errs = append(errs, field.Invalid(ip.Child("gw"), r.GW, fmt.Sprintf("must be of the same IP family as dst %s", r.Dst)))
			case gw.IsUnspecified() || gw.IsMulticast():
				errs = append(errs, field.Invalid(ip.Child("gw"), r.GW, "must be a unicast address; leave gw out for a link-scope route"))
			case gw.IsLoopback():
				errs = append(errs, field.Invalid(ip.Child("gw"), r.GW, "must not be a loopback address: the kernel refuses a local address as a next hop"))
			case gw == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
				errs = append(errs, field.Invalid(ip.Child("gw"), r.GW, "must not be the limited broadcast address: the kernel refuses it as a next hop"))
			case gw.Is4() && gw.IsLinkLocalUnicast():
				errs = append(errs, field.Invalid(ip.Child("gw"), r.GW, "must not be an IPv4 link-local address (169.254.0.0/16): the kernel refuses a next hop the interface cannot reach, and the pod's interface gets no address in that network (IPv6 link-local next hops, fe80::/10, are fine)"))
			}
		}
	}
	return errs
}

func intRange(p *field.Path, v *int, lo, hi int, detail string) field.ErrorList {
	if v == nil || (*v >= lo && *v <= hi) {
		return nil
	}
	return field.ErrorList{field.Invalid(p, *v, fmt.Sprintf("must be between %d and %d: %s", lo, hi, detail))}
}

func enum(p *field.Path, v *string, allowed ...string) field.ErrorList {
	if v == nil || slices.Contains(allowed, *v) {
		return nil
	}
	return field.ErrorList{field.NotSupported(p, *v, allowed)}
}

// checkJSONKeys refuses, anywhere in a JSON value, an object with two
// keys that are equal or differ only in case: the CNI plugins decode with
// Go's case-insensitive JSON matching, so "datadir" would stand in for
// "dataDir" and the last of two equal keys would win unseen.
func checkJSONKeys(p *field.Path, raw []byte) field.ErrorList {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var errs field.ErrorList
	var walk func(p *field.Path) error
	walk = func(p *field.Path) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		switch d {
		case '{':
			// strings.EqualFold folds as Go's JSON decoding does (Unicode
			// simple folding: "ſ" is "s", the Kelvin sign "k"), which a
			// lower-cased map key would not.
			var seen []string
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				if i := slices.IndexFunc(seen, func(s string) bool { return strings.EqualFold(s, k) }); i >= 0 {
					detail := "the key appears more than once; keep one"
					if seen[i] != k {
						detail = fmt.Sprintf("%q and %q differ only in case, and plugins read keys without regard to case; keep one", seen[i], k)
					}
					errs = append(errs, &field.Error{Type: field.ErrorTypeDuplicate, Field: p.Child(k).String(), BadValue: k, Detail: detail})
				} else {
					seen = append(seen, k)
				}
				if err := walk(p.Child(k)); err != nil {
					return err
				}
			}
		case '[':
			for i := 0; dec.More(); i++ {
				if err := walk(p.Index(i)); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	if err := walk(p); err != nil && !errors.Is(err, io.EOF) {
		return field.ErrorList{field.Invalid(p, omit, "not valid JSON: "+err.Error())}
	}
	return errs
}

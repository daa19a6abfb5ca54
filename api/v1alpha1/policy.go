package v1alpha1

// This file defines the Policy a DeviceClass config gives its claims,
// the field lists it draws on, and its validation and strict decoding.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The trust boundary.
//
// A DeviceClass is the cluster admin's; a ResourceClaim or
// ResourceClaimTemplate is a namespace user's, and a root daemon carries
// out what both say. So a claim's config may set only what concerns its
// own pod (pod-local fields) unless the class's policy lets it set more.
// The allocation result tags every config with its source (FromClass,
// FromClaim); Resolve enforces the policy of the class configs on the
// claim configs, and the admission policy in deployments/policy refuses
// the same claims early where the API server can see the class.

// Policy is what a DeviceClass config says about the claims of the class.
// Only a class config may carry it. Unset fields take the safe default.
type Policy struct {
	// ClaimMaySet lists the VF policy fields (PolicyFields) a claim may
	// set. Default: none.
	ClaimMaySet []string `json:"claimMaySet,omitempty"`
	// MaxMTU is the largest mtu a claim may set. Default: any valid MTU.
	MaxMTU *int `json:"maxMTU,omitempty"`
	// IPAM lists the IPAM plugins a claim may name, each with the
	// top-level keys a claim may set. Default: DefaultIPAMPolicy.
	IPAM []IPAMPolicy `json:"ipam,omitzero"`
	// GUIDPrefix (VfConfig only) is 1-7 bytes that `guid: auto` keeps at
	// the start of the GUIDs it makes, and that an explicit guid of a
	// claim must start with.
	GUIDPrefix *string `json:"guidPrefix,omitempty"`
	// RDMAManagement (VfConfig only) gives containers the RDMA management
	// devices (umadN: raw management datagrams; issmN: the port's IsSM
	// bit) besides the verbs devices. Default: false.
	RDMAManagement *bool `json:"rdmaManagement,omitempty"`
}

// IPAMPolicy allows one IPAM plugin to claims.
type IPAMPolicy struct {
	// Type is the plugin name, as in ipam.type.
	Type string `json:"type"`
	// ClaimKeys are the top-level ipam keys a claim may set besides type,
	// compared without regard to case.
	ClaimKeys []string `json:"claimKeys,omitzero"`
}

// DefaultIPAMPolicy is the IPAM allowlist of a class whose policy has no
// ipam list: host-local and static, with their address and route keys.
// Keys naming host paths (host-local's dataDir, resolvConf) are left out:
// only a class config may set them.
func DefaultIPAMPolicy() []IPAMPolicy {
	return []IPAMPolicy{
		{Type: "host-local", ClaimKeys: []string{"ranges", "routes", "subnet", "rangeStart", "rangeEnd", "gateway"}},
		{Type: "static", ClaimKeys: []string{"addresses", "routes", "dns"}},
	}
}

// PodLocalFields are the fields of a config of kind that a claim may
// always set: they concern only the claim's own pod.
func PodLocalFields(kind string) []string {
	if kind == KindPfConfig {
		return []string{"ifName", "mtu", "ipam", "routes"}
	}
	return []string{"ifName", "mtu", "ipam", "routes", "irqAffinity"}
}

// PolicyFields are the fields of a config of kind that a claim may set
// only when its class lists them in policy.claimMaySet: they change what
// the device may do on the network, or the node.
func PolicyFields(kind string) []string {
	if kind == KindPfConfig {
		return []string{"driver"}
	}
	return []string{"mac", "vlan", "vlanQoS", "vlanProto", "spoofChk", "trust", "linkState",
		"minTxRate", "maxTxRate", "guid", "pkey", "driver", "rdmaIsolation"}
}

// ipamAllowlist is the class's IPAM allowlist, the default if unset.
func (p *Policy) ipamAllowlist() []IPAMPolicy {
	if p == nil || p.IPAM == nil {
		return DefaultIPAMPolicy()
	}
	return p.IPAM
}

func (p *Policy) maySet(name string) bool {
	return p != nil && slices.Contains(p.ClaimMaySet, name)
}

// ParseGUIDPrefix parses a GUID prefix: 1 to 7 bytes, "02:00:00:00".
// It returns the lower-case colon-separated form.
func ParseGUIDPrefix(s string) (string, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 1 || len(parts) > 7 {
		return "", fmt.Errorf("must be 1 to 7 bytes such as \"02:00:00:00\", found %d", len(parts))
	}
	b := make([]byte, len(parts))
	for i, p := range parts {
		if len(p) != 2 {
			return "", fmt.Errorf("byte %d %q must be two hex digits", i+1, p)
		}
		hw, err := net.ParseMAC(p + ":00:00:00:00:00")
		if err != nil {
			return "", fmt.Errorf("byte %d %q must be two hex digits", i+1, p)
		}
		b[i] = hw[0]
	}
	return strings.ToLower(strings.Join(parts, ":")), nil
}

// guidHasPrefix reports whether a valid GUID starts with a valid prefix.
func guidHasPrefix(guid, prefix string) bool {
	g, err := ParseGUID(guid)
	if err != nil {
		return false
	}
	pfx, err := ParseGUIDPrefix(prefix)
	if err != nil {
		return false
	}
	return strings.HasPrefix(g, pfx)
}

// validate checks a policy of a config of kind, reported under at.
func (p *Policy) validate(at *field.Path, kind string) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	allowed := PolicyFields(kind)
	seen := map[string]bool{}
	for i, name := range p.ClaimMaySet {
		ip := at.Child("claimMaySet").Index(i)
		switch {
		case seen[name]:
			errs = append(errs, field.Duplicate(ip, name))
		case slices.Contains(PodLocalFields(kind), name):
			errs = append(errs, field.Invalid(ip, name, "a pod-local field: claims may always set it; remove it from the list"))
		case !slices.Contains(allowed, name):
			errs = append(errs, field.NotSupported(ip, name, allowed))
		}
		seen[name] = true
	}
	errs = append(errs, intRange(at.Child("maxMTU"), p.MaxMTU, MinMTU, MaxMTU, "the MTU is 68 to 65535 bytes")...)
	types := map[string]bool{}
	for i, a := range p.IPAM {
		ip := at.Child("ipam").Index(i)
		if err := CheckIPAMType(a.Type); err != nil {
			errs = append(errs, field.Invalid(ip.Child("type"), a.Type, err.Error()))
		} else if types[a.Type] {
			errs = append(errs, field.Duplicate(ip.Child("type"), a.Type))
		}
		types[a.Type] = true
		keys := map[string]bool{}
		for j, k := range a.ClaimKeys {
			kp := ip.Child("claimKeys").Index(j)
			switch {
			case k == "":
				errs = append(errs, field.Required(kp, "a top-level key of the plugin's ipam configuration"))
			case keys[strings.ToLower(k)]:
				errs = append(errs, field.Duplicate(kp, k))
			}
			keys[strings.ToLower(k)] = true
		}
	}
	if kind == KindPfConfig {
		if p.GUIDPrefix != nil {
			errs = append(errs, field.Forbidden(at.Child("guidPrefix"), "a whole PF has no GUID the driver sets; only a VfConfig policy has guidPrefix"))
		}
		if p.RDMAManagement != nil {
			errs = append(errs, field.Forbidden(at.Child("rdmaManagement"), "only a VfConfig policy has rdmaManagement"))
		}
	} else if p.GUIDPrefix != nil {
		if _, err := ParseGUIDPrefix(*p.GUIDPrefix); err != nil {
			errs = append(errs, field.Invalid(at.Child("guidPrefix"), *p.GUIDPrefix, err.Error()))
		}
	}
	return errs
}

// forEachField calls f with the JSON name of every field of a config and
// whether it is set (every config field is a pointer or a slice).
func forEachField(cfg Config, f func(name string, set bool)) {
	v := reflect.ValueOf(cfg).Elem()
	eachJSONField(v.Type(), func(i int, name string) { f(name, !v.Field(i).IsNil()) })
}

// decodePolicy strictly decodes the policy object of a class config.
func decodePolicy(p *field.Path, raw json.RawMessage) (*Policy, field.ErrorList) {
	members, errs := readObject(p, func(k string) *field.Path { return p.Child(k) }, raw, "an object with claimMaySet, maxMTU, ipam, guidPrefix, rdmaManagement")
	if len(errs) > 0 {
		return nil, errs
	}
	pol := &Policy{}
	for _, m := range members {
		mp := p.Child(m.key)
		if string(bytes.TrimSpace(m.raw)) == "null" {
			continue
		}
		switch m.key {
		case "claimMaySet":
			if err := json.Unmarshal(m.raw, &pol.ClaimMaySet); err != nil || pol.ClaimMaySet == nil {
				errs = append(errs, typeErr(mp, m.raw, "must be a list of field names"))
			}
		case "maxMTU", "guidPrefix", "rdmaManagement":
			var dst reflect.Value
			switch m.key {
			case "maxMTU":
				dst = reflect.ValueOf(&pol.MaxMTU).Elem()
			case "guidPrefix":
				dst = reflect.ValueOf(&pol.GUIDPrefix).Elem()
			default:
				dst = reflect.ValueOf(&pol.RDMAManagement).Elem()
			}
			errs = append(errs, decodeValue(mp, m.raw, dst)...)
		case "ipam":
			list, lerrs := decodeIPAMPolicies(mp, m.raw)
			errs = append(errs, lerrs...)
			pol.IPAM = list
		default:
			errs = append(errs, field.Forbidden(mp, "unknown field; policy fields are claimMaySet, maxMTU, ipam, guidPrefix, rdmaManagement"))
		}
	}
	return pol, errs
}

func decodeIPAMPolicies(p *field.Path, raw json.RawMessage) ([]IPAMPolicy, field.ErrorList) {
	return decodeObjectList(p, raw, "must be a list of {type, claimKeys} objects", "an object with type and claimKeys", decodeIPAMPolicy)
}

// decodeIPAMPolicy decodes the members of one ipam policy object.
func decodeIPAMPolicy(ip *field.Path, members []member) (IPAMPolicy, field.ErrorList) {
	var (
		a    IPAMPolicy
		errs field.ErrorList
	)
	for _, m := range members {
		switch m.key {
		case "type":
			if err := json.Unmarshal(m.raw, &a.Type); err != nil {
				errs = append(errs, typeErr(ip.Child("type"), m.raw, "must be a string"))
			}
		case "claimKeys":
			if err := json.Unmarshal(m.raw, &a.ClaimKeys); err != nil {
				errs = append(errs, typeErr(ip.Child("claimKeys"), m.raw, "must be a list of key names"))
			}
		default:
			errs = append(errs, field.Forbidden(ip.Child(m.key), "unknown field; an ipam policy has type and claimKeys"))
		}
	}
	if a.Type == "" {
		errs = append(errs, field.Required(ip.Child("type"), "the IPAM plugin claims may name"))
	}
	return a, errs
}

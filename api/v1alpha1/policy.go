package v1alpha1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// classRef names the class in errors.
func classRef(class string) string {
	if class == "" {
		return "the request's DeviceClass"
	}
	return fmt.Sprintf("DeviceClass %q", class)
}

// checkClaimConfig refuses what a claim's config sets beyond what the
// class's policy allows. at is the config's parameters path.
func checkClaimConfig(at *field.Path, cfg Config, pol *Policy, class string) field.ErrorList {
	var errs field.ErrorList
	kind := cfg.GetKind()
	local := PodLocalFields(kind)
	set := setFields(cfg)
	if slices.Contains(set, "policy") {
		errs = append(errs, field.Forbidden(at.Child("policy"),
			"only a DeviceClass config may set policy: the admin decides what the claims of a class may set"))
	}
	for _, name := range set {
		switch {
		case name == "policy", slices.Contains(local, name), pol.maySet(name):
		default:
			errs = append(errs, field.Forbidden(at.Child(name), fmt.Sprintf(
				"a claim may not set %s: %s does not allow it (policy.claimMaySet); ask the admin for a class that sets or allows it",
				name, classRef(class))))
		}
	}
	mtu, ipam, guid := claimValues(cfg)
	if mtu != nil && pol != nil && pol.MaxMTU != nil && *mtu > *pol.MaxMTU {
		errs = append(errs, field.Invalid(at.Child("mtu"), *mtu, fmt.Sprintf(
			"at most %d: the largest MTU %s allows (policy.maxMTU)", *pol.MaxMTU, classRef(class))))
	}
	if ipam != nil {
		errs = append(errs, checkClaimIPAM(at.Child("ipam"), ipam, pol.ipamAllowlist(), class)...)
	}
	if guid != nil && *guid != GUIDAuto && pol.maySet("guid") && pol.GUIDPrefix != nil {
		if !guidHasPrefix(*guid, *pol.GUIDPrefix) {
			errs = append(errs, field.Invalid(at.Child("guid"), *guid, fmt.Sprintf(
				"must start with %s, the GUID prefix %s gives its claims (policy.guidPrefix)", *pol.GUIDPrefix, classRef(class))))
		}
	}
	return errs
}

// setFields lists the JSON names of the fields cfg sets.
func setFields(cfg Config) []string {
	var out []string
	forEachField(cfg, func(name string, set bool) {
		if set {
			out = append(out, name)
		}
	})
	return out
}

func claimValues(cfg Config) (mtu *int, ipam json.RawMessage, guid *string) {
	switch c := cfg.(type) {
	case *VfConfig:
		return c.MTU, c.IPAM, c.GUID
	case *PfConfig:
		return c.MTU, c.IPAM, nil
	}
	return nil, nil, nil
}

// checkClaimIPAM checks a claim's ipam object against the class's IPAM
// allowlist: the plugin must be listed and every top-level key (besides
// type) one of its claim keys.
func checkClaimIPAM(p *field.Path, raw json.RawMessage, allow []IPAMPolicy, class string) field.ErrorList {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return field.ErrorList{field.TypeInvalid(p, omit, "must be an object")}
	}
	typ := ipamType(raw)
	i := slices.IndexFunc(allow, func(a IPAMPolicy) bool { return a.Type == typ })
	if i < 0 {
		names := make([]string, 0, len(allow))
		for _, a := range allow {
			names = append(names, a.Type)
		}
		e := field.NotSupported(p.Child("type"), typ, names)
		e.Detail = fmt.Sprintf("%s lets claims name only these IPAM plugins (policy.ipam): %s", classRef(class), quoteList(names))
		return field.ErrorList{e}
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var errs field.ErrorList
	for _, k := range keys {
		if k == "type" {
			continue
		}
		if !slices.ContainsFunc(allow[i].ClaimKeys, func(a string) bool { return strings.EqualFold(a, k) }) {
			errs = append(errs, field.Forbidden(p.Child(k), fmt.Sprintf(
				"a claim may not set %q for IPAM plugin %s: %s allows only %s (policy.ipam); keys naming host paths or credentials come from the class",
				k, typ, classRef(class), quoteList(allow[i].ClaimKeys))))
		}
	}
	return errs
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// ipamType is the type of a valid ipam object.
func ipamType(raw json.RawMessage) string {
	var t struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &t) // validated before
	return t.Type
}

// overlayIPAM puts the claim's top-level ipam keys over the class's when
// both name the same plugin, so that keys only the class may set (paths,
// credentials) stay; otherwise the claim's object replaces the class's.
func overlayIPAM(class, claim json.RawMessage) json.RawMessage {
	if class == nil || ipamType(class) != ipamType(claim) {
		return claim
	}
	var base, over map[string]json.RawMessage
	if json.Unmarshal(class, &base) != nil || json.Unmarshal(claim, &over) != nil {
		return claim
	}
	for k := range base {
		for ok := range over {
			if strings.EqualFold(k, ok) {
				delete(base, k)
			}
		}
	}
	for k, v := range over {
		base[k] = v
	}
	out, err := json.Marshal(base)
	if err != nil {
		return claim
	}
	return out
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
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		f(name, !v.Field(i).IsNil())
	}
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
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return nil, field.ErrorList{typeErr(p, raw, "must be a list of {type, claimKeys} objects")}
	}
	out := make([]IPAMPolicy, 0, len(items))
	var errs field.ErrorList
	for i, item := range items {
		ip := p.Index(i)
		members, merrs := readObject(ip, func(k string) *field.Path { return ip.Child(k) }, item, "an object with type and claimKeys")
		if len(merrs) > 0 {
			errs = append(errs, merrs...)
			continue
		}
		var a IPAMPolicy
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
		out = append(out, a)
	}
	return out, errs
}

// classPolicy returns a class config's policy and ipam.
func classPolicy(cfg Config) (*Policy, json.RawMessage) {
	switch c := cfg.(type) {
	case *VfConfig:
		return c.Policy, c.IPAM
	case *PfConfig:
		return c.Policy, c.IPAM
	}
	return nil, nil
}

func ipamOf(cfg Config) json.RawMessage {
	_, ipam, _ := claimValues(cfg)
	return ipam
}

func setIPAM(cfg Config, ipam json.RawMessage) {
	switch c := cfg.(type) {
	case *VfConfig:
		c.IPAM = ipam
	case *PfConfig:
		c.IPAM = ipam
	}
}

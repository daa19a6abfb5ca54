package v1alpha1

// This file enforces a DeviceClass's policy on the configs of its claims:
// the fields a claim may set, its MTU, GUID and IPAM plugin, and how a
// claim's ipam object is laid over the class's.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

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
			shown := k // the claim's own key: keep the message short
			if len(shown) > maxShownValue {
				shown = truncate(shown, maxShownValue)
			}
			errs = append(errs, field.Forbidden(p.Child(k), fmt.Sprintf(
				"a claim may not set %q for IPAM plugin %s: %s allows only %s (policy.ipam); keys naming host paths or credentials come from the class",
				shown, typ, classRef(class), quoteList(allow[i].ClaimKeys))))
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

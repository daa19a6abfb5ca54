package v1alpha1

// This file checks that a vlanQoS above 0 or vlanProto 802.1ad has a
// vlan from somewhere: the object itself, or the claim's DeviceClass.

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// setsVLAN reports whether one of the configs sets vlan.
func setsVLAN(cfgs []Config) bool {
	return slices.ContainsFunc(cfgs, func(cfg Config) bool {
		vf, ok := cfg.(*VfConfig)
		return ok && vf.VLAN != nil
	})
}

// needsVLAN lists the fields of cfg that need a vlan from somewhere
// (vlanQoS above 0, vlanProto 802.1ad), with their values for messages.
func needsVLAN(cfg Config) (names []string, values []any) {
	vf, ok := cfg.(*VfConfig)
	if !ok {
		return nil, nil
	}
	if vf.VLANQoS != nil && *vf.VLANQoS > 0 {
		names, values = append(names, "vlanQoS"), append(values, *vf.VLANQoS)
	}
	if vf.VLANProto != nil && *vf.VLANProto == VLANProto8021AD {
		names, values = append(names, "vlanProto"), append(values, *vf.VLANProto)
	}
	return names, values
}

// warnVLAN warns about vlanQoS above 0 or vlanProto 802.1ad in an object
// none of whose configs sets vlan: another object's config may set it,
// else Prepare refuses the merged config. base is nil for a bare config.
// Claims are checked by checkClaimVLAN, which knows their classes.
func (rep *ManifestReport) warnVLAN(object string, base *field.Path, cfgs []Config) {
	if setsVLAN(cfgs) {
		return
	}
	for i, cfg := range cfgs {
		names, values := needsVLAN(cfg)
		for k, name := range names {
			at := field.NewPath(name)
			if base != nil {
				at = base.Index(i).Child("opaque", "parameters", name)
			}
			rep.Warnings = append(rep.Warnings, Warning{Object: object, Field: at, Detail: fmt.Sprintf(
				"%s %v needs a vlan, which nothing in this object sets: it must come from another object's config (the claim's, or its DeviceClass's), or Prepare refuses the claim", name, values[k])})
		}
	}
}

// checkClaimVLAN checks a claim config's vlanQoS/vlanProto 802.1ad when
// no config of the claim sets vlan: fine when each of its classes sets
// one, an error when a class in the input sets none, a warning when a
// class is missing from the input.
func (rep *ManifestReport) checkClaimVLAN(c claimConfig, missing []string) {
	names, values := needsVLAN(c.cfg)
	if len(names) == 0 {
		return
	}
	var without []string
	for _, class := range c.classes {
		if _, known := rep.classes[class]; known && !rep.classVLAN[class] {
			without = append(without, class)
		}
	}
	for k, name := range names {
		switch {
		case len(without) > 0:
			rep.add(c.object, field.ErrorList{field.Invalid(c.at.Child(name), values[k], fmt.Sprintf(
				"needs a vlan, which neither the claim nor DeviceClass %s sets: set vlan 1-4094 (where the class allows it), or leave %s out", strings.Join(without, ", "), name))})
		case len(missing) > 0:
			rep.Warnings = append(rep.Warnings, Warning{Object: c.object, Field: c.at.Child(name), Detail: fmt.Sprintf(
				"%s %v needs a vlan, which the claim does not set: it must come from DeviceClass %s, which is not in the input; Prepare refuses the claim otherwise", name, values[k], strings.Join(missing, ", "))})
		}
	}
}

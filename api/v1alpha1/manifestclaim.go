package v1alpha1

// This file checks the configs of one claim: request names, VfConfig
// and PfConfig on one request, ifNames, and each config against the
// policy of the DeviceClasses its requests name.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// checkClaimPolicies checks every claim config against the policy of the
// DeviceClasses its requests name, where the input has them: the API
// server's admission policy and the driver's Prepare do the same. A claim
// config's "policy" is refused whatever its class.
func (rep *ManifestReport) checkClaimPolicies() {
	for _, c := range rep.claims {
		var missing []string
		for _, class := range c.classes {
			if _, ok := rep.classes[class]; !ok {
				missing = append(missing, class)
			}
		}
		if !c.objectVLAN {
			rep.checkClaimVLAN(c, missing)
		}
		if len(missing) > 0 {
			if dep := classDependent(c.cfg); len(dep) > 0 {
				rep.Warnings = append(rep.Warnings, Warning{Object: c.object, Field: c.at, Detail: fmt.Sprintf(
					"sets %s, which the policy of DeviceClass %s bounds (claimMaySet, maxMTU, ipam); the class is not in the input, so the admission policy and the driver check it: add the class to the input to check it here",
					strings.Join(dep, ", "), strings.Join(missing, ", "))})
			}
		}
		var errs field.ErrorList
		seen := map[string]bool{}
		add := func(list field.ErrorList) {
			for _, e := range list {
				if !seen[e.Error()] {
					seen[e.Error()] = true
					errs = append(errs, e)
				}
			}
		}
		known := false
		for _, class := range c.classes {
			if pol, ok := rep.classes[class]; ok {
				known = true
				add(checkClaimConfig(c.at, c.cfg, pol, class))
			}
		}
		if !known && slices.Contains(setFields(c.cfg), "policy") {
			add(field.ErrorList{field.Forbidden(c.at.Child("policy"),
				"only a DeviceClass config may set policy: the admin decides what the claims of a class may set")})
		}
		rep.add(c.object, errs)
	}
}

// checkClaim validates a claim's configs and keeps them for the policy
// check against their classes.
func (rep *ManifestReport) checkClaim(object string, devices *field.Path, spec resourceapi.DeviceClaim) {
	requests := requestNames(spec.Requests)
	base := devices.Child("config")
	rep.checkConfigs(object, base, spec.Config, requests)
	rep.add(object, checkClaimIfNames(base, spec))
	objectVLAN := setsVLAN(decodedConfigs(spec.Config))
	for i, c := range spec.Config {
		if c.Opaque == nil || c.Opaque.Driver != rep.driver {
			continue
		}
		at := base.Index(i).Child("opaque", "parameters")
		cfg, errs := Decode(at, c.Opaque.Parameters.Raw)
		if len(errs) > 0 {
			continue // reported by checkConfigs
		}
		var classes []string
		for _, r := range spec.Requests {
			if r.Exactly != nil && AppliesTo(c.Requests, r.Name) && !slices.Contains(classes, r.Exactly.DeviceClassName) {
				classes = append(classes, r.Exactly.DeviceClassName)
			}
			for _, sub := range r.FirstAvailable {
				if AppliesTo(c.Requests, r.Name+"/"+sub.Name) && !slices.Contains(classes, sub.DeviceClassName) {
					classes = append(classes, sub.DeviceClassName)
				}
			}
		}
		rep.claims = append(rep.claims, claimConfig{object: object, at: at, cfg: cfg, classes: classes, objectVLAN: objectVLAN})
	}
}

// requestNames lists a claim's requests and subrequests ("req/sub").
func requestNames(reqs []resourceapi.DeviceRequest) []string {
	names := []string{}
	for _, r := range reqs {
		names = append(names, r.Name)
		for _, s := range r.FirstAvailable {
			names = append(names, r.Name+"/"+s.Name)
		}
	}
	return names
}

// checkConfigs validates the sriov.dra.dev configs of one object. requests
// is nil for a DeviceClass, whose configs apply to every request.
func (rep *ManifestReport) checkConfigs(object string, base *field.Path, cfgs []resourceapi.DeviceClaimConfiguration, requests []string) {
	type kinded struct {
		idx  int
		kind string
	}
	var seen []kinded
	for i, c := range cfgs {
		if c.Opaque == nil {
			continue
		}
		at := base.Index(i).Child("opaque")
		if c.Opaque.Driver != rep.driver {
			if looksLikeOurs(c.Opaque.Parameters.Raw) {
				rep.add(object, field.ErrorList{field.Invalid(at.Child("driver"), c.Opaque.Driver,
					"the parameters are "+APIVersion+" but the driver is another; set driver: "+rep.driver)})
			}
			continue
		}
		rep.Configs++
		if requests != nil {
			for j, r := range c.Requests {
				if !slices.Contains(requests, r) {
					rep.add(object, field.ErrorList{field.Invalid(base.Index(i).Child("requests").Index(j), r, "the claim has no request (or subrequest) of this name")})
				}
			}
		}
		cfg, errs := Decode(at.Child("parameters"), c.Opaque.Parameters.Raw)
		rep.add(object, errs)
		if cfg == nil {
			continue
		}
		for _, s := range seen {
			if s.kind == cfg.GetKind() {
				continue
			}
			if req, ok := overlap(cfgs[s.idx].Requests, c.Requests, requests); ok {
				rep.add(object, field.ErrorList{field.Invalid(at.Child("parameters", "kind"), cfg.GetKind(), fmt.Sprintf(
					"%s also gets a %s from %s; a device is either a VF (VfConfig) or a whole PF (PfConfig), not both", req, s.kind, base.Index(s.idx)))})
				break
			}
		}
		seen = append(seen, kinded{idx: i, kind: cfg.GetKind()})
	}
}

// overlap reports whether two configs' request scopes share a request,
// and names it. requests is nil for a DeviceClass (every request).
func overlap(a, b, requests []string) (string, bool) {
	if requests == nil {
		return "every request", true
	}
	for _, r := range requests {
		if AppliesTo(a, r) && AppliesTo(b, r) {
			return fmt.Sprintf("request %q", r), true
		}
	}
	return "", false
}

// looksLikeOurs reports whether parameters carry our apiVersion: a config
// meant for this driver under a mistyped driver name.
func looksLikeOurs(raw []byte) bool {
	var tm metav1.TypeMeta
	if json.Unmarshal(raw, &tm) != nil {
		return false
	}
	group, _, _ := strings.Cut(tm.APIVersion, "/")
	return group == GroupName
}

// decodedConfigs decodes the sriov.dra.dev configs of an object, nil for
// the others and for those with errors (reported elsewhere), so that the
// result is indexed like cfgs.
func decodedConfigs(cfgs []resourceapi.DeviceClaimConfiguration) []Config {
	out := make([]Config, len(cfgs))
	for i, c := range cfgs {
		if c.Opaque == nil || c.Opaque.Driver != DriverName {
			continue
		}
		if cfg, errs := Decode(nil, c.Opaque.Parameters.Raw); len(errs) == 0 {
			out[i] = cfg
		}
	}
	return out
}

// classDependent lists the fields a claim config sets whose acceptance
// depends on its class's policy: VF policy fields (claimMaySet), mtu
// (maxMTU) and ipam (the IPAM allowlist).
func classDependent(cfg Config) []string {
	var out []string
	policy := PolicyFields(cfg.GetKind())
	for _, name := range setFields(cfg) {
		if slices.Contains(policy, name) || name == "mtu" || name == "ipam" {
			out = append(out, name)
		}
	}
	return out
}

// checkClaimIfNames refuses ifNames that give two interfaces of the pod
// one name: two requests of the claim configured with the same ifName,
// or an ifName on a request that asks for more than one device. The
// driver refuses both at Prepare (AssignIfNames). Subrequests of one
// request are alternatives (only one is allocated), so they may share a
// name.
func checkClaimIfNames(base *field.Path, spec resourceapi.DeviceClaim) field.ErrorList {
	cfgs := decodedConfigs(spec.Config)
	// ifNameOf is the ifName the claim's configs give a request ("req" or
	// "req/sub"): the last config that sets one wins; idx -1 for none.
	ifNameOf := func(request string) (string, int) {
		name, idx := "", -1
		for i, cfg := range cfgs {
			if cfg == nil || !AppliesTo(spec.Config[i].Requests, request) {
				continue
			}
			var n *string
			switch c := cfg.(type) {
			case *VfConfig:
				n = c.IfName
			case *PfConfig:
				n = c.IfName
			}
			if n != nil {
				name, idx = *n, i
			}
		}
		return name, idx
	}
	type named struct {
		main, request, name string
		idx                 int
	}
	var (
		errs  field.ErrorList
		names []named
	)
	add := func(main, request string, count int64, all bool) {
		name, idx := ifNameOf(request)
		if idx < 0 {
			return
		}
		at := base.Index(idx).Child("opaque", "parameters", "ifName")
		switch {
		case all:
			errs = append(errs, field.Invalid(at, name, fmt.Sprintf(
				"request %q asks for all matching devices and this gives each of them the name %q; leave ifName out for that request (net1, net2, ... are given)", request, name)))
		case count > 1:
			errs = append(errs, field.Invalid(at, name, fmt.Sprintf(
				"request %q asks for %d devices and this gives each of them the name %q; leave ifName out for that request (net1, net2, ... are given)", request, count, name)))
		}
		names = append(names, named{main: main, request: request, name: name, idx: idx})
	}
	for _, r := range spec.Requests {
		if r.Exactly != nil {
			add(r.Name, r.Name, r.Exactly.Count, r.Exactly.AllocationMode == resourceapi.DeviceAllocationModeAll)
		}
		for _, sub := range r.FirstAvailable {
			add(r.Name, r.Name+"/"+sub.Name, sub.Count, sub.AllocationMode == resourceapi.DeviceAllocationModeAll)
		}
	}
	reported := map[[2]string]bool{}
	for j, b := range names {
		for _, a := range names[:j] {
			if a.main == b.main || a.name != b.name || reported[[2]string{a.main, b.main}] {
				continue
			}
			reported[[2]string{a.main, b.main}] = true
			errs = append(errs, field.Invalid(base.Index(b.idx).Child("opaque", "parameters", "ifName"), b.name, fmt.Sprintf(
				"requests %q and %q both get ifName %q (from %s and %s); each interface in the pod needs its own name",
				a.request, b.request, b.name, base.Index(a.idx), base.Index(b.idx))))
		}
	}
	return errs
}

package v1alpha1

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

// Problem is one error found in a manifest.
type Problem struct {
	// Object names the object: "ResourceClaim default/foo",
	// "VfConfig (document 2)".
	Object string
	Err    *field.Error
}

// String is the line `sriov-dra validate` prints.
func (p Problem) String() string {
	return p.Object + ": " + p.Err.Error()
}

// Warning is a rule CheckManifests could not decide from the input: it
// depends on an object the input lacks (the claim's DeviceClass) or on
// how configs of several objects merge. The driver decides it at Prepare.
type Warning struct {
	Object string
	Field  *field.Path
	Detail string
}

// String is the line `sriov-dra validate` prints.
func (w Warning) String() string {
	return "warning: " + w.Object + ": " + w.Field.String() + ": " + w.Detail
}

// ManifestReport is the result of CheckManifests.
type ManifestReport struct {
	Objects  int      // objects examined: bare configs, DeviceClasses, ResourceClaims, ResourceClaimTemplates
	Configs  int      // configs for the driver validated
	Skipped  []string // objects of other kinds, as "Kind name"
	Problems []Problem
	// Warnings are rules left to Prepare; they do not make the input
	// invalid.
	Warnings []Warning

	// driver is the DRA driver name the configs must name.
	driver string
	// classes are the policies of the DeviceClasses read so far (nil for
	// a class without one), and claims the claim configs to check
	// against them once every document is read.
	classes map[string]*Policy
	// classVLAN says which of those classes set vlan.
	classVLAN map[string]bool
	claims    []claimConfig
}

// claimConfig is one decoded config of a claim, kept for the policy check.
type claimConfig struct {
	// objectVLAN: a config of the claim sets vlan.
	objectVLAN bool
	object     string
	at         *field.Path // the config's parameters
	cfg        Config
	classes    []string // the DeviceClasses of the requests it applies to
}

// Summary is a one-line summary of the report.
func (r *ManifestReport) Summary() string {
	s := fmt.Sprintf("%d %s %s in %d %s", r.Configs, r.driver, plural(r.Configs, "config", "configs"), r.Objects, plural(r.Objects, "object", "objects"))
	switch {
	case len(r.Problems) == 0 && len(r.Warnings) > 0:
		s += fmt.Sprintf(": valid as far as the input shows; %d %s left to the driver's Prepare", len(r.Warnings), plural(len(r.Warnings), "rule", "rules"))
	case len(r.Problems) == 0:
		s += ": valid"
	default:
		s += fmt.Sprintf(": %d %s", len(r.Problems), plural(len(r.Problems), "error", "errors"))
	}
	if n := len(r.Skipped); n > 0 {
		s += fmt.Sprintf(" (%d other %s skipped)", n, plural(n, "object", "objects"))
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// CheckManifests reads YAML or JSON documents (separated by "---") and
// validates every config in them for driver, the DRA driver name the
// driver runs under (DriverName unless --driver-name says otherwise):
// bare VfConfig/PfConfig objects, and the opaque configs of DeviceClass
// (spec.config), ResourceClaim (spec.devices.config) and
// ResourceClaimTemplate (spec.spec.devices.config) objects of any
// resource.k8s.io version, and of such objects inside a List. Within one
// object it also refuses a VfConfig and a PfConfig for the same request,
// configs naming requests the claim does not have, and sriov.dra.dev
// parameters under another driver name than driver. Objects of other
// kinds are skipped. The error is for reading only; problems are in the
// report.
func CheckManifests(r io.Reader, driver string) (*ManifestReport, error) {
	rep := &ManifestReport{driver: driver}
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for n := 1; ; n++ {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read document %d: %w", n, err)
		}
		checkDocument(rep, fmt.Sprintf("document %d", n), doc)
	}
	rep.checkClaimPolicies()
	return rep, nil
}

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

func checkDocument(rep *ManifestReport, where string, doc []byte) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		rep.Problems = append(rep.Problems, Problem{Object: where, Err: field.Invalid(field.NewPath("(document)"), omit, "not valid YAML: "+oneLine(err.Error()))})
		return
	}
	if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
		return // empty document or comments only
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		rep.Problems = append(rep.Problems, Problem{Object: where, Err: field.TypeInvalid(field.NewPath("(document)"), omit, "must be an object with apiVersion and kind")})
		return
	}
	group, _, _ := strings.Cut(tm.APIVersion, "/")
	switch {
	case group == GroupName && tm.Kind == vfprov.Kind:
		// The driver's --vf-config file, checked by the driver's own rules.
		rep.Objects++
		rep.add(tm.Kind+" ("+where+")", vfprov.Check(doc))
	case group == GroupName || tm.Kind == KindVfConfig || tm.Kind == KindPfConfig:
		rep.Objects++
		rep.Configs++
		label := tm.Kind
		if label == "" {
			label = "config"
		}
		label += " (" + where + ")"
		cfg, errs := Decode(nil, doc)
		rep.add(label, errs)
		if cfg != nil && len(errs) == 0 {
			rep.warnVLAN(label, nil, []Config{cfg})
		}
	case tm.Kind == "List" && (tm.APIVersion == "v1" || tm.APIVersion == ""):
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(j, &list); err != nil {
			rep.Problems = append(rep.Problems, Problem{Object: where, Err: field.TypeInvalid(field.NewPath("items"), omit, "must be a list of objects")})
			return
		}
		for i, item := range list.Items {
			checkDocument(rep, fmt.Sprintf("%s items[%d]", where, i), item)
		}
	case group == resourceapi.GroupName && tm.Kind == "DeviceClass":
		var o resourceapi.DeviceClass
		if !rep.unmarshal(where, j, &o) {
			return
		}
		rep.Objects++
		cfgs := make([]resourceapi.DeviceClaimConfiguration, len(o.Spec.Config))
		for i, c := range o.Spec.Config {
			cfgs[i].DeviceConfiguration = c.DeviceConfiguration
		}
		rep.checkConfigs(objectName(tm.Kind, o.ObjectMeta), field.NewPath("spec", "config"), cfgs, nil)
		rep.warnVLAN(objectName(tm.Kind, o.ObjectMeta), field.NewPath("spec", "config"), decodedConfigs(cfgs))
		if rep.classes == nil {
			rep.classes = map[string]*Policy{}
		}
		rep.classes[o.Name] = nil
		if rep.classVLAN == nil {
			rep.classVLAN = map[string]bool{}
		}
		rep.classVLAN[o.Name] = setsVLAN(decodedConfigs(cfgs))
		for _, c := range o.Spec.Config {
			if c.Opaque == nil || c.Opaque.Driver != rep.driver {
				continue
			}
			if cfg, errs := Decode(nil, c.Opaque.Parameters.Raw); len(errs) == 0 {
				if pol, _ := classPolicy(cfg); pol != nil {
					rep.classes[o.Name] = pol
				}
			}
		}
	case group == resourceapi.GroupName && tm.Kind == "ResourceClaim":
		var o resourceapi.ResourceClaim
		if !rep.unmarshal(where, j, &o) {
			return
		}
		rep.Objects++
		rep.checkClaim(objectName(tm.Kind, o.ObjectMeta), field.NewPath("spec", "devices"), o.Spec.Devices)
	case group == resourceapi.GroupName && tm.Kind == "ResourceClaimTemplate":
		var o resourceapi.ResourceClaimTemplate
		if !rep.unmarshal(where, j, &o) {
			return
		}
		rep.Objects++
		rep.checkClaim(objectName(tm.Kind, o.ObjectMeta), field.NewPath("spec", "spec", "devices"), o.Spec.Spec.Devices)
	default:
		var meta struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		_ = json.Unmarshal(j, &meta)
		kind := tm.Kind
		if kind == "" {
			kind = "object without kind (" + where + ")"
		}
		rep.Skipped = append(rep.Skipped, objectName(kind, meta.Metadata))
	}
}

func (rep *ManifestReport) add(object string, errs field.ErrorList) {
	for _, e := range tidy(errs) {
		rep.Problems = append(rep.Problems, Problem{Object: object, Err: e})
	}
}

func (rep *ManifestReport) unmarshal(where string, j []byte, into any) bool {
	if err := json.Unmarshal(j, into); err != nil {
		rep.Problems = append(rep.Problems, Problem{Object: where, Err: field.Invalid(field.NewPath("(document)"), omit, "cannot read the object: "+oneLine(err.Error()))})
		return false
	}
	return true
}

func objectName(kind string, m metav1.ObjectMeta) string {
	switch {
	case m.Name == "" && m.GenerateName != "":
		return kind + " " + m.GenerateName + "*"
	case m.Namespace != "":
		return kind + " " + m.Namespace + "/" + m.Name
	case m.Name != "":
		return kind + " " + m.Name
	}
	return kind
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

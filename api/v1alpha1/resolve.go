package v1alpha1

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resolved is the configuration of one allocated device after merging
// every config that applies to its request, applying defaults and
// normalising values: what the driver applies. Pointer fields are VF
// settings applied through the PF; nil leaves the VF as it is.
type Resolved struct {
	Kind   string // KindVfConfig or KindPfConfig
	Driver string // DriverNetdevice (default) or DriverVFIOPCI
	// IfName is the configured name in the pod, "" when none was set:
	// AssignIfNames then gives net1, net2, ...
	IfName string
	MTU    int // 0: keep the device's MTU
	// MAC is "" (keep the VF's), MACAuto (the driver makes one) or a
	// lower-case "xx:xx:xx:xx:xx:xx".
	MAC string

	VLAN      *int
	VLANQoS   *int    // defaults to 0 when VLAN is set
	VLANProto *string // defaults to "802.1q" when VLAN is set
	SpoofChk  *bool
	Trust     *bool
	LinkState *string
	MinTxRate *int // Mbps
	MaxTxRate *int // Mbps

	// GUID is "", GUIDAuto (the driver picks one) or a lower-case
	// "xx:xx:xx:xx:xx:xx:xx:xx".
	GUID          string
	PKey          PKey // 0: none
	RDMAIsolation bool
	// GUIDPrefix is the class's policy.guidPrefix (lower-case), "" for
	// none: `guid: auto` keeps it at the start of the GUID it makes.
	GUIDPrefix string
	// RDMAManagement gives the container the umad/issm devices.
	RDMAManagement bool

	// IPAM is the compact JSON of the CNI IPAM configuration, nil for none.
	IPAM   json.RawMessage
	Routes []Route

	IRQAffinity string // IRQAffinityNone (default) or IRQAffinityContainer
}

// VFIO reports whether the device is bound to vfio-pci (no netdev in the pod).
func (r *Resolved) VFIO() bool { return r.Driver == DriverVFIOPCI }

// AppliesTo reports whether a config scoped to requests applies to the
// request named request ("req" or "req/subreq"). An empty list applies to
// every request; "req" in the list applies to "req" and its subrequests.
func AppliesTo(requests []string, request string) bool {
	if len(requests) == 0 {
		return true
	}
	main, _, _ := strings.Cut(request, "/")
	for _, r := range requests {
		if r == request || r == main {
			return true
		}
	}
	return false
}

// Device kinds for Resolve; the same values as inventory.Kind.
const (
	DeviceVF = "vf"
	DevicePF = "pf"
)

// Resolve merges the configs of an allocation result that apply to one
// request and returns the resolved configuration of its device.
//
// path is where configs sit (e.g. status.allocation.devices.config);
// errors name configs by their index in it. driver is the DRA driver name
// the driver runs under (--driver-name): configs whose opaque.driver names
// another driver, or scoped to other requests, are ignored here;
// ForeignConfigs finds those among them that were meant for this one. Class configs
// come first, then claim configs, each in their order; later configs win
// field by field, after the claim's configs were checked against the
// policy of the class's configs (class names the DeviceClass in errors;
// see policy.go). A VfConfig and a PfConfig for the same request is an
// error, and so is a config kind that does not fit deviceKind (a VfConfig
// for a PF); deviceKind "" skips that check. With no config at all the
// defaults of deviceKind's config kind are returned.
func Resolve(path *field.Path, configs []resourceapi.DeviceAllocationConfiguration, driver, request, class, deviceKind string) (*Resolved, field.ErrorList) {
	res, errs := resolve(path, configs, driver, request, class, deviceKind)
	// Decode shortened what the configs' values put in errors; the field
	// paths of the policy check carry a claim's own keys too.
	for _, e := range errs {
		e.Field = shownField(e.Field)
	}
	return res, errs
}

func resolve(path *field.Path, configs []resourceapi.DeviceAllocationConfiguration, driver, request, class, deviceKind string) (*Resolved, field.ErrorList) {
	type decoded struct {
		idx     int
		at      *field.Path
		cfg     Config
		byClaim bool
	}
	var (
		list []decoded
		errs field.ErrorList
	)
	for _, source := range []resourceapi.AllocationConfigSource{resourceapi.AllocationConfigSourceClass, resourceapi.AllocationConfigSourceClaim} {
		for i, c := range configs {
			if c.Opaque == nil || c.Opaque.Driver != driver || !AppliesTo(c.Requests, request) {
				continue
			}
			if c.Source != resourceapi.AllocationConfigSourceClass && c.Source != resourceapi.AllocationConfigSourceClaim {
				if source == resourceapi.AllocationConfigSourceClass {
					errs = append(errs, field.NotSupported(path.Index(i).Child("source"), string(c.Source),
						[]resourceapi.AllocationConfigSource{resourceapi.AllocationConfigSourceClass, resourceapi.AllocationConfigSourceClaim}))
				}
				continue
			}
			if c.Source != source {
				continue
			}
			at := path.Index(i).Child("opaque", "parameters")
			cfg, derrs := Decode(at, c.Opaque.Parameters.Raw)
			errs = append(errs, derrs...)
			if cfg != nil {
				list = append(list, decoded{idx: i, at: at, cfg: cfg, byClaim: source == resourceapi.AllocationConfigSourceClaim})
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	kind := KindVfConfig
	if deviceKind == DevicePF {
		kind = KindPfConfig
	}
	if len(list) > 0 {
		kind = list[0].cfg.GetKind()
		for _, d := range list[1:] {
			if k := d.cfg.GetKind(); k != kind {
				errs = append(errs, field.Invalid(d.at.Child("kind"), k, fmt.Sprintf(
					"request %q also gets a %s from config[%d]; a device is either a VF (VfConfig) or a whole PF (PfConfig), not both", request, kind, list[0].idx)))
			}
		}
		if deviceKind == DeviceVF && kind == KindPfConfig {
			errs = append(errs, field.Invalid(list[0].at.Child("kind"), kind, fmt.Sprintf("request %q was allocated a VF; configure it with kind: VfConfig", request)))
		}
		if deviceKind == DevicePF && kind == KindVfConfig {
			errs = append(errs, field.Invalid(list[0].at.Child("kind"), kind, fmt.Sprintf("request %q was allocated a whole PF; configure it with kind: PfConfig", request)))
		}
		if len(errs) > 0 {
			return nil, errs
		}
	}

	// The class's policy bounds what the claim's configs may set.
	var (
		pol       *Policy
		classIPAM json.RawMessage
	)
	for _, d := range list {
		if d.byClaim {
			continue
		}
		p, ipam := classPolicy(d.cfg)
		if p != nil {
			pol = p
		}
		if ipam != nil {
			classIPAM = ipam
		}
	}
	for _, d := range list {
		if d.byClaim {
			errs = append(errs, checkClaimConfig(d.at, d.cfg, pol, class)...)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	// Merge field by field, remembering which config set each field so that
	// errors found in the merged result point at it.
	var merged Config = &VfConfig{}
	if kind == KindPfConfig {
		merged = &PfConfig{}
	}
	origin := map[string]*field.Path{}
	claimIPAM := false
	for _, d := range list {
		mergeInto(merged, d.cfg, d.at, origin)
		if _, ipam, _ := claimValues(d.cfg); ipam != nil {
			claimIPAM = d.byClaim
		}
	}
	if claimIPAM {
		setIPAM(merged, overlayIPAM(classIPAM, ipamOf(merged)))
	}
	at := func(name string) *field.Path {
		if p, ok := origin[name]; ok {
			return p.Child(name)
		}
		if len(list) > 0 {
			return list[len(list)-1].at.Child(name)
		}
		return path.Child(name)
	}
	if errs := validate(merged, at, true); len(errs) > 0 {
		return nil, errs
	}
	return resolvedFrom(merged), nil
}

// mergeInto copies every set field of src over dst (both the same kind)
// and records where it came from. It works by reflection over the struct so
// that no field can be forgotten.
func mergeInto(dst, src Config, at *field.Path, origin map[string]*field.Path) {
	dv := reflect.ValueOf(dst).Elem()
	sv := reflect.ValueOf(src).Elem()
	eachJSONField(dv.Type(), func(i int, name string) {
		s := sv.Field(i)
		if s.IsNil() { // every config field is a pointer or a slice
			return
		}
		dv.Field(i).Set(s)
		origin[name] = at
	})
}

// resolvedFrom applies defaults and normalises a valid merged config.
func resolvedFrom(c Config) *Resolved {
	r := &Resolved{Driver: DriverNetdevice, IRQAffinity: IRQAffinityNone}
	common := func(ifName *string, mtu *int, driver *string, ipam json.RawMessage, routes []Route) {
		if ifName != nil {
			r.IfName = *ifName
		}
		if mtu != nil {
			r.MTU = *mtu
		}
		if driver != nil {
			r.Driver = *driver
		}
		if ipam != nil {
			r.IPAM = slices.Clone(ipam)
		}
		if routes != nil {
			r.Routes = slices.Clone(routes)
		}
	}
	switch c := c.(type) {
	case *PfConfig:
		r.Kind = KindPfConfig
		common(c.IfName, c.MTU, c.Driver, c.IPAM, c.Routes)
	case *VfConfig:
		r.Kind = KindVfConfig
		common(c.IfName, c.MTU, c.Driver, c.IPAM, c.Routes)
		if c.MAC != nil {
			if *c.MAC == MACAuto {
				r.MAC = MACAuto
			} else {
				r.MAC, _ = ParseMAC(*c.MAC) // validated before
			}
		}
		r.VLAN = clone(c.VLAN)
		r.VLANQoS = clone(c.VLANQoS)
		r.VLANProto = clone(c.VLANProto)
		if r.VLAN != nil {
			if r.VLANQoS == nil {
				r.VLANQoS = new(int)
			}
			if r.VLANProto == nil {
				r.VLANProto = new(VLANProto8021Q)
			}
		}
		r.SpoofChk = clone(c.SpoofChk)
		r.Trust = clone(c.Trust)
		r.LinkState = clone(c.LinkState)
		r.MinTxRate = clone(c.MinTxRate)
		r.MaxTxRate = clone(c.MaxTxRate)
		if c.GUID != nil {
			if *c.GUID == GUIDAuto {
				r.GUID = GUIDAuto
			} else {
				r.GUID, _ = ParseGUID(*c.GUID) // validated before
			}
		}
		if c.PKey != nil {
			r.PKey = *c.PKey
		}
		if c.RDMAIsolation != nil {
			r.RDMAIsolation = *c.RDMAIsolation
		}
		if c.IRQAffinity != nil {
			r.IRQAffinity = *c.IRQAffinity
		}
		if c.Policy != nil && c.Policy.GUIDPrefix != nil {
			r.GUIDPrefix, _ = ParseGUIDPrefix(*c.Policy.GUIDPrefix) // validated before
		}
		r.RDMAManagement = c.Policy != nil && c.Policy.RDMAManagement != nil && *c.Policy.RDMAManagement
	}
	return r
}

// clone copies a pointer's value so the result shares nothing with the
// decoded configs.
func clone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	return new(*p)
}

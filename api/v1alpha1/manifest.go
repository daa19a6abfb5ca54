package v1alpha1

// This file reads YAML or JSON manifests document by document, sends each
// object to its checks and collects the report `sriov-dra validate` prints.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

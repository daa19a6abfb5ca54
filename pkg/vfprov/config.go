// Package vfprov provisions SR-IOV VFs: it reads the admin's NodeConfig
// (which PFs get how many VFs, and optionally which driver the VFs are left
// on), compares it with sysfs and writes sriov_numvfs (and the VFs' driver)
// for the PFs the config selects, never for any other PF. It does not know
// which VFs are in use; the caller says so (the driver's checkpointed
// State), and a PF with a VF in use is left alone until it is free.
package vfprov

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// APIVersion and Kind of the config file.
const (
	APIVersion = "sriov.dra.dev/v1alpha1"
	Kind       = "NodeConfig"
)

// NodeConfig is the config file: the VF count of each selected PF.
type NodeConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// PFs lists the PFs the driver manages. A PF no entry selects is never
	// touched; a PF two entries select is an error for that PF.
	PFs []PFConfig `json:"pfs"`
}

// PFConfig selects PFs by exactly one of: interfaceName, pciAddress, or
// vendor and device together; and says how many VFs they get.
type PFConfig struct {
	InterfaceName string `json:"interfaceName,omitempty"`
	PCIAddress    string `json:"pciAddress,omitempty"`
	Vendor        string `json:"vendor,omitempty"` // "8086" (0x prefix allowed)
	Device        string `json:"device,omitempty"` // the PF's device ID, "10c9"
	// NumVFs is the number of VFs (0 turns SR-IOV off); required.
	NumVFs *int `json:"numVfs"`
	// VFDriver, when set, is the driver the VFs are bound to after they
	// are created (e.g. vfio-pci); empty leaves them on the kernel's choice.
	VFDriver string `json:"vfDriver,omitempty"`
}

var (
	pciRE    = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	hex4RE   = regexp.MustCompile(`^[0-9a-f]{4}$`)
	ifnameRE = regexp.MustCompile(`^[^/\s:]{1,15}$`)
	driverRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Parse strictly decodes and validates a config (YAML or JSON): unknown
// fields, wrong types and invalid values are errors naming the field.
func Parse(raw []byte) (*NodeConfig, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, err
	}
	// Field names match case-sensitively (numVFs is not numVfs), and
	// unknown or repeated fields are errors that name the field.
	var c NodeConfig
	strict, err := kjson.UnmarshalStrict(js, &c, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	if errs := c.Validate(); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return &c, nil
}

// Check decodes and validates raw by the rules of Parse and returns every
// problem as a field error, for `sriov-dra validate`: unknown, misspelt
// and repeated fields name their path, wrong types the document.
func Check(raw []byte) field.ErrorList {
	doc := field.NewPath("(document)")
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return field.ErrorList{field.Invalid(doc, field.OmitValueType{}, "not valid YAML: "+err.Error())}
	}
	var c NodeConfig
	strict, err := kjson.UnmarshalStrict(js, &c, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return field.ErrorList{field.Invalid(doc, field.OmitValueType{}, err.Error())}
	}
	var errs field.ErrorList
	for _, e := range strict {
		p := doc
		var fe kjson.FieldError
		if errors.As(e, &fe) {
			p = field.NewPath(fe.FieldPath())
		}
		errs = append(errs, field.Forbidden(p, e.Error()))
	}
	return append(errs, c.Validate()...)
}

// Load reads and parses the config file at path.
func Load(path string) (*NodeConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read VF config: %w", err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("VF config %s: %w", path, err)
	}
	return c, nil
}

// norm lowercases a hex ID and drops a 0x prefix.
func norm(s string) string { return strings.TrimPrefix(strings.ToLower(s), "0x") }

// Validate checks the config; errors name the field (pfs[1].numVfs).
func (c *NodeConfig) Validate() field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{APIVersion}))
	}
	if c.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{Kind}))
	}
	for i := range c.PFs {
		p := field.NewPath("pfs").Index(i)
		pf := &c.PFs[i]
		n := 0
		if pf.InterfaceName != "" {
			n++
			if !ifnameRE.MatchString(pf.InterfaceName) {
				errs = append(errs, field.Invalid(p.Child("interfaceName"), pf.InterfaceName, "not a network interface name (1-15 characters, no '/', ':' or white space)"))
			}
		}
		if pf.PCIAddress != "" {
			n++
			if !pciRE.MatchString(strings.ToLower(pf.PCIAddress)) {
				errs = append(errs, field.Invalid(p.Child("pciAddress"), pf.PCIAddress, "want a full PCI address, e.g. 0000:3b:00.0"))
			}
		}
		if pf.Vendor != "" || pf.Device != "" {
			n++
			if pf.Vendor == "" || pf.Device == "" {
				errs = append(errs, field.Required(p.Child("vendor"), "vendor and device select together; give both"))
			}
			if pf.Vendor != "" && !hex4RE.MatchString(norm(pf.Vendor)) {
				errs = append(errs, field.Invalid(p.Child("vendor"), pf.Vendor, "want 4 hex digits, e.g. 8086"))
			}
			if pf.Device != "" && !hex4RE.MatchString(norm(pf.Device)) {
				errs = append(errs, field.Invalid(p.Child("device"), pf.Device, "want 4 hex digits, e.g. 10c9"))
			}
		}
		switch {
		case n == 0:
			errs = append(errs, field.Required(p, "select the PF by one of interfaceName, pciAddress, or vendor and device"))
		case n > 1:
			errs = append(errs, field.Invalid(p, "", "give exactly one selector: interfaceName, pciAddress, or vendor and device"))
		}
		switch {
		case pf.NumVFs == nil:
			errs = append(errs, field.Required(p.Child("numVfs"), "the number of VFs (0 turns SR-IOV off)"))
		case *pf.NumVFs < 0:
			errs = append(errs, field.Invalid(p.Child("numVfs"), *pf.NumVFs, "must be 0 or more"))
		}
		if pf.VFDriver != "" && !driverRE.MatchString(pf.VFDriver) {
			errs = append(errs, field.Invalid(p.Child("vfDriver"), pf.VFDriver, "not a kernel driver name"))
		}
	}
	return errs
}

// selects reports whether the entry selects the PF.
func (e *PFConfig) selects(pf *PF) bool {
	switch {
	case e.InterfaceName != "":
		return pf.IfName == e.InterfaceName
	case e.PCIAddress != "":
		return strings.EqualFold(pf.PCIAddress, e.PCIAddress)
	default:
		return norm(e.Vendor) == pf.Vendor && norm(e.Device) == pf.Device
	}
}

// describe names the entry's selector for messages.
func (e *PFConfig) describe(i int) string {
	switch {
	case e.InterfaceName != "":
		return fmt.Sprintf("pfs[%d] (interfaceName %s)", i, e.InterfaceName)
	case e.PCIAddress != "":
		return fmt.Sprintf("pfs[%d] (pciAddress %s)", i, e.PCIAddress)
	default:
		return fmt.Sprintf("pfs[%d] (vendor %s device %s)", i, e.Vendor, e.Device)
	}
}

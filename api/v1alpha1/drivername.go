package v1alpha1

import (
	"fmt"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ForeignConfigs finds the configs of an allocation that carry this API's
// parameters (apiVersion sriov.dra.dev/...) under another opaque.driver
// than driver, the name the driver runs under (--driver-name), and that
// apply to request, one of its requests, but to no request a device of
// the driver they name was allocated for. Such a config was meant for
// this driver: Resolve, which takes only configs naming driver, would
// drop it and the pod would get its device without the VLAN, MAC or IPAM
// it asks for. The usual cause is a DeviceClass or claim still naming
// sriov.dra.dev while the driver runs under another name.
//
// A config for a second copy of this driver under another name is left
// alone when that copy has a device in the claim for a request the config
// applies to. path is where configs sit, as for Resolve.
func ForeignConfigs(path *field.Path, alloc *resourceapi.DeviceAllocationResult, driver, request string) field.ErrorList {
	var errs field.ErrorList
	for i, c := range alloc.Config {
		if c.Opaque == nil || c.Opaque.Driver == driver || !AppliesTo(c.Requests, request) || !looksLikeOurs(c.Opaque.Parameters.Raw) {
			continue
		}
		theirs := false
		for _, r := range alloc.Results {
			if r.Driver == c.Opaque.Driver && AppliesTo(c.Requests, r.Request) {
				theirs = true
				break
			}
		}
		if !theirs {
			errs = append(errs, field.Invalid(path.Index(i).Child("opaque", "driver"), c.Opaque.Driver, fmt.Sprintf(
				"the parameters are %s and apply to request %q, whose device comes from %s (the name this driver runs under), but to no request with a device of %s; set driver: %s",
				APIVersion, request, driver, c.Opaque.Driver, driver)))
		}
	}
	return errs
}

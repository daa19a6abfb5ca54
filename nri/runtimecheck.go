package nri

import (
	"context"
	"fmt"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/klog/v2"
)

// runtimeSupport is what the plugin knows about the versions of one
// container runtime, by the name the runtime gives in Configure.
type runtimeSupport struct {
	// minimum is the oldest version the plugin works with; an older
	// runtime is refused at connect time with tooOld as the reason.
	minimum string
	tooOld  string
	// oldestTested is the oldest version the e2e matrix passed on
	// (docs/install.md, "Tested with"); versions between minimum and it
	// get a warning.
	oldestTested string
}

// supportOf is what the plugin knows about the runtime that calls itself
// name in Configure. The cluster e2e matrix (make e2e-matrix) is the
// evidence for each entry.
func supportOf(name string) (runtimeSupport, bool) {
	switch name {
	case "containerd":
		return runtimeSupport{
			minimum:      "1.7.0",
			tooOld:       "containerd gained NRI in 1.7.0; older versions never call NRI plugins, so no pod would get its netdev",
			oldestTested: "1.7.35",
		}, true
	case "cri-o":
		return runtimeSupport{
			minimum:      "1.26.0",
			tooOld:       "CRI-O gained NRI in 1.26.0; older versions never call NRI plugins, so no pod would get its netdev",
			oldestTested: "1.34.0",
		}, true
	}
	return runtimeSupport{}, false
}

// checkRuntime says whether the plugin can work with the runtime that
// announced itself as name and ver: an error (refuse the connection)
// when it cannot, a warning (connect, but say so) when it may, or both
// empty.
func checkRuntime(name, ver string) (warning string, err error) {
	support, ok := supportOf(name)
	if !ok {
		return fmt.Sprintf("container runtime %q is not one this driver was tested with (containerd, cri-o); pods may not get their netdevs", name), nil
	}
	v, perr := version.ParseGeneric(ver)
	if perr != nil {
		return fmt.Sprintf("container runtime %s reports version %q, which is not a version number; cannot tell whether it supports this driver", name, ver), nil
	}
	if v.LessThan(version.MustParseGeneric(support.minimum)) {
		return "", fmt.Errorf("container runtime %s %s is not supported: %s (need %s %s or newer)", name, ver, support.tooOld, name, support.minimum)
	}
	if v.LessThan(version.MustParseGeneric(support.oldestTested)) {
		return fmt.Sprintf("container runtime %s %s is older than the oldest version this driver was tested with (%s %s, see docs/install.md)", name, ver, name, support.oldestTested), nil
	}
	return "", nil
}

// Configure is the runtime's first request after the plugin registers;
// it names the runtime and its version. The plugin logs them (with the
// NRI version that runtime version ships) and refuses a runtime it cannot
// work with, so the reason is in the driver's log at connect time instead
// of in pods that lack their netdevs. It subscribes to the events of the
// hooks the plugin implements (mask 0).
func (p *Plugin) Configure(ctx context.Context, _, runtime, runtimeVersion string) (api.EventMask, error) {
	logger := klog.FromContext(ctx).WithValues("runtime", runtime, "runtimeVersion", runtimeVersion)
	if nriVersion, err := api.InferVersionFromRuntime(runtime, runtimeVersion); err == nil {
		logger = logger.WithValues("runtimeNRIVersion", nriVersion)
	}
	warning, err := checkRuntime(runtime, runtimeVersion)
	if err != nil {
		logger.Error(err, "Refusing the NRI connection: unsupported container runtime")
		return 0, err
	}
	if warning != "" {
		logger.Info("Container runtime not tested with this driver", "reason", warning)
	}
	p.runtime.Store(&runtimeInfo{name: runtime, version: runtimeVersion})
	logger.Info("NRI runtime identified")
	return 0, nil
}

// runtimeInfo is the runtime the plugin is (or was last) connected to.
type runtimeInfo struct {
	name, version string
}

// Runtime returns the name and version of the runtime the plugin last
// connected to ("" before the first connection).
func (p *Plugin) Runtime() (name, version string) {
	if r := p.runtime.Load(); r != nil {
		return r.name, r.version
	}
	return "", ""
}

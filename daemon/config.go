package daemon

// This file holds the daemon's Config: the command's flags, the seams the
// tests use, and the defaults New fills in.

import (
	"context"
	"errors"
	"time"

	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// Config is the daemon's configuration: the command's flags, plus the
// seams the tests use.
type Config struct {
	NodeName, DriverName string
	// HostRoot is the host filesystem root (sys, proc, dev below it): "/"
	// on a node, a fixture tree in tests.
	HostRoot string
	// StateDir holds the checkpoint (0700) and the IPAM data.
	StateDir string
	CDIDir   string
	// AttachMarkerDir is the directory of the "attached" markers;
	// AttachMarkerHostDir the same as the runtime sees it ("": the same).
	AttachMarkerDir, AttachMarkerHostDir string
	// KubeletPluginsDir is the driver's kubelet plugin directory ("":
	// <kubelet plugins dir>/<driver name>), KubeletRegistryDir kubelet's
	// registration directory ("": kubelet's default).
	KubeletPluginsDir, KubeletRegistryDir string
	// Filter is the admin's device filter (empty: all devices).
	Filter inventory.Filter
	// VFConfig is the VF provisioning file ("": the daemon never writes
	// sriov_numvfs).
	VFConfig string
	// PassthroughPFs are the PFs offered whole (names or PCI addresses).
	PassthroughPFs []string
	// CNIPath lists the directories of the CNI IPAM plugins.
	CNIPath []string
	// NRI is the NRI plugin's socket, index and timing; its AttachMarks
	// and ObserveHook are the daemon's own (New sets them).
	NRI nri.Config
	// PodUID is the daemon pod's UID: it names the checkpoint's owner and
	// enables kubelet plugin rolling updates ("": no rolling updates).
	PodUID string
	// RegistrationTimeout is how long kubelet may take to register the
	// plugin; 0 means 2 minutes.
	RegistrationTimeout time.Duration
	// PollInterval is the slow device rescan; 0 means 1 s.
	PollInterval time.Duration
	// MetricsAddr serves /metrics and /healthz over TCP ("": off);
	// HealthSocket serves them over a unix socket ("": off).
	MetricsAddr, HealthSocket string

	// API is the API server (required): claims for the kubelet server,
	// ResourceSlices, claim status, Events, DeviceClasses.
	API *kubeapi.Client
	// Netlink is a handle in the host netns; nil opens one (closed when
	// the daemon ends). A handle given here stays the caller's.
	Netlink nlink.Handle
	// Scanner reads the host's devices; nil means inventory.Scanner over
	// HostRoot and Netlink with Filter (a test may wrap that one to count
	// its scans).
	Scanner driver.Scanner
	// DeviceEvents are the kernel's device events (uevents and link
	// events) that rescan the PFs they concern; nil means
	// hwevents.Kernel{Links: true}. Tests over a simulated host give a
	// quiet source (the full rescan is then the only one).
	DeviceEvents hwevents.Source
	// LostDeviceTimeout is how long a pod's deletion waits for a device
	// that is gone before the claim is released without it; 0 means
	// driver.DefaultLostDeviceTimeout.
	LostDeviceTimeout time.Duration
	// DeviceMetadata turns on the kubelet plugin helper's device metadata
	// file in each container (KEP-5304).
	DeviceMetadata bool
	// AllowDefaultRoutePF lists a PF that carries the default route (the
	// VM tests' only NICs); production never sets it.
	AllowDefaultRoutePF bool
}

// complete checks cfg and fills in the defaults.
func (c *Config) complete() error {
	switch {
	case c.NodeName == "":
		return errors.New("daemon config: NodeName (--node-name) is required")
	case c.DriverName == "":
		return errors.New("daemon config: DriverName (--driver-name) is required")
	case c.API == nil:
		return errors.New("daemon config: API is required")
	case c.StateDir == "":
		return errors.New("daemon config: StateDir (--state-dir) is required")
	}
	if c.HostRoot == "" {
		c.HostRoot = "/"
	}
	if c.CDIDir == "" {
		c.CDIDir = cdi.DefaultDir
	}
	if c.AttachMarkerDir == "" {
		c.AttachMarkerDir = attachmark.DefaultDir
	}
	if c.KubeletRegistryDir == "" {
		c.KubeletRegistryDir = kubeletserver.DefaultRegistryDir
	}
	if c.KubeletPluginsDir == "" {
		c.KubeletPluginsDir = kubeletserver.DefaultPluginDir(c.DriverName)
	}
	if c.RegistrationTimeout <= 0 {
		c.RegistrationTimeout = 2 * time.Minute
	}
	if c.DeviceEvents == nil {
		c.DeviceEvents = hwevents.Kernel{Links: true}
	}
	return nil
}

// withLogger names the node and the driver in ctx's logger.
func withLogger(ctx context.Context, cfg Config) context.Context {
	return klog.NewContext(ctx, klog.FromContext(ctx).WithValues("node", cfg.NodeName, "driver", cfg.DriverName))
}

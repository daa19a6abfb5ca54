package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/dynamic-resource-allocation/api/metadata"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/daemon"
	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
)

// driverOptions are the daemon's flags; each is mirrored by the
// environment variable named in envOf.
type driverOptions struct {
	nodeName, driverName, hostRoot, stateDir, cdiDir string
	attachMarkerDir, attachMarkerHostDir             string
	pluginsDir, registryDir, deviceFilter            string
	vfConfig                                         string
	passthroughPFs                                   []string
	metricsAddr, healthSocket                        string
	nriSocket, nriPluginIndex                        string
	cniPath, kubeconfig, podUID                      string
	registrationTimeout, pollInterval                time.Duration
	deviceMetadata                                   bool
	lostDeviceTimeout                                time.Duration
	resyncInterval                                   time.Duration
	memoryLimit                                      string
}

// envOf maps flag names to the environment variables that set them when
// the flag is not given.
var envOf = map[string]string{
	"node-name":              "NODE_NAME",
	"driver-name":            "DRIVER_NAME",
	"host-root":              "HOST_ROOT",
	"state-dir":              "STATE_DIR",
	"cdi-dir":                "CDI_DIR",
	"attach-marker-dir":      "ATTACH_MARKER_DIR",
	"attach-marker-host-dir": "ATTACH_MARKER_HOST_DIR",
	"kubelet-plugins-dir":    "KUBELET_PLUGINS_DIR",
	"kubelet-registry-dir":   "KUBELET_REGISTRY_DIR",
	"device-filter":          "DEVICE_FILTER",
	"vf-config":              "VF_CONFIG",
	"passthrough-pfs":        "PASSTHROUGH_PFS",
	"metrics-addr":           "METRICS_ADDR",
	"health-socket":          "HEALTH_SOCKET",
	"nri-socket":             "NRI_SOCKET",
	"nri-plugin-index":       "NRI_PLUGIN_INDEX",
	"cni-path":               "CNI_PATH",
	"kubeconfig":             "KUBECONFIG",
	"pod-uid":                "POD_UID",
	"registration-timeout":   "REGISTRATION_TIMEOUT",
	"poll-interval":          "POLL_INTERVAL",
	"device-metadata":        "DEVICE_METADATA",
	"lost-device-timeout":    "LOST_DEVICE_TIMEOUT",
	"resync-interval":        "RESYNC_INTERVAL",
	"memory-limit":           "MEMORY_LIMIT",
}

func newDriverCmd() *cobra.Command {
	var o driverOptions
	cmd := &cobra.Command{
		Use:   "driver",
		Short: "Run the node daemon: the DRA kubelet plugin and the NRI plugin",
		Long: `Run the node daemon. It publishes the node's SR-IOV devices as ResourceSlices,
prepares and unprepares claims for kubelet (VF settings, GUIDs, vfio binding,
IPAM, CDI specs, all recorded in a checkpoint), and moves the netdevs into pod
network namespaces through NRI. Every flag can also be set through the
environment variable shown in its help; a flag given on the command line wins.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.nodeName == "" {
				return exitError{code: 2, err: errors.New("--node-name (NODE_NAME) is required")}
			}
			return runDriver(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.nodeName, "node-name", "", "this node's name (the pool name)")
	f.StringVar(&o.driverName, "driver-name", "sriov.dra.dev", "DRA driver name")
	f.StringVar(&o.hostRoot, "host-root", "/", "host filesystem root (sys, proc, dev below it)")
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/sriov-dra", "directory of the checkpoint (0700)")
	f.StringVar(&o.cdiDir, "cdi-dir", cdi.DefaultDir, "directory of the per-claim CDI specs")
	f.StringVar(&o.attachMarkerDir, "attach-marker-dir", attachmark.DefaultDir, "directory of the per-device \"attached\" markers a netdevice's container bind-mounts: the runtime cannot create the container until the NRI plugin attached the device and created its marker")
	f.StringVar(&o.attachMarkerHostDir, "attach-marker-host-dir", "", "the --attach-marker-dir as the container runtime on the host sees it (default: the same path)")
	f.StringVar(&o.pluginsDir, "kubelet-plugins-dir", "", "the driver's kubelet plugin directory (default <kubelet plugins dir>/<driver name>)")
	f.StringVar(&o.registryDir, "kubelet-registry-dir", kubeletserver.DefaultRegistryDir, "kubelet's plugin registration directory")
	f.StringVar(&o.deviceFilter, "device-filter", "", "YAML/JSON file with the admin's device filter")
	f.StringVar(&o.vfConfig, "vf-config", "", "YAML file (sriov.dra.dev/v1alpha1 NodeConfig) with the VF count of each PF the driver provisions; re-read when it changes, a missing file means none (empty: the driver never writes sriov_numvfs)")
	f.StringSliceVar(&o.passthroughPFs, "passthrough-pfs", nil, "PFs (netdev names or PCI addresses) offered whole to pods instead of their VFs; PF passthrough is opt-in, and a listed PF with SR-IOV on (sriov_numvfs above 0) or that the host uses (global addresses, routes in any table, a master or upper links) is refused and logged")
	f.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9478", "address of /metrics and /healthz, which have no authentication: loopback by default, \":9478\" for every address (empty: off); while the daemon being replaced in a rolling update holds it, binding is retried")
	f.StringVar(&o.healthSocket, "health-socket", "", "unix socket serving /healthz too, private to this daemon (for the sriov-dra healthz exec probe; empty: off)")
	f.StringVar(&o.nriSocket, "nri-socket", nri.DefaultSocketPath, "the runtime's NRI socket")
	f.StringVar(&o.nriPluginIndex, "nri-plugin-index", nri.DefaultPluginIndex, "two-digit NRI plugin index")
	f.StringVar(&o.cniPath, "cni-path", ipam.DefaultCNIPath, "directories of the CNI IPAM plugins, colon separated")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (empty: in-cluster config)")
	f.StringVar(&o.podUID, "pod-uid", "", "this pod's UID, enables kubelet plugin rolling updates")
	f.DurationVar(&o.registrationTimeout, "registration-timeout", 2*time.Minute, "how long to wait for kubelet to register the plugin")
	f.DurationVar(&o.resyncInterval, "resync-interval", driver.DefaultResyncInterval, "full device rescan, a safety net: device changes (uevents, link events) rescan their PF when they happen")
	f.DurationVar(&o.pollInterval, "poll-interval", 0, "deprecated: the old every-second rescan; when set, it is the full rescan interval instead of --resync-interval")
	_ = f.MarkDeprecated("poll-interval", "devices are rescanned when the kernel reports a change; use --resync-interval (default 1m) for the safety-net full rescan")
	f.StringVar(&o.memoryLimit, "memory-limit", "", "the container's memory limit (bytes or a quantity, from the downward API): the Go runtime's soft limit is set to 80% of it, unless GOMEMLIMIT is set (empty: none)")
	f.BoolVar(&o.deviceMetadata, "device-metadata", true, "give each container a read-only file describing its devices (KEP-5304 device metadata: interface name, MAC, IPs, PCI address, VLAN, GUID, RDMA and vfio device nodes) under "+metadata.ContainerDir+"; the kubelet plugin helper writes it and mounts it through CDI (docs/config.md)")
	f.DurationVar(&o.lostDeviceTimeout, "lost-device-timeout", driver.DefaultLostDeviceTimeout, "how long a pod's deletion waits for a device that is gone (removed VF, hot-unplug) before the claim is released without it and the device is recorded as lost")
	f.VisitAll(func(fl *pflag.Flag) {
		if env, ok := envOf[fl.Name]; ok {
			fl.Usage += " [$" + env + "]"
		}
	})
	return cmd
}

// applyEnv sets every flag not given on the command line from its
// environment variable.
func applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(fl *pflag.Flag) {
		env, ok := envOf[fl.Name]
		if !ok || fl.Changed {
			return
		}
		v, set := os.LookupEnv(env)
		if !set || v == "" {
			return
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			if err := sv.Replace(strings.Split(v, ",")); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %w", env, err))
			}
			return
		}
		if err := fl.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("$%s: %w", env, err))
		}
	})
	if err := errors.Join(errs...); err != nil {
		return exitError{code: 2, err: err}
	}
	return nil
}

// kubeClient is the daemon's API client: a narrow one with a scheme of
// only the types it uses (pkg/kubeapi), not client-go's clientset, whose
// scheme registers every API group at start (docs/performance.md).
func kubeClient(kubeconfig string) (*kubeapi.Client, error) {
	cfg, err := kubeapi.LoadConfig(kubeconfig, "")
	if err != nil {
		return nil, fmt.Errorf("client config for the Kubernetes API: %w", err)
	}
	cfg.UserAgent = "sriov-dra-driver/" + version
	return kubeapi.NewForConfig(cfg)
}

// runDriver runs the daemon until SIGTERM/SIGINT or a fatal error.
func runDriver(parent context.Context, o driverOptions) error {
	ctx, stopSignals := signal.NotifyContext(parent, syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	var filter inventory.Filter
	if o.deviceFilter != "" {
		f, err := inventory.LoadFilter(o.deviceFilter)
		if err != nil {
			return fmt.Errorf("--device-filter: %w", err)
		}
		filter = f
	}
	api, err := kubeClient(o.kubeconfig)
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx)
	if pct := tuneGC(); pct > 0 {
		logger.V(2).Info("Go GC goal set", "percent", pct)
	}
	if soft, err := setMemoryLimit(o.memoryLimit); err != nil {
		return exitError{code: 2, err: err}
	} else if soft > 0 {
		logger.V(2).Info("Go memory limit set", "bytes", soft, "containerLimit", o.memoryLimit)
	}
	if o.pollInterval > 0 {
		logger.Info("--poll-interval (POLL_INTERVAL) is deprecated: devices are rescanned on kernel events; using it as --resync-interval", "interval", o.pollInterval)
	}
	d, err := daemon.New(ctx, daemonConfig(o, filter, api))
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// daemonConfig is the daemon's configuration from the flags.
func daemonConfig(o driverOptions, filter inventory.Filter, api *kubeapi.Client) daemon.Config {
	return daemon.Config{
		NodeName: o.nodeName, DriverName: o.driverName, HostRoot: o.hostRoot,
		StateDir: o.stateDir, CDIDir: o.cdiDir,
		AttachMarkerDir: o.attachMarkerDir, AttachMarkerHostDir: o.attachMarkerHostDir,
		KubeletPluginsDir: o.pluginsDir, KubeletRegistryDir: o.registryDir,
		Filter: filter, VFConfig: o.vfConfig, PassthroughPFs: o.passthroughPFs,
		CNIPath: filepath.SplitList(o.cniPath),
		NRI:     nri.Config{SocketPath: o.nriSocket, PluginIndex: o.nriPluginIndex},
		PodUID:  o.podUID, RegistrationTimeout: o.registrationTimeout, PollInterval: resyncInterval(o),
		MetricsAddr: o.metricsAddr, HealthSocket: o.healthSocket,
		LostDeviceTimeout: o.lostDeviceTimeout, DeviceMetadata: o.deviceMetadata,
		API: api,
	}
}

// resyncInterval is the full rescan: --resync-interval, or the deprecated
// --poll-interval when that is set.
func resyncInterval(o driverOptions) time.Duration {
	if o.pollInterval > 0 {
		return o.pollInterval
	}
	return o.resyncInterval
}

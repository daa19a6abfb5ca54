package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/api/metadata"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/claimstatus"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
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
	f.StringVar(&o.registryDir, "kubelet-registry-dir", kubeletplugin.KubeletRegistryDir, "kubelet's plugin registration directory")
	f.StringVar(&o.deviceFilter, "device-filter", "", "YAML/JSON file with the admin's device filter")
	f.StringVar(&o.vfConfig, "vf-config", "", "YAML file (sriov.dra.dev/v1alpha1 NodeConfig) with the VF count of each PF the driver provisions; re-read when it changes, a missing file means none (empty: the driver never writes sriov_numvfs)")
	f.StringSliceVar(&o.passthroughPFs, "passthrough-pfs", nil, "PFs (netdev names or PCI addresses) offered whole to pods instead of their VFs; PF passthrough is opt-in, and a listed PF the host uses (global addresses, routes in any table, a master or upper links) is refused and logged")
	f.StringVar(&o.metricsAddr, "metrics-addr", ":9478", "address of /metrics and /healthz (empty: off); while the daemon being replaced in a rolling update holds it, binding is retried")
	f.StringVar(&o.healthSocket, "health-socket", "", "unix socket serving /healthz too, private to this daemon (for `sriov-dra healthz` as an exec probe; empty: off)")
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

func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("Kubernetes client config: %w", err)
	}
	cfg.UserAgent = "sriov-dra-driver/" + version
	return kubernetes.NewForConfig(cfg)
}

// runDriver runs the daemon until SIGTERM/SIGINT or a fatal error.
func runDriver(parent context.Context, o driverOptions) error {
	// root is canceled with a cause only by a fatal error; SIGTERM and
	// SIGINT end sigCtx for a graceful shutdown.
	root, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	sigCtx, stopSignals := signal.NotifyContext(root, syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	logger := klog.Background().WithValues("node", o.nodeName, "driver", o.driverName)
	ctx := klog.NewContext(sigCtx, logger)
	if o.pluginsDir == "" {
		o.pluginsDir = filepath.Join(kubeletplugin.KubeletPluginsDir, o.driverName)
	}

	sockets := driver.PluginSockets(o.registryDir, o.pluginsDir, o.driverName, types.UID(o.podUID))
	if err := os.MkdirAll(o.pluginsDir, 0o700); err != nil {
		return fmt.Errorf("create kubelet plugin dir: %w", err)
	}
	if err := sockets.Check(); err != nil {
		return err
	}
	var filter inventory.Filter
	if o.deviceFilter != "" {
		f, err := inventory.LoadFilter(o.deviceFilter)
		if err != nil {
			return fmt.Errorf("--device-filter: %w", err)
		}
		filter = f
	}
	var vfSource *vfprov.Source
	if o.vfConfig != "" {
		src, err := vfprov.NewSource(o.vfConfig)
		if err != nil {
			return fmt.Errorf("--vf-config: %w", err)
		}
		if src.Config() == nil {
			logger.Info("VF config file not there; provisioning starts when it appears", "vfConfig", o.vfConfig)
		}
		vfSource = src
	}
	marks, err := attachmark.New(o.attachMarkerDir, o.attachMarkerHostDir)
	if err != nil {
		return fmt.Errorf("--attach-marker-dir: %w", err)
	}
	client, err := kubeClient(o.kubeconfig)
	if err != nil {
		return err
	}
	nl, err := nlink.NewHost()
	if err != nil {
		return err
	}
	defer nl.Close()
	// During a rolling update the old daemon runs on for a while: this one
	// takes the checkpoint over at load, and once the old one finds its
	// writes refused it leaves the runtime (NRI) to this one.
	nriCtx, stopNRI := context.WithCancel(ctx)
	defer stopNRI()
	owner := o.podUID
	if owner == "" {
		owner = fmt.Sprintf("pid-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	store, bootID, err := driver.NewOwnedFileStore(o.stateDir, o.hostRoot, owner, func(err error) {
		logger.Error(err, "Another sriov-dra daemon took over this node's state (rolling update): leaving the NRI runtime to it; kubelet already calls the new daemon")
		stopNRI()
	})
	if err != nil {
		return fmt.Errorf("open checkpoint: %w", err)
	}

	reg, metrics, hookMetrics := newMetrics()
	status := claimstatus.New(client, claimstatus.Options{DriverName: o.driverName})
	events, stopEvents := driver.NewEventRecorder(ctx, client, o.driverName, o.nodeName)
	defer stopEvents()
	if soft, err := setMemoryLimit(o.memoryLimit); err != nil {
		return exitError{code: 2, err: err}
	} else if soft > 0 {
		logger.V(2).Info("Go memory limit set", "bytes", soft, "containerLimit", o.memoryLimit)
	}
	resync := o.resyncInterval
	if o.pollInterval > 0 {
		logger.Info("--poll-interval (POLL_INTERVAL) is deprecated: devices are rescanned on kernel events; using it as --resync-interval", "interval", o.pollInterval)
		resync = o.pollInterval
	}

	var plugin *nri.Plugin
	host := driver.NewHost(o.hostRoot, nl, func(ctx context.Context, d nri.PodDevice) error {
		return plugin.DetachDevice(ctx, d)
	})
	d, err := driver.New(ctx, driver.Config{
		NodeName: o.nodeName, DriverName: o.driverName, PassthroughPFs: o.passthroughPFs, BootID: bootID,
		Store:             store,
		Scanner:           inventory.Scanner{Options: inventory.Options{Root: o.hostRoot, Netlink: nl, Filter: filter}},
		Attributes:        inventory.Attributes,
		Host:              host,
		IPAM:              ipam.New(ipam.Config{CNIPath: filepath.SplitList(o.cniPath), DataDir: filepath.Join(o.stateDir, "ipam")}),
		CDI:               cdi.New(o.cdiDir, o.hostRoot),
		AttachMarks:       marks,
		Status:            status,
		Netlink:           nl,
		Events:            events,
		Metrics:           metrics,
		DeviceEvents:      hwevents.Kernel{Links: true},
		PollInterval:      resync,
		LostDeviceTimeout: o.lostDeviceTimeout,
		VFConfig:          vfSource,
		HostRoot:          o.hostRoot,

		ClassResourceName: classResourceName(client),
		DeviceMetadata:    o.deviceMetadata,
		OnFatal: func(err error) {
			logger.Error(err, "Fatal error; shutting down")
			cancel(err)
		},
	})
	if err != nil {
		return err
	}
	nriHost, err := nri.NewHostOps(nri.HostConfig{Root: o.hostRoot, Host: nl})
	if err != nil {
		return err
	}
	plugin, err = nri.New(nriConfig(o, marks, hookMetrics), d.State(), nriHost)
	if err != nil {
		return err
	}

	registration := driver.NewRegistration()
	opts := []kubeletplugin.Option{
		kubeletplugin.KubeClient(client), kubeletplugin.NodeName(o.nodeName), kubeletplugin.DriverName(o.driverName),
		kubeletplugin.RegistrarDirectoryPath(o.registryDir), kubeletplugin.PluginDataDirectoryPath(o.pluginsDir),
		kubeletplugin.GRPCInterceptor(registration.Interceptor()),
		// The driver locks per claim and shares checkpoint fsyncs between
		// concurrent claims, so kubelet's calls need not wait for each
		// other. With rolling updates two daemons overlap: keep the
		// helper's cross-process serialization then.
		kubeletplugin.Serialize(o.podUID != ""),
	}
	if o.podUID != "" {
		opts = append(opts, kubeletplugin.RollingUpdate(types.UID(o.podUID)))
	}
	opts = append(opts, deviceMetadataOptions(o)...)
	if o.deviceMetadata {
		logger.Info("Device metadata on: containers find their devices' metadata under "+metadata.ContainerDir, "versions", metadataVersionNames(), "cdiDir", o.cdiDir)
	} else {
		logger.Info("Device metadata off (--device-metadata=false): containers get no metadata file")
	}
	helper, err := kubeletplugin.Start(ctx, d, opts...)
	if err != nil {
		return fmt.Errorf("start kubelet plugin: %w", err)
	}

	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				logger.Error(err, "Component failed; shutting down", "component", name)
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	run("resourceslices", func() error { return d.Run(ctx, helper) })
	run("nri", func() error { return plugin.Run(nriCtx) })
	run("checkpoint owner", func() error {
		// Notice a take-over even when this daemon has nothing to write.
		wait.UntilWithContext(nriCtx, func(context.Context) {
			if err := store.CheckOwner(); err != nil {
				var sup *driver.SupersededError
				if !errors.As(err, &sup) {
					logger.V(2).Info("Cannot read the checkpoint's owner", "err", err)
				}
			}
		}, 2*time.Second)
		return nil
	})
	run("claim status", func() error { status.Run(ctx, 2); return nil })
	run("registration", func() error { return registration.Wait(ctx, o.registrationTimeout, sockets) })

	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler(reg))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !registration.Registered() {
			http.Error(w, "not registered with kubelet yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok\nnri connected: %v\n", plugin.Connected())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serve := func(what string, ln net.Listener) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "HTTP server failed", "listener", what)
			}
		}()
	}
	if o.healthSocket != "" {
		ln, err := listenUnix(o.healthSocket)
		if err != nil {
			helper.Stop()
			return fmt.Errorf("--health-socket: %w", err)
		}
		serve(o.healthSocket, ln)
	}
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		switch {
		case err == nil:
			serve(o.metricsAddr, ln)
		case errors.Is(err, syscall.EADDRINUSE):
			// With host networking the daemon this one replaces in a
			// rolling update holds the port until it exits.
			logger.Info("Metrics address in use (by the daemon being replaced?); retrying every 2 s", "addr", o.metricsAddr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = wait.PollUntilContextCancel(ctx, 2*time.Second, false, func(context.Context) (bool, error) {
					ln, err := net.Listen("tcp", o.metricsAddr)
					if err != nil {
						return false, nil
					}
					logger.Info("Serving metrics", "addr", o.metricsAddr)
					serve(o.metricsAddr, ln)
					return true, nil
				})
			}()
		default:
			helper.Stop()
			return fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	logger.Info("Driver running", "registrationSocket", sockets.Registrar, "pluginSocket", sockets.Plugin, "bootID", bootID)

	<-ctx.Done()
	fatal := context.Cause(root)
	logger.Info("Shutting down", "fatal", fatal)
	helper.Stop()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	cancel(nil)
	wg.Wait()
	if fatal != nil && !errors.Is(fatal, context.Canceled) {
		return fatal
	}
	return nil
}

func metadataVersionNames() []string {
	var out []string
	for _, gv := range driver.MetadataVersions() {
		out = append(out, gv.String())
	}
	return out
}

// deviceMetadataOptions turn the kubeletplugin helper's device metadata on
// (--device-metadata): it writes each prepared request's metadata file
// below the plugin dir and its CDI spec into the driver's CDI dir, which
// the runtime reads already. Kubernetes needs no feature gate for it.
func deviceMetadataOptions(o driverOptions) []kubeletplugin.Option {
	if !o.deviceMetadata {
		return nil
	}
	return []kubeletplugin.Option{
		kubeletplugin.EnableDeviceMetadata(true, driver.MetadataVersions()),
		kubeletplugin.CDIDirectory(o.cdiDir),
		kubeletplugin.MetadataFileOps(kubeletplugin.MetadataFileOperations{WriteFile: driver.WriteMetadataFile}),
	}
}

// newMetrics is the daemon's Prometheus registry: the Go and process
// collectors, the driver's metrics and the NRI hooks'.
func newMetrics() (*prometheus.Registry, *driver.Metrics, *driver.NRIHookMetrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, driver.NewMetrics(reg), driver.NewNRIHookMetrics(reg)
}

// metricsHandler serves reg at /metrics.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// nriConfig is the NRI plugin's configuration; the hooks' latencies and
// failures go to hooks.
func nriConfig(o driverOptions, marks *attachmark.Marks, hooks *driver.NRIHookMetrics) nri.Config {
	return nri.Config{SocketPath: o.nriSocket, PluginIndex: o.nriPluginIndex, AttachMarks: marks, ObserveHook: hooks.Observe}
}

// classResourceName reads a DeviceClass's extended resource name: its
// spec.extendedResourceName, or the name Kubernetes gives a class without
// one (deviceclass.resource.kubernetes.io/<class>).
func classResourceName(client kubernetes.Interface) func(ctx context.Context, class string) (string, error) {
	return func(ctx context.Context, class string) (string, error) {
		dc, err := client.ResourceV1().DeviceClasses().Get(ctx, class, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("get DeviceClass %s: %w", class, err)
		}
		if n := dc.Spec.ExtendedResourceName; n != nil && *n != "" {
			return *n, nil
		}
		return resourceapi.ResourceDeviceClassPrefix + class, nil
	}
}

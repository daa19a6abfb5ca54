// Package daemon is the node daemon's composition root: the one place that
// wires the checkpoint, the host, the DRA driver, the NRI plugin, the
// kubelet plugin, metrics and health together. `sriov-dra driver`, the
// reliability tests and the VM tests all build the daemon with New and
// run it with Run, so every test tier runs the production wiring; what a
// test replaces (the sysfs root, the netlink handle, the kubelet and NRI
// socket paths, the API server) is a Config field, not a second wiring.
//
// The pieces and who owns what:
//
//   - the checkpoint (driver.NewOwnedFileStore): one owner per daemon
//     instance; a daemon whose checkpoint another one took over (a rolling
//     update) leaves the runtime to the new one;
//   - driver.State over it, shared by the driver and the NRI plugin;
//   - the NRI plugin (nri.Plugin): the one owner of moving netdevs in and
//     out of pod netns, the driver's Detacher;
//   - the driver (driver.Driver): Prepare/Unprepare, ResourceSlices,
//     health, VF provisioning; its host changes go through driver.Kernel;
//   - the kubelet plugin (kubeletplugin.Helper) serving the driver;
//   - /metrics and /healthz.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
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

	// Client is the API server (required).
	Client kubernetes.Interface
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

// Daemon is the node daemon: the DRA kubelet plugin and the NRI plugin over
// one checkpointed state.
type Daemon struct {
	cfg     Config
	sockets driver.SocketPaths

	driver       *driver.Driver
	plugin       *nri.Plugin
	store        driver.OwnedStore
	status       *claimstatus.Writer
	registration *driver.Registration
	registry     *prometheus.Registry
	bootID       string

	// fatal receives the driver's fatal errors; superseded is closed when
	// another daemon took the checkpoint over.
	fatal          chan error
	superseded     chan struct{}
	supersededOnce sync.Once

	ready     chan struct{}
	closeOnce sync.Once
	closers   []func()
}

// New builds the daemon: it opens the checkpoint (taking it over from a
// daemon being replaced), loads the state, builds the NRI plugin and the
// driver over it (which releases the records of an earlier boot and scans
// the devices once). Nothing listens yet; Run serves. An error leaves
// nothing open. A daemon that is not Run must be closed with Close.
func New(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	ctx = withLogger(ctx, cfg)
	logger := klog.FromContext(ctx)
	d := &Daemon{
		cfg:          cfg,
		sockets:      driver.PluginSockets(cfg.KubeletRegistryDir, cfg.KubeletPluginsDir, cfg.DriverName, types.UID(cfg.PodUID)),
		registration: driver.NewRegistration(),
		fatal:        make(chan error, 1),
		superseded:   make(chan struct{}),
		ready:        make(chan struct{}),
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err := os.MkdirAll(cfg.KubeletPluginsDir, 0o700); err != nil {
		return nil, fmt.Errorf("create kubelet plugin dir: %w", err)
	}
	if err := d.sockets.Check(); err != nil {
		return nil, err
	}
	var vfSource *vfprov.Source
	if cfg.VFConfig != "" {
		src, err := vfprov.NewSource(cfg.VFConfig)
		if err != nil {
			return nil, fmt.Errorf("--vf-config: %w", err)
		}
		if src.Config() == nil {
			logger.Info("VF config file not there; provisioning starts when it appears", "vfConfig", cfg.VFConfig)
		}
		vfSource = src
	}
	marks, err := attachmark.New(cfg.AttachMarkerDir, cfg.AttachMarkerHostDir)
	if err != nil {
		return nil, fmt.Errorf("--attach-marker-dir: %w", err)
	}
	nl := cfg.Netlink
	if nl == nil {
		h, err := nlink.NewHost()
		if err != nil {
			return nil, err
		}
		d.closers = append(d.closers, h.Close)
		nl = h
	}
	if err := d.openState(ctx); err != nil {
		return nil, err
	}
	state, err := driver.NewState(d.store, d.bootID)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}

	d.registry = prometheus.NewRegistry()
	d.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, hookMetrics := driver.NewMetrics(d.registry), driver.NewNRIHookMetrics(d.registry)

	// The NRI plugin serves the state and is the driver's Detacher: the
	// one owner of every detach.
	nriCfg := cfg.NRI
	nriCfg.AttachMarks, nriCfg.ObserveHook = marks, hookMetrics.Observe
	nriHost, err := nri.NewHostOps(nri.HostConfig{Root: cfg.HostRoot, Host: nl})
	if err != nil {
		return nil, err
	}
	if d.plugin, err = nri.New(nriCfg, state, nriHost); err != nil {
		return nil, err
	}

	scanner := cfg.Scanner
	if scanner == nil {
		scanner = inventory.Scanner{Options: inventory.Options{
			Root: cfg.HostRoot, Netlink: nl, Filter: cfg.Filter, AllowDefaultRoutePF: cfg.AllowDefaultRoutePF,
		}}
	}
	d.status = claimstatus.New(cfg.Client, claimstatus.Options{DriverName: cfg.DriverName})
	events, stopEvents := driver.NewEventRecorder(ctx, cfg.Client, cfg.DriverName, cfg.NodeName)
	d.closers = append(d.closers, stopEvents)
	d.driver, err = driver.New(ctx, driver.Config{
		NodeName: cfg.NodeName, DriverName: cfg.DriverName, PassthroughPFs: cfg.PassthroughPFs,
		BootID: d.bootID, State: state,
		Scanner:           scanner,
		Attributes:        inventory.Attributes,
		Kernel:            driver.NewKernel(cfg.HostRoot, nl),
		Detacher:          d.plugin,
		IPAM:              ipam.New(ipam.Config{CNIPath: cfg.CNIPath, DataDir: filepath.Join(cfg.StateDir, "ipam")}),
		CDI:               cdi.New(cfg.CDIDir, cfg.HostRoot),
		AttachMarks:       marks,
		Status:            d.status,
		Netlink:           nl,
		Events:            events,
		Metrics:           metrics,
		DeviceEvents:      cfg.DeviceEvents,
		PollInterval:      cfg.PollInterval,
		LostDeviceTimeout: cfg.LostDeviceTimeout,
		DeviceMetadata:    cfg.DeviceMetadata,
		VFConfig:          vfSource,
		HostRoot:          cfg.HostRoot,

		ClassResourceName: classResourceName(cfg.Client),
		OnFatal: func(err error) {
			select {
			case d.fatal <- err:
			default:
			}
		},
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// complete checks cfg and fills in the defaults.
func (c *Config) complete() error {
	switch {
	case c.NodeName == "":
		return errors.New("daemon config: NodeName (--node-name) is required")
	case c.DriverName == "":
		return errors.New("daemon config: DriverName (--driver-name) is required")
	case c.Client == nil:
		return errors.New("daemon config: Client is required")
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
		c.KubeletRegistryDir = kubeletplugin.KubeletRegistryDir
	}
	if c.KubeletPluginsDir == "" {
		c.KubeletPluginsDir = filepath.Join(kubeletplugin.KubeletPluginsDir, c.DriverName)
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

// openState opens the checkpoint for this daemon instance. During a
// rolling update the old daemon runs on for a while: this one takes the
// checkpoint over at load, and once the old one finds its writes refused
// it leaves the runtime (NRI) to this one.
func (d *Daemon) openState(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	owner := d.cfg.PodUID
	if owner == "" {
		owner = fmt.Sprintf("pid-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	store, bootID, err := driver.NewOwnedFileStore(d.cfg.StateDir, d.cfg.HostRoot, owner, func(err error) {
		logger.Error(err, "Another sriov-dra daemon took over this node's state (rolling update): leaving the NRI runtime to it; kubelet already calls the new daemon")
		d.supersededOnce.Do(func() { close(d.superseded) })
	})
	if err != nil {
		return fmt.Errorf("open checkpoint: %w", err)
	}
	d.store, d.bootID = store, bootID
	return nil
}

// Driver is the daemon's DRA driver (tests read its state).
func (d *Daemon) Driver() *driver.Driver { return d.driver }

// NRI is the daemon's NRI plugin.
func (d *Daemon) NRI() *nri.Plugin { return d.plugin }

// Sockets are the kubelet registration and DRA plugin sockets.
func (d *Daemon) Sockets() driver.SocketPaths { return d.sockets }

// Metrics is the daemon's Prometheus registry (what /metrics serves).
func (d *Daemon) Metrics() prometheus.Gatherer { return d.registry }

// Ready is closed once Run serves: the kubelet plugin's sockets listen
// and the NRI plugin is connecting.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Close releases what New opened; Run calls it when it ends. It may be
// called more than once.
func (d *Daemon) Close() {
	d.closeOnce.Do(func() {
		for i := len(d.closers) - 1; i >= 0; i-- {
			d.closers[i]()
		}
	})
}

// Run serves until ctx ends (a graceful shutdown, nil) or a component
// fails (its error): the kubelet plugin, the ResourceSlice and health
// loop, the NRI plugin, the claim status writer, the registration watch,
// and /metrics and /healthz. It stops the kubelet plugin (removing its
// sockets) and releases what New opened before it returns.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Close()
	ctx = withLogger(ctx, d.cfg)
	logger := klog.FromContext(ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// A daemon whose checkpoint another one took over leaves the runtime
	// to it; kubelet already calls the new one.
	nriCtx, stopNRI := context.WithCancel(ctx)
	defer stopNRI()

	opts := []kubeletplugin.Option{
		kubeletplugin.KubeClient(d.cfg.Client), kubeletplugin.NodeName(d.cfg.NodeName), kubeletplugin.DriverName(d.cfg.DriverName),
		kubeletplugin.RegistrarDirectoryPath(d.cfg.KubeletRegistryDir), kubeletplugin.PluginDataDirectoryPath(d.cfg.KubeletPluginsDir),
		kubeletplugin.GRPCInterceptor(d.registration.Interceptor()),
		// The driver locks per claim and shares checkpoint fsyncs between
		// concurrent claims, so kubelet's calls need not wait for each
		// other. With rolling updates two daemons overlap: keep the
		// helper's cross-process serialization then.
		kubeletplugin.Serialize(d.cfg.PodUID != ""),
	}
	if d.cfg.PodUID != "" {
		opts = append(opts, kubeletplugin.RollingUpdate(types.UID(d.cfg.PodUID)))
	}
	if d.cfg.DeviceMetadata {
		// The helper writes each prepared request's metadata file below
		// the plugin dir and its CDI spec into the driver's CDI dir, which
		// the runtime reads already. Kubernetes needs no feature gate.
		opts = append(opts,
			kubeletplugin.EnableDeviceMetadata(true, driver.MetadataVersions()),
			kubeletplugin.CDIDirectory(d.cfg.CDIDir),
			kubeletplugin.MetadataFileOps(kubeletplugin.MetadataFileOperations{WriteFile: driver.WriteMetadataFile}))
		klog.FromContext(ctx).Info("Device metadata on: containers find their devices' metadata under "+metadata.ContainerDir, "versions", metadataVersionNames(), "cdiDir", d.cfg.CDIDir)
	} else {
		klog.FromContext(ctx).Info("Device metadata off (--device-metadata=false): containers get no metadata file")
	}
	helper, err := kubeletplugin.Start(ctx, d.driver, opts...)
	if err != nil {
		return fmt.Errorf("start kubelet plugin: %w", err)
	}

	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && ctx.Err() == nil {
				logger.Error(err, "Component failed; shutting down", "component", name)
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		})
	}
	run("fatal errors", func() error {
		select {
		case err := <-d.fatal:
			logger.Error(err, "Fatal error; shutting down")
			cancel(err)
		case <-ctx.Done():
		}
		return nil
	})
	run("resourceslices", func() error { return d.driver.Run(ctx, helper) })
	run("nri", func() error { return d.plugin.Run(nriCtx) })
	run("checkpoint owner", func() error {
		// Notice a take-over even when this daemon has nothing to write.
		wait.UntilWithContext(nriCtx, func(context.Context) {
			if err := d.store.CheckOwner(); err != nil {
				var sup *driver.SupersededError
				if !errors.As(err, &sup) {
					logger.V(2).Info("Cannot read the checkpoint's owner", "err", err)
				}
			}
		}, 2*time.Second)
		return nil
	})
	run("superseded", func() error {
		select {
		case <-d.superseded:
			stopNRI()
		case <-nriCtx.Done():
		}
		return nil
	})
	run("claim status", func() error { d.status.Run(ctx, 2); return nil })
	run("registration", func() error { return d.registration.Wait(ctx, d.cfg.RegistrationTimeout, d.sockets) })

	srv, err := d.serveHTTP(ctx, &wg)
	if err != nil {
		helper.Stop()
		cancel(err)
		wg.Wait()
		return err
	}
	logger.Info("Driver running", "registrationSocket", d.sockets.Registrar, "pluginSocket", d.sockets.Plugin, "bootID", d.bootID)
	close(d.ready)

	<-ctx.Done()
	fatal := context.Cause(ctx)
	logger.Info("Shutting down", "fatal", fatal)
	helper.Stop()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	cancel(nil)
	wg.Wait()
	if fatal != nil && !errors.Is(fatal, context.Canceled) {
		return fatal
	}
	return nil
}

// serveHTTP serves /metrics and /healthz on the health socket and the
// metrics address. While the daemon this one replaces in a rolling update
// holds the metrics port (host networking), binding is retried.
func (d *Daemon) serveHTTP(ctx context.Context, wg *sync.WaitGroup) (*http.Server, error) {
	logger := klog.FromContext(ctx)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{Registry: d.registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.registration.Registered() {
			http.Error(w, "not registered with kubelet yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok\nnri connected: %v\n", d.plugin.Connected())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serve := func(what string, ln net.Listener) {
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "HTTP server failed", "listener", what)
			}
		})
	}
	if p := d.cfg.HealthSocket; p != "" {
		ln, err := ListenUnix(p)
		if err != nil {
			return nil, fmt.Errorf("--health-socket: %w", err)
		}
		serve(p, ln)
	}
	addr := d.cfg.MetricsAddr
	if addr == "" {
		return srv, nil
	}
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		serve(addr, ln)
	case errors.Is(err, syscall.EADDRINUSE):
		logger.Info("Metrics address in use (by the daemon being replaced?); retrying every 2 s", "addr", addr)
		wg.Go(func() {
			_ = wait.PollUntilContextCancel(ctx, 2*time.Second, false, func(context.Context) (bool, error) {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					return false, nil
				}
				logger.Info("Serving metrics", "addr", addr)
				serve(addr, ln)
				return true, nil
			})
		})
	default:
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	return srv, nil
}

// ListenUnix listens on a unix socket at path, owner-only, replacing a
// stale socket file left by an earlier run of the same container.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func metadataVersionNames() []string {
	var out []string
	for _, gv := range driver.MetadataVersions() {
		out = append(out, gv.String())
	}
	return out
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

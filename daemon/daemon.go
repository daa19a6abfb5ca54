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
//   - the kubelet server (pkg/kubeletserver) serving the driver;
//   - /metrics and /healthz.
package daemon

// This file builds the daemon: New runs its steps in order (kubelet dirs,
// VF config, attach markers, netlink, checkpoint and state, metrics, the
// NRI plugin, the driver); Close undoes what they opened.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/claimstatus"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

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
	var p parts
	if err := d.prepareKubeletDirs(); err != nil {
		return nil, err
	}
	if p.vfSource, err = openVFConfig(ctx, cfg.VFConfig); err != nil {
		return nil, err
	}
	if p.marks, err = attachmark.New(cfg.AttachMarkerDir, cfg.AttachMarkerHostDir); err != nil {
		return nil, fmt.Errorf("--attach-marker-dir: %w", err)
	}
	if p.nl, err = d.hostNetlink(); err != nil {
		return nil, err
	}
	if p.state, err = d.loadState(ctx); err != nil {
		return nil, err
	}
	p.metrics, p.hookMetrics = d.registerMetrics()
	if err := d.buildNRI(p); err != nil {
		return nil, err
	}
	if err := d.buildDriver(ctx, p); err != nil {
		return nil, err
	}
	return d, nil
}

// parts are what New's steps build and hand on to the later steps.
type parts struct {
	vfSource    *vfprov.Source // nil: no VF provisioning
	marks       *attachmark.Marks
	nl          nlink.Handle
	state       *driver.State
	metrics     *driver.Metrics
	hookMetrics *driver.NRIHookMetrics
}

// prepareKubeletDirs creates the kubelet plugin dir and checks the
// plugin's socket paths.
func (d *Daemon) prepareKubeletDirs() error {
	if err := os.MkdirAll(d.cfg.KubeletPluginsDir, 0o700); err != nil {
		return fmt.Errorf("create kubelet plugin dir: %w", err)
	}
	return d.sockets.Check()
}

// openVFConfig opens the VF provisioning file; nil when path is "".
func openVFConfig(ctx context.Context, path string) (*vfprov.Source, error) {
	if path == "" {
		return nil, nil
	}
	src, err := vfprov.NewSource(path)
	if err != nil {
		return nil, fmt.Errorf("--vf-config: %w", err)
	}
	if src.Config() == nil {
		klog.FromContext(ctx).Info("VF config file not there; provisioning starts when it appears", "vfConfig", path)
	}
	return src, nil
}

// hostNetlink is the configured netlink handle, or a new one in the host
// netns that Close closes.
func (d *Daemon) hostNetlink() (nlink.Handle, error) {
	if d.cfg.Netlink != nil {
		return d.cfg.Netlink, nil
	}
	h, err := nlink.NewHost()
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, h.Close)
	return h, nil
}

// loadState opens the checkpoint and loads the state from it.
func (d *Daemon) loadState(ctx context.Context) (*driver.State, error) {
	if err := d.openState(ctx); err != nil {
		return nil, err
	}
	state, err := driver.NewState(d.store, d.bootID)
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	return state, nil
}

// registerMetrics makes the registry /metrics serves, with the Go and
// process collectors, the driver's metrics and the NRI hooks' ones.
func (d *Daemon) registerMetrics() (*driver.Metrics, *driver.NRIHookMetrics) {
	d.registry = prometheus.NewRegistry()
	d.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return driver.NewMetrics(d.registry), driver.NewNRIHookMetrics(d.registry)
}

// buildNRI builds the NRI plugin. It serves the state and is the
// driver's Detacher: the one owner of every detach.
func (d *Daemon) buildNRI(p parts) error {
	nriCfg := d.cfg.NRI
	nriCfg.AttachMarks, nriCfg.ObserveHook = p.marks, p.hookMetrics.Observe
	nriHost, err := nri.NewHostOps(nri.HostConfig{Root: d.cfg.HostRoot, Netlink: p.nl})
	if err != nil {
		return err
	}
	d.plugin, err = nri.New(nriCfg, p.state, nriHost)
	return err
}

// buildDriver builds the DRA driver over the state, with the NRI plugin
// as its Detacher, the claim status writer and the event recorder.
func (d *Daemon) buildDriver(ctx context.Context, p parts) error {
	cfg := d.cfg
	scanner := cfg.Scanner
	if scanner == nil {
		scanner = inventory.Scanner{Options: inventory.Options{
			Root: cfg.HostRoot, Netlink: p.nl, Filter: cfg.Filter, AllowDefaultRoutePF: cfg.AllowDefaultRoutePF,
		}}
	}
	d.status = claimstatus.New(cfg.API, claimstatus.Options{DriverName: cfg.DriverName})
	events, stopEvents := cfg.API.NewEventRecorder(ctx, cfg.DriverName, cfg.DriverName+"/"+cfg.NodeName)
	d.closers = append(d.closers, stopEvents)
	d.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sriov_dra_events_dropped_total",
		Help: "Events the driver did not post: its queue or the namespace's share of it was full, the API server refused them, or the driver was stopping.",
	}, func() float64 { return float64(events.Dropped()) }))
	var err error
	d.driver, err = driver.New(ctx, driver.Config{
		NodeName: cfg.NodeName, DriverName: cfg.DriverName, PassthroughPFs: cfg.PassthroughPFs,
		BootID: d.bootID, State: p.state,
		Scanner:           scanner,
		Attributes:        inventory.Attributes,
		Kernel:            driver.NewKernel(cfg.HostRoot, p.nl),
		Detacher:          d.plugin,
		IPAM:              ipam.New(ipam.Config{CNIPath: cfg.CNIPath, DataDir: filepath.Join(cfg.StateDir, "ipam")}),
		CDI:               cdi.New(cfg.CDIDir, cfg.HostRoot),
		AttachMarks:       p.marks,
		Status:            d.status,
		Netlink:           p.nl,
		Events:            events,
		Metrics:           p.metrics,
		DeviceEvents:      cfg.DeviceEvents,
		PollInterval:      cfg.PollInterval,
		LostDeviceTimeout: cfg.LostDeviceTimeout,
		DeviceMetadata:    cfg.DeviceMetadata,
		VFConfig:          p.vfSource,
		HostRoot:          cfg.HostRoot,

		ClassResourceName: classResourceName(cfg.API),
		OnFatal: func(err error) {
			select {
			case d.fatal <- err:
			default:
			}
		},
	})
	return err
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

// deviceClasses reads DeviceClasses; *kubeapi.Client is one.
type deviceClasses interface {
	GetDeviceClass(ctx context.Context, name string) (*resourceapi.DeviceClass, error)
}

// classResourceName reads a DeviceClass's extended resource name: its
// spec.extendedResourceName, or the name Kubernetes gives a class without
// one (deviceclass.resource.kubernetes.io/<class>).
func classResourceName(client deviceClasses) func(ctx context.Context, class string) (string, error) {
	return func(ctx context.Context, class string) (string, error) {
		dc, err := client.GetDeviceClass(ctx, class)
		if err != nil {
			return "", fmt.Errorf("get DeviceClass %s: %w", class, err)
		}
		if n := dc.Spec.ExtendedResourceName; n != nil && *n != "" {
			return *n, nil
		}
		return resourceapi.ResourceDeviceClassPrefix + class, nil
	}
}

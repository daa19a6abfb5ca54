package daemon

// This file serves a built daemon: Run starts the kubelet plugin, the
// components beside it and /metrics and /healthz, and shuts them all down
// when ctx ends or one of them fails.

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

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/dynamic-resource-allocation/api/metadata"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
	"github.com/sriov-dra/sriov-dra/pkg/slicepub"
)

// Run serves until ctx ends (a graceful shutdown, nil) or a component
// fails (its error): the kubelet plugin, the ResourceSlice and health
// loop, the NRI plugin, the claim status writer, the registration watch,
// and /metrics and /healthz. It stops the kubelet plugin (removing its
// sockets) and releases what New opened before it returns.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Close()
	ctx = withLogger(ctx, d.cfg)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := &components{ctx: ctx, cancel: cancel}
	// A daemon whose checkpoint another one took over leaves the runtime
	// to it; kubelet already calls the new one.
	nriCtx, stopNRI := context.WithCancel(ctx)
	defer stopNRI()

	kubelet, err := kubeletserver.Start(ctx, d.driver, d.kubeletConfig(ctx))
	if err != nil {
		return fmt.Errorf("start kubelet plugin: %w", err)
	}
	pub, err := slicepub.New(slicepub.Options{
		Client: d.cfg.API, DriverName: d.cfg.DriverName, NodeName: d.cfg.NodeName,
		Resync: d.driver.Republish, ErrorHandler: d.driver.HandlePublishError,
	})
	if err != nil {
		kubelet.Stop()
		return err
	}
	d.startComponents(c, pub, nriCtx, stopNRI)
	srv, err := d.serveHTTP(ctx, &c.wg)
	if err != nil {
		kubelet.Stop()
		cancel(err)
		c.wg.Wait()
		return err
	}
	klog.FromContext(ctx).Info("Driver running", "registrationSocket", d.sockets.Registrar, "pluginSocket", d.sockets.Plugin, "bootID", d.bootID)
	close(d.ready)

	<-ctx.Done()
	return d.shutdown(c, kubelet, srv)
}

// components runs the daemon's long-running parts: the first one to fail
// cancels ctx with its error, which shuts the daemon down.
type components struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
}

// run starts f as the component name.
func (c *components) run(name string, f func() error) {
	c.wg.Go(func() {
		if err := f(); err != nil && c.ctx.Err() == nil {
			klog.FromContext(c.ctx).Error(err, "Component failed; shutting down", "component", name)
			c.cancel(fmt.Errorf("%s: %w", name, err))
		}
	})
}

// kubeletConfig is the kubelet server's configuration: the claims' API
// server, node, driver and directories, the registration interceptor,
// rolling updates and device metadata.
func (d *Daemon) kubeletConfig(ctx context.Context) kubeletserver.Config {
	cfg := kubeletserver.Config{
		DriverName: d.cfg.DriverName, NodeName: d.cfg.NodeName,
		RegistryDir: d.cfg.KubeletRegistryDir, PluginDir: d.cfg.KubeletPluginsDir,
		Interceptor: d.registration.Interceptor(),
		Claims:      d.cfg.API,
		// Rolling updates: both daemons' sockets are served side by side.
		PodUID: types.UID(d.cfg.PodUID),
		// The driver locks per claim and shares checkpoint fsyncs between
		// concurrent claims, so kubelet's calls need not wait for each
		// other. With rolling updates two daemons overlap: keep the
		// cross-process serialization then.
		Serialize:   d.cfg.PodUID != "",
		HandleError: d.driver.HandleError,
	}
	if d.cfg.DeviceMetadata {
		// The server writes each prepared request's metadata file below
		// the plugin dir and its CDI spec into the driver's CDI dir, which
		// the runtime reads already. Kubernetes needs no feature gate.
		cfg.Metadata = &kubeletserver.MetadataConfig{Versions: driver.MetadataVersions(), CDIDir: d.cfg.CDIDir, WriteFile: driver.WriteMetadataFile}
		klog.FromContext(ctx).Info("Device metadata on: containers find their devices' metadata under "+metadata.ContainerDir, "versions", metadataVersionNames(), "cdiDir", d.cfg.CDIDir)
	} else {
		klog.FromContext(ctx).Info("Device metadata off (--device-metadata=false): containers get no metadata file")
	}
	return cfg
}

// startComponents starts everything that runs beside the kubelet plugin:
// the fatal error watch, the ResourceSlice publisher, the driver's
// publish and health loop, the NRI
// plugin (on nriCtx, which stopNRI ends when another daemon took the
// checkpoint over), the checkpoint owner watch, the claim status writer
// and the registration watch.
func (d *Daemon) startComponents(c *components, pub *slicepub.Publisher, nriCtx context.Context, stopNRI context.CancelFunc) {
	ctx := c.ctx
	logger := klog.FromContext(ctx)
	c.run("fatal errors", func() error {
		select {
		case err := <-d.fatal:
			logger.Error(err, "Fatal error; shutting down")
			c.cancel(err)
		case <-ctx.Done():
		}
		return nil
	})
	c.run("resourceslice publisher", func() error { return pub.Run(ctx) })
	c.run("resourceslices", func() error { return d.driver.Run(ctx, pub) })
	c.run("nri", func() error { return d.plugin.Run(nriCtx) })
	c.run("checkpoint owner", func() error {
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
	c.run("superseded", func() error {
		select {
		case <-d.superseded:
			stopNRI()
		case <-nriCtx.Done():
			return nil
		}
		return d.watchSuperseder(ctx, supersederCheck)
	})
	c.run("claim status", func() error { d.status.Run(ctx, 2); return nil })
	c.run("registration", func() error { return d.registration.Wait(ctx, d.cfg.RegistrationTimeout, d.sockets) })
}

// shutdown stops the kubelet plugin (removing its sockets) and the HTTP
// server, waits for every component and returns the error that ended the
// daemon, nil for a graceful shutdown.
func (d *Daemon) shutdown(c *components, kubelet *kubeletserver.Server, srv *http.Server) error {
	fatal := context.Cause(c.ctx)
	klog.FromContext(c.ctx).Info("Shutting down", "fatal", fatal)
	kubelet.Stop()
	sctx, scancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
	_ = srv.Shutdown(sctx)
	scancel()
	c.cancel(nil)
	c.wg.Wait()
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

package nri

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/keyedmutex"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

const (
	// PluginName is the name the plugin registers with the runtime.
	PluginName = "sriov-dra"
	// DefaultPluginIndex orders the plugin among the runtime's plugins.
	DefaultPluginIndex = "50"
	// DefaultSocketPath is the runtime's NRI socket.
	DefaultSocketPath = api.DefaultSocketPath

	defaultMinBackoff     = 500 * time.Millisecond
	defaultMaxBackoff     = 30 * time.Second
	defaultRetryInterval  = 10 * time.Second
	defaultTeardownBudget = time.Second
)

var pluginIndex = regexp.MustCompile(`^[0-9]{2}$`)

// Config is how the plugin reaches the runtime.
type Config struct {
	// SocketPath is the runtime's NRI socket; "" means DefaultSocketPath.
	SocketPath string
	// PluginIndex is the two-digit index that orders the plugin among the
	// runtime's plugins; "" means DefaultPluginIndex.
	PluginIndex string
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts; zero means 500ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// RetryInterval is how often detaches that could not finish (netns
	// gone, link not back on the host yet) are retried; zero means 10s.
	RetryInterval time.Duration
	// TeardownBudget is how long StopPodSandbox and RemovePodSandbox wait
	// for the detach before they return and let it finish in the
	// background (the runtime allows all plugins about 2s); zero means 1s.
	TeardownBudget time.Duration
	// AttachMarks, when set, are the "attached" markers the driver's CDI
	// specs bind-mount: the plugin creates a device's marker once the
	// device is attached (and recorded) and removes it before it moves the
	// netdev out, so that the runtime cannot create a container of the pod
	// without the device, even when this plugin is not connected. It must
	// be the driver's AttachMarks.
	AttachMarks *attachmark.Marks
	// ObserveHook, when set, is called after each hook that had devices
	// to handle, with the hook's name (one of Hooks), how long it took
	// and its error (for metrics). For StopPodSandbox and RemovePodSandbox
	// the time is the detach's, which may end in the background after the
	// hook returned at TeardownBudget; for Synchronize it is the
	// reconcile's, which runs in the background too and reports no error.
	// It must be fast and safe for concurrent use.
	ObserveHook func(hook string, took time.Duration, err error)
	// ObserveAttachStep, when set, is told how long each step of every
	// attach took: the plugin's own (the Step* constants) and those of
	// pkg/netattach (netattach.Step*), from the attaching goroutine. For
	// benchmarks; it must be fast and safe for concurrent use.
	ObserveAttachStep func(step string, took time.Duration)
}

// The plugin's own steps of an attach, as ObserveAttachStep reports them.
const (
	// StepRecordAttaching records where the device goes (in memory only
	// for a device whose attach state is derived from the kernel).
	StepRecordAttaching = "record-attaching"
	// StepAttach is the whole netattach.Attach (its own steps are
	// reported too) and, for RDMA isolation, the RDMA move before it.
	StepAttach = "attach"
	// StepRecordAttached records the finished attach (likewise).
	StepRecordAttached = "record-attached"
	// StepMarker creates the device's "attached" marker.
	StepMarker = "marker"
)

// The hooks ObserveHook reports.
const (
	HookRunPodSandbox    = "RunPodSandbox"
	HookCreateContainer  = "CreateContainer"
	HookStopPodSandbox   = "StopPodSandbox"
	HookRemovePodSandbox = "RemovePodSandbox"
	HookSynchronize      = "Synchronize"
)

// Hooks lists the hooks ObserveHook reports, in lifecycle order.
func Hooks() []string {
	return []string{HookSynchronize, HookRunPodSandbox, HookCreateContainer, HookStopPodSandbox, HookRemovePodSandbox}
}

func (c *Config) complete() error {
	if c.SocketPath == "" {
		c.SocketPath = DefaultSocketPath
	}
	if c.PluginIndex == "" {
		c.PluginIndex = DefaultPluginIndex
	}
	if !pluginIndex.MatchString(c.PluginIndex) {
		return fmt.Errorf("NRI plugin index %q: must be two digits (00-99)", c.PluginIndex)
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = defaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = defaultMaxBackoff
	}
	if c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("NRI backoff: need 0 < minBackoff (%s) <= maxBackoff (%s)", c.MinBackoff, c.MaxBackoff)
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = defaultRetryInterval
	}
	if c.RetryInterval < 0 {
		return fmt.Errorf("NRI retryInterval %s: must be positive", c.RetryInterval)
	}
	if c.TeardownBudget == 0 {
		c.TeardownBudget = defaultTeardownBudget
	}
	if c.TeardownBudget < 0 {
		return fmt.Errorf("NRI teardownBudget %s: must be positive", c.TeardownBudget)
	}
	return nil
}

// Plugin is the NRI plugin of sriov-dra. Its hooks move the pod's prepared
// netdevs into the pod netns and back; Run keeps it connected to the
// runtime. Safe for concurrent use: hooks for different pods run in
// parallel, hooks for one pod one after the other.
type Plugin struct {
	cfg  Config
	devs Devices
	host HostOps
	// marks is cfg.AttachMarks (nil when unset).
	marks markSet

	mu   sync.Mutex
	pods map[string]*podInfo // pod UID -> what the runtime told us
	// podLocks (pod UID) is held by whatever changes one pod's devices:
	// its hooks, its background teardown, RetryPending, the reconcile and
	// the driver's DetachDevice. Callers with a deadline can give up
	// waiting (lockPodCtx).
	podLocks keyedmutex.Mutex
	// pending: pod UID -> netns path -> when its detach first failed.
	pending map[string]map[string]time.Time
	// holds: netns path -> the plugin's own hold of it (netnshold.go).
	holds map[string]heldNetns

	// Reconciles after Synchronize run in the background (bg), one at a
	// time (reconcileMu). syncGen counts Synchronize calls; touched maps
	// a pod UID to the syncGen when a hook last handled it while a
	// reconcile was pending (reconciling > 0).
	bg          sync.WaitGroup
	reconcileMu sync.Mutex
	syncGen     uint64
	reconciling int
	touched     map[string]uint64

	connected atomic.Bool
	syncs     atomic.Int64 // reconciles finished

	runtime atomic.Pointer[runtimeInfo] // named in Configure
}

// podInfo is what the runtime told us about a pod sandbox.
type podInfo struct {
	sandboxID string
	name      string
	namespace string
	netns     string
	// cpus maps container ID to its cpuset ("" for none).
	cpus map[string]string
}

// markSet is what the plugin does with attach markers (attachmark.Marks);
// tests count the calls through it.
type markSet interface {
	Create(claimUID, device string) error
	Remove(claimUID, device string) error
}

// New returns a plugin that attaches the devices devs knows about through
// host. It does not connect: call Run.
func New(cfg Config, devs Devices, host HostOps) (*Plugin, error) {
	if devs == nil {
		return nil, errors.New("NRI plugin: no Devices")
	}
	if host == nil {
		return nil, errors.New("NRI plugin: no HostOps")
	}
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	var marks markSet
	if cfg.AttachMarks != nil {
		marks = cfg.AttachMarks
	}
	return &Plugin{
		cfg:     cfg,
		devs:    devs,
		host:    host,
		marks:   marks,
		pods:    map[string]*podInfo{},
		pending: map[string]map[string]time.Time{},
		holds:   map[string]heldNetns{},
		touched: map[string]uint64{},
	}, nil
}

// Run connects to the runtime and serves its hooks until ctx is done. When
// the runtime is not there, restarts or drops the connection, Run connects
// again with exponential backoff instead of returning; every (re)connect
// is followed by the runtime's Synchronize. It also retries unfinished
// detaches every RetryInterval. It returns nil when ctx is done.
func (p *Plugin) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("plugin", p.cfg.PluginIndex+"-"+PluginName, "socket", p.cfg.SocketPath)
	ctx = klog.NewContext(ctx, logger)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.retryLoop(ctx)
	}()
	defer wg.Wait()
	defer p.bg.Wait() // reconciles still running

	backoff := p.cfg.MinBackoff
	// failLogged: a failure to connect was logged since the last state
	// change, so further ones go to V(4) only.
	failLogged := false
	logger.Info("Connecting to the NRI runtime")
	for {
		s, closed, err := p.newStub(logger)
		if err != nil {
			// Only bad options get here: not worth retrying.
			return fmt.Errorf("create NRI stub: %w", err)
		}
		if err := s.Start(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if failLogged {
				logger.V(4).Info("Still cannot connect to the NRI runtime", "err", err, "retryIn", backoff)
			} else {
				logger.Info("Cannot connect to the NRI runtime, retrying with backoff", "err", err)
				failLogged = true
			}
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, p.cfg.MaxBackoff)
			continue
		}
		p.connected.Store(true)
		logger.Info("Connected to the NRI runtime")
		backoff = p.cfg.MinBackoff
		failLogged = false
		if !p.serve(ctx, s, closed) {
			return nil
		}
	}
}

// newStub makes the NRI stub of one connection; closed is closed when
// the runtime closes that connection.
func (p *Plugin) newStub(logger klog.Logger) (_ stub.Stub, closed <-chan struct{}, _ error) {
	c := make(chan struct{})
	var once sync.Once
	s, err := stub.New(p,
		stub.WithPluginName(PluginName),
		stub.WithPluginIdx(p.cfg.PluginIndex),
		stub.WithSocketPath(p.cfg.SocketPath),
		stub.WithLogger(nriLogger{logger: logger.WithName("nri")}),
		stub.WithOnClose(func() { once.Do(func() { close(c) }) }),
		// Fail closed: a request we could not answer (timeout, lost
		// connection) fails the sandbox or container instead of
		// letting it run without its devices.
		stub.WithFailurePolicy(&api.FailurePolicy{FailRequest: true, KeepConnected: true}),
	)
	return s, c, err
}

// serve keeps the started stub s connected until ctx is done (false) or
// the runtime closes the connection (true: connect again).
func (p *Plugin) serve(ctx context.Context, s stub.Stub, closed <-chan struct{}) bool {
	logger := klog.FromContext(ctx)
	select {
	case <-ctx.Done():
		s.Stop()
		p.connected.Store(false)
		logger.Info("Disconnected from the NRI runtime: shutting down")
		return false
	case <-closed:
		s.Stop()
		p.connected.Store(false)
		logger.Info("Lost the connection to the NRI runtime, reconnecting with backoff")
		return true
	}
}

// sleepCtx waits for d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// stepContext passes Config.ObserveAttachStep on to pkg/netattach.
func (p *Plugin) stepContext(ctx context.Context) context.Context {
	if p.cfg.ObserveAttachStep == nil {
		return ctx
	}
	return netattach.WithStepObserver(ctx, p.cfg.ObserveAttachStep)
}

// observe reports a hook's latency to Config.ObserveHook.
func (p *Plugin) observe(hook string, start time.Time, err error) {
	if p.cfg.ObserveHook != nil {
		p.cfg.ObserveHook(hook, time.Since(start), err)
	}
}

// Connected reports whether the plugin is registered with the runtime now
// (for a health check).
func (p *Plugin) Connected() bool { return p.connected.Load() }

// retryLoop retries detaches that could not finish, until ctx is done.
func (p *Plugin) retryLoop(ctx context.Context) {
	wait.UntilWithContext(ctx, p.RetryPending, p.cfg.RetryInterval)
}

// lockPod serialises the hooks of one pod; hooks of different pods run in
// parallel. It returns the unlock function.
func (p *Plugin) lockPod(uid string) func() {
	return p.podLocks.Lock(uid)
}

// lockPodCtx is lockPod for callers with a deadline: when ctx ends first
// it returns ctx's error and holds nothing.
func (p *Plugin) lockPodCtx(ctx context.Context, uid string) (func(), error) {
	return p.podLocks.LockContext(ctx, uid)
}

// nriLogger sends the NRI stub's log lines to klog.
type nriLogger struct{ logger klog.Logger }

func (l nriLogger) Debugf(_ context.Context, format string, args ...any) {
	l.logger.V(5).Info(fmt.Sprintf(format, args...))
}

func (l nriLogger) Infof(_ context.Context, format string, args ...any) {
	l.logger.V(3).Info(fmt.Sprintf(format, args...))
}

func (l nriLogger) Warnf(_ context.Context, format string, args ...any) {
	l.logger.Info(fmt.Sprintf(format, args...), "severity", "warning")
}

func (l nriLogger) Errorf(_ context.Context, format string, args ...any) {
	l.logger.Error(nil, fmt.Sprintf(format, args...))
}

package driver

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	resourceapi "k8s.io/api/resource/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/internal/keyedmutex"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/slicepub"
	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

// Config is what New needs. The interfaces are the driver's only ways to
// the machine and the API server.
type Config struct {
	NodeName   string
	DriverName string
	// PassthroughPFs are PFs (netdev names or PCI addresses) the admin
	// offers whole even with VFs enabled (their VFs are then not offered).
	PassthroughPFs []string
	// BootID is the node's current boot ID.
	BootID string

	// State is the checkpointed state (NewState over the Store). It is
	// made before the driver because the NRI plugin, the Detacher, serves
	// the same State.
	State      *State
	Scanner    Scanner
	Attributes AttributesFunc
	Kernel     Kernel
	// Detacher returns netdevs the runtime never took out of a pod netns
	// (Unprepare of a pod whose sandbox was not stopped); nil refuses
	// those Unprepares with an error.
	Detacher Detacher
	IPAM     IPAM
	CDI      CDI
	Status   ClaimStatus
	// AttachMarks, when set, makes every netdevice-mode device's CDI spec
	// bind-mount its "attached" marker (which the NRI plugin creates after
	// the attach), so no container starts before its netdev is in the pod
	// netns even with the NRI plugin away. The NRI plugin must be given
	// the same marks. Unprepare removes the claim's markers.
	AttachMarks *attachmark.Marks
	// Netlink is a handle in the host netns, used for health (PF link state).
	Netlink nlink.Handle
	// Events posts Warning events on claims; nil drops them.
	Events EventRecorder
	// Metrics, nil for none.
	Metrics *Metrics

	// DeviceEvents, when set, is subscribed to by Run: a burst of events
	// rescans the PFs they concern (all of them with a PFScanner that
	// cannot tell, or after lost events) and events about other devices
	// cost nothing. When the subscription fails Run polls every second.
	DeviceEvents hwevents.Source
	// PollInterval is the full rescan: the safety net with DeviceEvents
	// (0 means 60s), the only way to see a sriov_numvfs change without
	// them (0 means 1s).
	PollInterval time.Duration
	// ConfigCheckInterval is how often the VFConfig file is checked for a
	// change (one stat); 0 means 1s.
	ConfigCheckInterval time.Duration
	// Debounce collects bursts of events into one rescan; 0 means 200ms.
	Debounce time.Duration
	// HealthResend is how often health is re-sent when nothing changed;
	// 0 means 10s (kubelet's default timeout is 30s).
	HealthResend time.Duration
	// OnFatal is called by HandleError for a fatal error; the daemon
	// cancels its context there.
	OnFatal func(err error)

	// ReleaseBackoff paces the background retries of failed releases of
	// records from before a reboot; zero means 5 s doubling up to every
	// 5 minutes, retried for as long as they fail.
	ReleaseBackoff wait.Backoff
	// ReleaseTimeout bounds one background release attempt; 0 means 1
	// minute. The attempt at start is bounded by at most 10 s.
	ReleaseTimeout time.Duration
	// VFConfig, when set, is the admin's VF provisioning config
	// (vfprov.NodeConfig): applied at start, at every rescan (a NIC
	// appeared, the slow poll) and whenever the file changes. PFs it does
	// not select are never touched.
	VFConfig *vfprov.Source
	// HostRoot is the host filesystem root the VF provisioning writes
	// sysfs under ("/" on a node).
	HostRoot string

	// ClassResourceName returns the extended resource name of a
	// DeviceClass (spec.extendedResourceName, or the implicit
	// deviceclass.resource.kubernetes.io/<class>). It is asked only for
	// claims the scheduler made for a pod's resources.limits, to give
	// their containers the device plugin's PCIDEVICE_<RESOURCE>. nil
	// leaves that variable out.
	ClassResourceName func(ctx context.Context, class string) (string, error)

	// DeviceMetadata gives each prepared device its metadata (KEP-5304)
	// in the answer to kubelet, which the kubelet server writes into a
	// file in the claim's containers when it is started with
	// kubeletserver.Config.Metadata (see metadata.go).
	DeviceMetadata bool
	// LostDeviceTimeout is how long Unprepare waits for a device found
	// nowhere (removed, hot-unplugged) before it releases the rest of the
	// claim and records the device as lost (driver/lost.go); 0 means
	// DefaultLostDeviceTimeout.
	LostDeviceTimeout time.Duration

	// DropPollInterval is how often the checkpoint is read for the
	// admin's drop requests (sriov-dra checkpoint drop); 0 means 2s.
	DropPollInterval time.Duration
}

// DefaultResyncInterval is the full rescan with device events: a safety
// net for changes no event announces (a PF's addresses and routes, which
// only matter for PF passthrough).
const DefaultResyncInterval = time.Minute

// pollWithoutEvents is the full rescan when the device event
// subscription failed.
const pollWithoutEvents = time.Second

// Driver is the node daemon's DRA side: a kubeletserver.Plugin over
// the checkpointed State, which also serves the NRI plugin.
type Driver struct {
	cfg   Config
	state *State

	// planMu serializes the planning of claims: the device ownership
	// check and the "prepare started" record must not interleave. The
	// slow part (host changes, IPAM, CDI) runs outside it, per claim.
	planMu sync.Mutex
	// claimLocks serializes the work on one claim (a kubelet retry racing
	// the first attempt, Unprepare racing Prepare).
	claimLocks keyedmutex.Mutex

	invMu sync.Mutex
	inv   *inventory.Inventory
	// published is the digest of the last publication (poolDigest).
	published *[sha256.Size]byte
	// publishedTaints are the health taints of the last publication.
	publishedTaints map[string][]resourceapi.DeviceTaint
	// taintsDroppedLogged is set once the API server was seen dropping
	// device taints (DRADeviceTaints off): logged once, not on every
	// publication.
	taintsDroppedLogged atomic.Bool
	// invGen increments on every successful scan; health watchers wake on it.
	invGen  uint64
	invCond chan struct{}

	rescan chan struct{}
	// gone: since when claims' devices have been found nowhere.
	gone goneTracker
	// prov is touched by the Run loop only (provision).
	prov provisioner
}

var _ kubeletserver.Plugin = (*Driver)(nil)

// New takes over the loaded checkpoint (cfg.State; NewState refuses one
// it cannot read, so the driver never touches devices it cannot account
// for), drops the records the admin asked to drop, releases entries of an
// earlier boot (a release that fails stays pending and is retried by Run:
// it never stops the daemon), removes CDI specs and attach markers no
// record refers to, and scans the devices once.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("node name is required")
	}
	if cfg.DriverName == "" {
		return nil, errors.New("driver name is required")
	}
	if err := checkRequired(cfg); err != nil {
		return nil, err
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
		if cfg.DeviceEvents != nil {
			cfg.PollInterval = DefaultResyncInterval
		}
	}
	if cfg.ConfigCheckInterval <= 0 {
		cfg.ConfigCheckInterval = time.Second
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 200 * time.Millisecond
	}
	if cfg.HealthResend <= 0 {
		cfg.HealthResend = 10 * time.Second
	}
	state := cfg.State
	d := &Driver{cfg: cfg, state: state, rescan: make(chan struct{}, 1), prov: provisioner{said: map[string]string{}}, invCond: make(chan struct{})}
	state.SetOnAttached(d.claimAttached)
	d.applyDropRequests(ctx)
	if err := d.releaseStale(ctx); err != nil {
		return nil, err
	}
	d.collectOrphans(ctx)
	if _, err := d.scan(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// checkRequired refuses a Config without one of the parts the driver
// cannot run without.
func checkRequired(cfg Config) error {
	for _, part := range []struct {
		name    string
		missing bool
	}{
		{"State", cfg.State == nil},
		{"Scanner", cfg.Scanner == nil},
		{"Attributes", cfg.Attributes == nil},
		{"Kernel", cfg.Kernel == nil},
		{"IPAM", cfg.IPAM == nil},
		{"CDI", cfg.CDI == nil},
		{"Status", cfg.Status == nil},
	} {
		if part.missing {
			return fmt.Errorf("driver config: %s is required", part.name)
		}
	}
	return nil
}

// State returns the prepared state; the NRI plugin uses it as nri.Devices.
func (d *Driver) State() *State { return d.state }

// HandleError handles an error of a part running in the background (the
// kubelet server stopped serving, publishing failed): logged, and unless
// it is an invalid slice (which restarting does not fix) fatal, stopping
// the daemon through OnFatal.
func (d *Driver) HandleError(ctx context.Context, err error, msg string) {
	if d.taintsDropped(ctx, err) {
		return
	}
	utilruntime.HandleErrorWithContext(ctx, err, msg)
	if apierrors.IsInvalid(err) {
		// An invalid slice will not get better by restarting.
		return
	}
	if d.cfg.OnFatal != nil {
		d.cfg.OnFatal(fmt.Errorf("%s: %w", msg, err))
	}
}

// taintsDropped reports whether err is the API server dropping the
// devices' taints from a ResourceSlice because its DRADeviceTaints feature
// is off. The driver keeps running (devices are published without taints,
// so the scheduler does not see their health; kubelet still does); this
// is logged once, not at every publication.
func (d *Driver) taintsDropped(ctx context.Context, err error) bool {
	var dropped *slicepub.DroppedFieldsError
	if !errors.As(err, &dropped) || !slices.Equal(dropped.DisabledFeatures(), []string{"DRADeviceTaints"}) {
		return false
	}
	if d.taintsDroppedLogged.CompareAndSwap(false, true) {
		klog.FromContext(ctx).Info("The API server dropped the device taints of unhealthy devices: the DRADeviceTaints feature is off there, so the scheduler may still allocate them (kubelet still sees their health); enable the feature gate on kube-apiserver, kube-scheduler and kube-controller-manager (see docs/install.md)",
			"pool", dropped.Pool, "slice", dropped.SliceName, "fields", dropped.Fields)
	}
	return true
}

// EventRecorder posts Events about objects (claims, the node). Its
// method set is that of k8s.io/client-go/tools/events.EventRecorder, so
// that recorder (and its FakeRecorder) fits; the daemon gives the
// kubeapi.Recorder, which never blocks the caller.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

// lockClaim locks the claim's work and returns the unlock.
func (d *Driver) lockClaim(uid string) func() {
	return d.claimLocks.Lock(uid)
}

// inParallel runs f for every index 0..n-1, each in its own goroutine
// (n == 1 runs inline), and waits for all of them.
func inParallel(n int, f func(i int)) {
	if n == 1 {
		f(0)
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

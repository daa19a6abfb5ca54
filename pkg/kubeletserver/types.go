// Package kubeletserver is the kubelet side of a DRA driver on the node:
// the plugin registration socket kubelet's plugin watcher finds, the DRA
// v1 (and v1beta1) gRPC service kubelet prepares and unprepares claims
// through, the device health stream, and the device metadata files
// (KEP-5304) bind-mounted into the claim's containers through CDI.
//
// It talks to the API server only through ClaimGetter (one GET per claim
// kubelet asks to prepare), so a daemon using it needs no generated
// clientset. The socket names, the metadata file layout and the lock file
// used while two daemons overlap in a rolling update are those kubelet,
// container runtimes and daemons built on the upstream helper
// (k8s.io/dynamic-resource-allocation/kubeletplugin) expect, so an
// upgrade from such a daemon to one on this package works node by node.
package kubeletserver

import (
	"context"
	"errors"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Plugin is what a driver implements; the server turns kubelet's gRPC
// calls into calls of these methods.
type Plugin interface {
	// PrepareResourceClaims prepares the claims kubelet asked for, which
	// the server fetched and found allocated and with the UID kubelet
	// named. It must be idempotent: kubelet asks again after a restart.
	// The result has one entry per claim UID; a returned error fails the
	// whole call.
	PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]PrepareResult, error)
	// UnprepareResourceClaims undoes Prepare. The claims may be gone from
	// the API server; Prepare may have run in another process. A claim
	// that is not prepared is no error. The result has one entry per
	// claim UID (nil for success).
	UnprepareResourceClaims(ctx context.Context, claims []NamespacedObject) (map[types.UID]error, error)
	// WatchHealthStatus sends a report on reports now and whenever device
	// health changes, and again within each device's HealthCheckTimeout,
	// until ctx ends (then it returns nil). Sends must select on
	// ctx.Done(). ErrHealthNotSupported tells kubelet to stop watching.
	WatchHealthStatus(ctx context.Context, reports chan<- DeviceHealthReport) error
}

// PrepareResult is the outcome of preparing one claim.
type PrepareResult struct {
	// Err fails this claim only; kubelet retries it later.
	Err error
	// Devices are the prepared devices with their CDI device IDs.
	Devices []Device
}

// Device is one prepared device of a claim.
type Device struct {
	// Requests are the claim's requests (a subrequest as
	// "request/subrequest") the device was allocated for.
	Requests []string
	// PoolName and DeviceName identify the device in the ResourceSlices.
	PoolName   string
	DeviceName string
	// CDIDeviceIDs are the fully qualified CDI device names
	// ("vendor/class=name") the runtime applies to the containers.
	CDIDeviceIDs []string
	// ShareID identifies the share of a shared device; nil for none.
	ShareID *types.UID
	// Metadata is written into the request's metadata file when the
	// server has device metadata on; nil writes the device without.
	Metadata *DeviceMetadata
}

// DeviceMetadata is what a container may read about its device.
type DeviceMetadata struct {
	// Attributes are typed attributes in the ResourceSlice's format
	// (unqualified names belong to the driver's domain).
	Attributes map[string]resourceapi.DeviceAttribute
	// NetworkData is the device's network data in the claim status's
	// format.
	NetworkData *resourceapi.NetworkDeviceData
}

// NamespacedObject names a claim kubelet asks to unprepare.
type NamespacedObject struct {
	types.NamespacedName
	UID types.UID
}

// String is "namespace/name:uid" (without ":uid" when the UID is empty).
func (o NamespacedObject) String() string {
	s := o.Namespace + "/" + o.Name
	if o.UID != "" {
		s += ":" + string(o.UID)
	}
	return s
}

// MarshalLog renders the object as name, namespace and uid keys in
// structured logs.
func (o NamespacedObject) MarshalLog() any {
	return struct {
		Name      string    `json:"name"`
		Namespace string    `json:"namespace,omitempty"`
		UID       types.UID `json:"uid,omitempty"`
	}{o.Name, o.Namespace, o.UID}
}

// HealthStatus is a device's health as kubelet shows it in the pod status.
type HealthStatus string

// The health values kubelet knows.
const (
	HealthStatusUnknown   HealthStatus = "Unknown"
	HealthStatusHealthy   HealthStatus = "Healthy"
	HealthStatusUnhealthy HealthStatus = "Unhealthy"
)

// DeviceHealth is the health of one device.
type DeviceHealth struct {
	PoolName   string
	DeviceName string
	Health     HealthStatus
	// LastUpdated is when the health was last checked; zero sends 0.
	LastUpdated time.Time
	// HealthCheckTimeout is how long kubelet trusts this report before it
	// shows the device's health as unknown; 0 means kubelet's default
	// (30 s). Whole seconds are sent.
	HealthCheckTimeout time.Duration
	// Message says why, for a device that is not healthy.
	Message string
}

// DeviceHealthReport is one message of the health stream: the devices it
// lists get their health updated, others keep theirs.
type DeviceHealthReport struct {
	Devices []DeviceHealth
}

// ErrHealthNotSupported, returned by WatchHealthStatus, ends kubelet's
// health stream with codes.Unimplemented so kubelet stops watching.
var ErrHealthNotSupported = errors.New("device health reporting is not supported by this driver")

// ClaimGetter reads a ResourceClaim from the API server. Errors are
// *apierrors.StatusError.
type ClaimGetter interface {
	GetClaim(ctx context.Context, namespace, name string) (*resourceapi.ResourceClaim, error)
}

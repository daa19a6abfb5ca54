// Package claimstatus writes this driver's entries in a ResourceClaim's
// status.devices: per device the driver, pool and device name, the
// network data (interface name, IPs as CIDRs, hardware address), optional
// opaque data and a Ready condition.
//
// Writes are server-side applies of the status subresource with field
// manager "sriov.dra.dev" (forced), so they own exactly this driver's
// entries and never touch other drivers' ones. Each apply carries the
// claim's whole desired set of entries for this driver: entries left out
// are removed by the API server, which is how Clear works.
//
// Callers (Prepare/Unprepare, the NRI hooks) only record the desired state
// with Set/SetDevice/Clear, which never block on the API server; a worker
// started with Run applies it from a rate-limited work queue, retrying
// failures with backoff. A claim that no longer exists (or was recreated
// with another UID) is dropped.
package claimstatus

// This file records the desired status (Set, SetDevice, Clear), never
// blocking on the API server, and checks each entry on the way in.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
)

const (
	// FieldManager owns this driver's status entries.
	FieldManager = "sriov.dra.dev"
	// ConditionReady is the type of the per-device condition.
	ConditionReady = "Ready"

	// Limits of the resource.k8s.io/v1 API for networkData.
	maxInterfaceNameLength   = 256
	maxHardwareAddressLength = 128
	maxIPs                   = 16
)

// ClaimRef names a ResourceClaim. The UID guards against writing to a
// claim recreated under the same name.
type ClaimRef struct {
	Namespace string
	Name      string
	UID       types.UID
}

func (r ClaimRef) String() string { return r.Namespace + "/" + r.Name + " (" + string(r.UID) + ")" }

// DeviceStatus is this driver's status of one allocated device.
type DeviceStatus struct {
	Pool   string
	Device string

	// Network data; all optional.
	InterfaceName   string
	IPs             []string // CIDRs, "10.1.0.5/24"
	HardwareAddress string

	// Data is optional driver-specific JSON (for example the IB GUID given
	// to the device).
	Data json.RawMessage

	// Ready, Reason and Message make the Ready condition. Reason defaults
	// to "Configured" / "NotConfigured".
	Ready   bool
	Reason  string
	Message string
}

// Options tune the Writer.
type Options struct {
	// DriverName is the driver in the entries; "" means FieldManager.
	DriverName string
	// RateLimiter paces retries; nil means exponential backoff from
	// 100 ms to 1 minute per claim.
	RateLimiter workqueue.TypedRateLimiter[types.UID]
	// Now is the clock for condition transition times; nil is time.Now.
	Now func() time.Time
}

// desired is what should be in one claim's status.
type desired struct {
	ref ClaimRef
	// devices by device name; empty means "no entries" (Clear).
	devices map[string]DeviceStatus
	// since records, per device, when Ready last changed.
	since map[string]metav1.Time
	// gen counts changes; applied is the gen last written (or dropped).
	gen, applied uint64
}

// API is the API server as the Writer uses it; *kubeapi.Client is one.
type API interface {
	// ApplyClaimStatus server-side applies body to the claim's status.
	ApplyClaimStatus(ctx context.Context, namespace, name string, body []byte, opts metav1.PatchOptions) (*resourceapi.ResourceClaim, error)
}

// Writer queues and applies claim status.
type Writer struct {
	client API
	driver string
	now    func() time.Time
	queue  workqueue.TypedRateLimitingInterface[types.UID]

	mu    sync.Mutex
	state map[types.UID]*desired
}

// New returns a Writer. Call Run to start applying.
func New(client API, opts Options) *Writer {
	driver := opts.DriverName
	if driver == "" {
		driver = FieldManager
	}
	rl := opts.RateLimiter
	if rl == nil {
		rl = workqueue.NewTypedItemExponentialFailureRateLimiter[types.UID](100*time.Millisecond, time.Minute)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Writer{
		client: client,
		driver: driver,
		now:    now,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(rl,
			workqueue.TypedRateLimitingQueueConfig[types.UID]{Name: "sriov_dra_claim_status"}),
		state: map[types.UID]*desired{},
	}
}

// Set replaces this driver's entries of the claim with devs. Bad input is
// an error naming the device and field, and nothing is queued.
func (w *Writer) Set(ref ClaimRef, devs []DeviceStatus) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	clean := make([]DeviceStatus, 0, len(devs))
	for _, d := range devs {
		c, err := normalize(d)
		if err != nil {
			return fmt.Errorf("status of claim %s: %w", ref, err)
		}
		clean = append(clean, c)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.entry(ref)
	st.devices = map[string]DeviceStatus{}
	for _, d := range clean {
		w.put(st, d)
	}
	for name := range st.since {
		if _, ok := st.devices[name]; !ok {
			delete(st.since, name)
		}
	}
	w.queue.Add(ref.UID)
	return nil
}

// SetDevice adds or replaces one device's entry, keeping the claim's other
// entries.
func (w *Writer) SetDevice(ref ClaimRef, d DeviceStatus) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	c, err := normalize(d)
	if err != nil {
		return fmt.Errorf("status of claim %s: %w", ref, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.put(w.entry(ref), c)
	w.queue.Add(ref.UID)
	return nil
}

// Clear removes all of this driver's entries from the claim.
func (w *Writer) Clear(ref ClaimRef) error {
	if err := checkRef(ref); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.entry(ref)
	st.devices = map[string]DeviceStatus{}
	st.since = map[string]metav1.Time{}
	w.queue.Add(ref.UID)
	return nil
}

// Pending is the number of claims whose desired status is not yet applied.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, st := range w.state {
		if st.applied != st.gen {
			n++
		}
	}
	return n
}

// entry returns the claim's desired state, creating it; w.mu is held.
func (w *Writer) entry(ref ClaimRef) *desired {
	st := w.state[ref.UID]
	if st == nil {
		st = &desired{devices: map[string]DeviceStatus{}, since: map[string]metav1.Time{}}
		w.state[ref.UID] = st
	}
	st.ref = ref
	st.gen++
	return st
}

// put stores d, keeping the Ready transition time when Ready did not
// change; w.mu is held.
func (w *Writer) put(st *desired, d DeviceStatus) {
	old, had := st.devices[d.Device]
	if _, ok := st.since[d.Device]; !ok || !had || old.Ready != d.Ready {
		st.since[d.Device] = metav1.NewTime(w.now().Truncate(time.Second))
	}
	st.devices[d.Device] = d
}

func checkRef(ref ClaimRef) error {
	if ref.Namespace == "" || ref.Name == "" || ref.UID == "" {
		return fmt.Errorf("claim status: claim reference %+v: namespace, name and UID are all required", ref)
	}
	return nil
}

// normalize checks one entry and puts IPs in canonical CIDR form.
func normalize(d DeviceStatus) (DeviceStatus, error) {
	if d.Pool == "" || d.Device == "" {
		return d, fmt.Errorf("device %q in pool %q: pool and device are required", d.Device, d.Pool)
	}
	if len(d.InterfaceName) > maxInterfaceNameLength {
		return d, fmt.Errorf("device %s: networkData.interfaceName: longer than %d", d.Device, maxInterfaceNameLength)
	}
	if len(d.HardwareAddress) > maxHardwareAddressLength {
		return d, fmt.Errorf("device %s: networkData.hardwareAddress: longer than %d", d.Device, maxHardwareAddressLength)
	}
	if len(d.IPs) > maxIPs {
		return d, fmt.Errorf("device %s: networkData.ips: %d addresses, at most %d", d.Device, len(d.IPs), maxIPs)
	}
	ips := make([]string, 0, len(d.IPs))
	seen := map[string]bool{}
	for _, s := range d.IPs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return d, fmt.Errorf("device %s: networkData.ips: %q is not an address in CIDR form: %w", d.Device, s, err)
		}
		c := p.String()
		if seen[c] {
			return d, fmt.Errorf("device %s: networkData.ips: %q listed twice", d.Device, s)
		}
		seen[c] = true
		ips = append(ips, c)
	}
	d.IPs = ips
	if len(d.Data) > 0 && !json.Valid(d.Data) {
		return d, fmt.Errorf("device %s: data: not valid JSON", d.Device)
	}
	return d, nil
}

// NetworkData is the networkData a status entry for d carries, checked
// and in the same canonical form (IPs as CIDRs): nil when d has no
// network data. Other views of a device's network data (the device
// metadata in its containers) use it so they never differ from the
// claim's status.
func NetworkData(d DeviceStatus) (*resourceapi.NetworkDeviceData, error) {
	n, err := normalize(d)
	if err != nil {
		return nil, err
	}
	if n.InterfaceName == "" && len(n.IPs) == 0 && n.HardwareAddress == "" {
		return nil, nil
	}
	nd := &resourceapi.NetworkDeviceData{InterfaceName: n.InterfaceName, HardwareAddress: n.HardwareAddress}
	if len(n.IPs) > 0 {
		nd.IPs = n.IPs
	}
	return nd, nil
}

package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/claimstatus"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
	"github.com/sriov-dra/sriov-dra/pkg/slicepub"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// journal is one ordered log shared by every fake, so tests can assert
// the order of steps across host, IPAM, CDI, status and checkpoint.
type journal struct {
	mu      sync.Mutex
	entries []string
	// fail makes the step with this exact prefix fail.
	fail map[string]error
}

func newJournal() *journal { return &journal{fail: map[string]error{}} }

func (j *journal) add(format string, args ...any) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := fmt.Sprintf(format, args...)
	for prefix, err := range j.fail {
		if strings.HasPrefix(e, prefix) {
			j.entries = append(j.entries, e+" FAILED")
			return err
		}
	}
	j.entries = append(j.entries, e)
	return nil
}

func (j *journal) failOn(prefix string, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.fail[prefix] = err
}

func (j *journal) clearFail() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.fail = map[string]error{}
}

func (j *journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.entries
	j.entries = nil
	return out
}

// fakeKernel records host operations.
type fakeKernel struct {
	j *journal
	// rdmaChar, when set, are the RDMA character devices CDIInfo reports.
	rdmaChar []string
	// root is the fixture sysfs: CheckVFIO runs the real check on it.
	root string
	// pkeys are the port pkey tables PKeys reports, by PCI address (the
	// table after SetGUID); a device without an entry has no table.
	pkeys map[string][]string
	// marks, when set, makes DetachDevice remove the device's attach
	// marker first, as the NRI plugin's DetachDevice (production's
	// Detacher) does. fakeKernel is the tests' Detacher too.
	marks *attachmark.Marks
}

func (h *fakeKernel) Snapshot(_ context.Context, dev *inventory.Device) (vfconfig.Snapshot, error) {
	if err := h.j.add("host.Snapshot %s", dev.Name); err != nil {
		return vfconfig.Snapshot{}, err
	}
	s := vfconfig.Snapshot{PCIAddress: dev.PCIAddress, PFName: dev.PFName, PFPCIAddress: dev.PFPCIAddress, VFIndex: dev.VFIndex, Driver: dev.Driver, IfName: dev.IfName, MAC: dev.MAC, MTU: dev.MTU}
	if dev.Admin != nil {
		s.Admin = *dev.Admin
	}
	return s, nil
}
func (h *fakeKernel) ApplyVF(_ context.Context, s *vfconfig.Snapshot, set vfconfig.Settings) error {
	return h.j.add("host.ApplyVF %s %s", s.PCIAddress, settingsFields(set))
}
func (h *fakeKernel) RestoreVF(_ context.Context, s *vfconfig.Snapshot, _ vfconfig.Settings) error {
	return h.j.add("host.RestoreVF %s", s.PCIAddress)
}
func (h *fakeKernel) SetGUID(_ context.Context, s *vfconfig.Snapshot, g string) (string, error) {
	return s.IfName + "r", h.j.add("host.SetGUID %s %s", s.PCIAddress, g)
}
func (h *fakeKernel) PKeys(_ context.Context, s *vfconfig.Snapshot) ([]string, error) {
	if err := h.j.add("host.PKeys %s", s.PCIAddress); err != nil {
		return nil, err
	}
	t, ok := h.pkeys[s.PCIAddress]
	if !ok {
		return nil, fmt.Errorf("no pkey table for %s", s.PCIAddress)
	}
	return slices.Clone(t), nil
}
func (h *fakeKernel) RestoreGUID(_ context.Context, s *vfconfig.Snapshot) error {
	return h.j.add("host.RestoreGUID %s", s.PCIAddress)
}
func (h *fakeKernel) BindVFIO(_ context.Context, s *vfconfig.Snapshot) error {
	return h.j.add("host.BindVFIO %s", s.PCIAddress)
}
func (h *fakeKernel) RestoreDriver(_ context.Context, s *vfconfig.Snapshot) error {
	return h.j.add("host.RestoreDriver %s %s", s.PCIAddress, s.Driver)
}
func (h *fakeKernel) RestoreIRQs(_ context.Context, s *vfconfig.Snapshot) error {
	return h.j.add("host.RestoreIRQs %s", s.PCIAddress)
}
func (h *fakeKernel) DetachDevice(_ context.Context, d nri.PodDevice) error {
	if h.marks != nil {
		if err := h.marks.Remove(d.ClaimUID, d.Device); err != nil {
			return fmt.Errorf("device %s: remove attach marker: %w", d.Device, err)
		}
	}
	if d.Original == nil {
		return fmt.Errorf("device %s: recorded in netns %s without its original host name", d.Device, d.NetnsPath)
	}
	return h.j.add("host.Detach %s %s->%s", d.NetnsPath, d.Spec.PodIfName, d.Original.IfName)
}
func (h *fakeKernel) CheckVFIO(_ context.Context, dev *inventory.Device) error {
	return vfconfig.CheckVFIOIsolation(h.root, dev.PCIAddress)
}
func (h *fakeKernel) RDMAGUIDs(context.Context) ([]rdma.GUIDUse, error) {
	return rdma.GUIDs(h.root)
}
func (h *fakeKernel) CDIInfo(_ context.Context, dev *inventory.Device, vfio bool) ([]string, string, error) {
	if err := h.j.add("host.CDIInfo %s", dev.Name); err != nil {
		return nil, "", err
	}
	if vfio {
		return nil, dev.IOMMUGroup, nil
	}
	if dev.RDMADevice() != "" {
		if h.rdmaChar != nil {
			return slices.Clone(h.rdmaChar), "", nil
		}
		return []string{"/dev/infiniband/uverbs0", "/dev/infiniband/rdma_cm"}, "", nil
	}
	return nil, "", nil
}

// fakeIPAM hands out 10.0.0.N/24 per allocation.
type fakeIPAM struct {
	j    *journal
	mu   sync.Mutex
	next int
	held map[string]string // container ID -> address
}

func (f *fakeIPAM) Allocate(_ context.Context, req ipam.Request) (*ipam.Result, error) {
	if err := f.j.add("ipam.Allocate %s %s", req.Device, req.IfName); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	if f.held == nil {
		f.held = map[string]string{}
	}
	id := ipam.ContainerID(req.ClaimUID, req.Device)
	addr := fmt.Sprintf("10.0.0.%d/24", f.next)
	f.held[id] = addr
	return &ipam.Result{Plugin: "fake", Network: "n", ContainerID: id, IfName: req.IfName,
		IPs: []ipam.IPConfig{{Address: addr}}, Routes: []netattach.Route{{Dst: "10.1.0.0/16", GW: "10.0.0.1"}}, NetConf: json.RawMessage(`{}`), Raw: json.RawMessage(`{}`)}, nil
}

func (f *fakeIPAM) Intent(req ipam.Request) (*ipam.Result, error) {
	return &ipam.Result{Plugin: "fake", Network: "n", ContainerID: ipam.ContainerID(req.ClaimUID, req.Device), IfName: req.IfName, NetConf: json.RawMessage(`{}`)}, nil
}

func (f *fakeIPAM) Release(_ context.Context, res *ipam.Result) error {
	if err := f.j.add("ipam.Release %s", res.ContainerID); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.held, res.ContainerID)
	return nil
}

func (f *fakeIPAM) allocated() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held)
}

// fakeCDI keeps specs in memory.
type fakeCDI struct {
	j     *journal
	mu    sync.Mutex
	specs map[string][]cdi.Device
}

func (f *fakeCDI) Write(_ context.Context, uid string, devs []cdi.Device) ([]string, error) {
	if err := f.j.add("cdi.Write %s", uid); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.specs == nil {
		f.specs = map[string][]cdi.Device{}
	}
	f.specs[uid] = devs
	var ids []string
	for _, d := range devs {
		ids = append(ids, cdi.DeviceID(uid, d.Name))
	}
	return ids, nil
}

func (f *fakeCDI) Remove(_ context.Context, uid string) error {
	if err := f.j.add("cdi.Remove %s", uid); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.specs, uid)
	return nil
}

func (f *fakeCDI) Claims() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for uid := range f.specs {
		out = append(out, uid)
	}
	return sortStrings(out), nil
}

func (f *fakeCDI) SpecPath(uid string) string { return "/fake/cdi/" + uid + ".json" }

func (f *fakeCDI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.specs)
}

// fakeStatus records status updates.
type fakeStatus struct {
	j       *journal
	mu      sync.Mutex
	updates map[string][]claimstatus.DeviceStatus
}

func (f *fakeStatus) Set(c claimstatus.ClaimRef, devs []claimstatus.DeviceStatus) error {
	if err := f.j.add("status.Set %s", c.UID); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updates == nil {
		f.updates = map[string][]claimstatus.DeviceStatus{}
	}
	f.updates[string(c.UID)] = devs
	return nil
}

func (f *fakeStatus) Clear(c claimstatus.ClaimRef) error {
	if err := f.j.add("status.Clear %s", c.UID); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.updates, string(c.UID))
	return nil
}

func (f *fakeStatus) get(uid string) []claimstatus.DeviceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.updates[uid]
}

// memStore is a Store in memory that journals every save with the phase
// of each claim, and can be told to fail.
type memStore struct {
	j    *journal
	mu   sync.Mutex
	data []byte
}

func (m *memStore) Load() (*Checkpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		return nil, nil
	}
	var cp Checkpoint
	if err := json.Unmarshal(m.data, &cp); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	return &cp, nil
}

func (m *memStore) Save(cp *Checkpoint) error {
	var phases []string
	for uid, rec := range cp.Claims {
		phases = append(phases, uid+"="+string(rec.Phase))
	}
	if len(phases) == 0 {
		phases = []string{"empty"}
	}
	if m.j != nil {
		if err := m.j.add("store.Save %s", strings.Join(sortStrings(phases), ",")); err != nil {
			return err
		}
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = b
	return nil
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// swapScanner scans a sysfs fixture whose root can be swapped; it counts
// full and partial scans.
type swapScanner struct {
	mu            sync.Mutex
	host          *sysfstest.Fixture
	err           error
	full, partial int
	partialPFs    [][]string
}

var _ PFScanner = (*swapScanner)(nil)

func (s *swapScanner) inner() (inventory.Scanner, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return inventory.Scanner{Options: inventory.Options{Root: s.host.Root, Netlink: s.host.Netlink}}, s.err
}

func (s *swapScanner) Scan(ctx context.Context) (*inventory.Inventory, error) {
	sc, err := s.inner()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.full++
	s.mu.Unlock()
	return sc.Scan(ctx)
}

func (s *swapScanner) AffectedPFs(prev *inventory.Inventory, pcis, ifNames []string) []string {
	sc, _ := s.inner()
	return sc.AffectedPFs(prev, pcis, ifNames)
}

func (s *swapScanner) ScanPFs(ctx context.Context, prev *inventory.Inventory, pfs []string) (*inventory.Inventory, error) {
	sc, err := s.inner()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.partial++
	s.partialPFs = append(s.partialPFs, pfs)
	s.mu.Unlock()
	return sc.ScanPFs(ctx, prev, pfs)
}

// counts returns the number of full and partial scans so far.
func (s *swapScanner) counts() (full, partial int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.full, s.partial
}

// fakeEvents is a hwevents.Source tests send events through; err makes
// the subscription fail.
type fakeEvents struct {
	ch  chan hwevents.Event
	err error
}

func (f *fakeEvents) Subscribe(context.Context) (<-chan hwevents.Event, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.ch, nil
}

func (s *swapScanner) set(h *sysfstest.Fixture) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.host = h
}

// countingPublisher counts Publish calls.
type countingPublisher struct {
	mu   sync.Mutex
	n    int
	last slicepub.Pool
	ch   chan struct{}
}

func (p *countingPublisher) Publish(_ context.Context, r slicepub.Pool) error {
	p.mu.Lock()
	p.n++
	p.last = r
	p.mu.Unlock()
	if p.ch != nil {
		select {
		case p.ch <- struct{}{}:
		default:
		}
	}
	return nil
}

// startRun makes a Driver of cfg and runs it, publishing to a counting
// publisher that signals up to signals publications not yet waited for,
// until the test ends.
func startRun(t *testing.T, cfg Config, signals int) (*Driver, *countingPublisher) {
	t.Helper()
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pub := &countingPublisher{ch: make(chan struct{}, signals)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(ctx, pub) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return d, pub
}

func (p *countingPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *countingPublisher) devices() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.last.Slices {
		n += len(s.Devices)
	}
	return n
}

// env is a driver over fakes and a sysfs fixture.
type env struct {
	t      testing.TB
	j      *journal
	kernel *fakeKernel
	ipam   *fakeIPAM
	cdi    *fakeCDI
	status *fakeStatus
	store  Store
	fix    *sysfstest.Fixture
	scan   *swapScanner
	d      *Driver
	bootID string
	marks  *attachmark.Marks // nil: no attach markers
	// passthrough is Config.PassthroughPFs: by default the fixtures'
	// SR-IOV-disabled X710 PF (ens5f0), opted in.
	passthrough []string
	// lostTimeout is Config.LostDeviceTimeout.
	lostTimeout time.Duration
}

const testNode = "node-a"

func newEnv(t testing.TB, topo sysfstest.Topology) *env {
	t.Helper()
	j := newJournal()
	fix := sysfstest.New(t, topo)
	e := &env{t: t, j: j, kernel: &fakeKernel{j: j, root: fix.Root}, ipam: &fakeIPAM{j: j}, cdi: &fakeCDI{j: j}, status: &fakeStatus{j: j},
		store: &memStore{j: j}, fix: fix, scan: &swapScanner{host: fix}, bootID: "boot-1",
		passthrough: []string{"ens5f0"}}
	e.restart()
	return e
}

// useAttachMarks gives the driver and the fake kernel's DetachDevice
// attach markers in a fresh directory, which it returns; hostDir is the
// markers' directory as the runtime sees it ("" = the same). Call
// restart (or build a config) after it.
func (e *env) useAttachMarks(hostDir string) string {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "attached")
	marks, err := attachmark.New(dir, hostDir)
	if err != nil {
		e.t.Fatal(err)
	}
	e.marks, e.kernel.marks = marks, marks
	return dir
}

// restart builds a new Driver over the same store and fakes: an empty
// memory, as after a daemon restart.
func (e *env) restart() {
	e.t.Helper()
	d, err := New(context.Background(), e.config())
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.d = d
	e.j.take()
}

// config is the driver's config over the fakes, with the state loaded
// from the store as the daemon loads it.
func (e *env) config() Config {
	e.t.Helper()
	st, err := NewState(e.store, e.bootID)
	if err != nil {
		e.t.Fatalf("load checkpoint: %v", err)
	}
	return Config{
		NodeName: testNode, DriverName: "sriov.dra.dev", BootID: e.bootID,
		State: st, Scanner: e.scan, Attributes: inventory.Attributes,
		Kernel: e.kernel, Detacher: e.kernel, IPAM: e.ipam, CDI: e.cdi, Status: e.status,
		Netlink: e.fix.Netlink, AttachMarks: e.marks, PassthroughPFs: e.passthrough,
		LostDeviceTimeout: e.lostTimeout,
	}
}

var errInjected = errors.New("injected failure")

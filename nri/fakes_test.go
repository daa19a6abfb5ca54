package nri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// recorder is one ordered log shared by the fake host and the in-memory
// Devices, so tests can check the order of records and kernel steps.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(format string, args ...any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// memDevices is an in-memory Devices: what the driver's checkpointed state
// does, without the disk.
type memDevices struct {
	rec *recorder

	// file, when set, gets the whole state written and fsynced on every
	// record, as the driver's checkpoint does.
	file string

	mu    sync.Mutex
	devs  map[string]*PodDevice // claimUID/device
	byPod map[string][]string   // pod UID -> keys, in order
	fail  map[string]error      // method -> error
}

func newMemDevices(rec *recorder) *memDevices {
	return &memDevices{rec: rec, devs: map[string]*PodDevice{}, byPod: map[string][]string{}, fail: map[string]error{}}
}

func key(claimUID, device string) string { return claimUID + "/" + device }

func (m *memDevices) add(podUID string, d PodDevice) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key(d.ClaimUID, d.Device)
	d.PodUID = podUID
	m.devs[k] = &d
	m.byPod[podUID] = append(m.byPod[podUID], k)
}

func (m *memDevices) failOn(method string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil {
		delete(m.fail, method)
		return
	}
	m.fail[method] = err
}

func (m *memDevices) ForPod(podUID string) []PodDevice {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []PodDevice
	for _, k := range m.byPod[podUID] {
		d := *m.devs[k]
		if d.Original != nil {
			o := *d.Original
			d.Original = &o
		}
		out = append(out, d)
	}
	return out
}

func (m *memDevices) Pods() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for uid := range m.byPod {
		out = append(out, uid)
	}
	sort.Strings(out)
	return out
}

func (m *memDevices) get(claimUID, device string) (*PodDevice, error) {
	d := m.devs[key(claimUID, device)]
	if d == nil {
		return nil, fmt.Errorf("no device %s of claim %s", device, claimUID)
	}
	return d, nil
}

func (m *memDevices) Attaching(claimUID, device, netnsPath string, orig netattach.Original) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail["Attaching"]; err != nil {
		return err
	}
	d, err := m.get(claimUID, device)
	if err != nil {
		return err
	}
	same := d.Original != nil && *d.Original == orig
	d.NetnsPath, d.Original, d.Attached = netnsPath, &orig, false
	m.rec.add("rec Attaching %s %s orig=%s", device, netnsPath, orig.IfName)
	if !same {
		return m.persist()
	}
	return m.persistUnlessFromKernel(d)
}

func (m *memDevices) Attached(claimUID, device string, rdmaMoved bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail["Attached"]; err != nil {
		return err
	}
	d, err := m.get(claimUID, device)
	if err != nil {
		return err
	}
	d.Attached, d.RDMAMoved = true, rdmaMoved
	m.rec.add("rec Attached %s rdma=%v", device, rdmaMoved)
	return m.persistUnlessFromKernel(d)
}

func (m *memDevices) Detached(claimUID, device string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.fail["Detached"]; err != nil {
		return err
	}
	d, err := m.get(claimUID, device)
	if err != nil {
		return err
	}
	d.NetnsPath, d.Attached, d.RDMAMoved = "", false, false
	m.rec.add("rec Detached %s", device)
	return m.persistUnlessFromKernel(d)
}

func (m *memDevices) device(claimUID, device string) PodDevice {
	m.mu.Lock()
	defer m.mu.Unlock()
	return *m.devs[key(claimUID, device)]
}

// fakeHost is a HostOps over an in-memory model: where each netdev and
// RDMA device is ("" = host) and under which name. It records each call.
type fakeHost struct {
	rec *recorder

	mu   sync.Mutex
	link map[string]*fakeLink // by host name (original)
	rdma map[string]string    // RDMA device -> netns ("" host)
	irqs map[string]string    // PCI -> cpus
	gone map[string]bool      // netns paths that no longer exist
	// holds: the paths of open holds -> the netns path each holds.
	holds    map[string]string
	holdSeq  int
	holdFail error
	fail     map[string]error // method -> error
	// detachDelay makes Detach slow (a kernel that takes its time).
	detachDelay time.Duration
	// detachGate, when set, makes Detach announce itself on
	// detachEntered and then wait until the gate is closed: a detach
	// held in the kernel for as long as a test needs.
	detachGate    chan struct{}
	detachEntered chan struct{}
}

type fakeLink struct {
	netns string // "" host
	name  string // current name
	mac   string
	mtu   int
}

func newFakeHost(rec *recorder) *fakeHost {
	return &fakeHost{rec: rec, link: map[string]*fakeLink{}, rdma: map[string]string{}, irqs: map[string]string{}, gone: map[string]bool{}, fail: map[string]error{}, holds: map[string]string{}}
}

func (h *fakeHost) addLink(name, mac string, mtu int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.link[name] = &fakeLink{name: name, mac: mac, mtu: mtu}
}

func (h *fakeHost) failOn(method string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.fail, method)
		return
	}
	h.fail[method] = err
}

// find returns the link now named name in netns.
func (h *fakeHost) find(netns, name string) *fakeLink {
	for _, l := range h.link {
		if l.netns == netns && l.name == name {
			return l
		}
	}
	return nil
}

func (h *fakeHost) where(hostName string) (netns, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.link[hostName]
	return l.netns, l.name
}

func (h *fakeHost) ReadOriginal(_ context.Context, hostIfName, pciAddress string) (netattach.Original, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.add("host ReadOriginal %s", hostIfName)
	if err := h.fail["ReadOriginal"]; err != nil {
		return netattach.Original{}, err
	}
	l := h.find("", hostIfName)
	if l == nil {
		return netattach.Original{}, fmt.Errorf("link %s not found on the host", hostIfName)
	}
	// The model has no PCI parents: the identity is the PCI address the
	// plugin passes, as the real ReadOriginal returns for a VF.
	return netattach.Original{IfName: l.name, MAC: l.mac, MTU: l.mtu, Identity: netattach.Identity{PCIAddress: pciAddress}}, nil
}

// known fails like the real operations when the plugin passes no identity.
func known(id netattach.Identity, what string) error {
	if !id.Known() {
		return fmt.Errorf("%s: no identity given", what)
	}
	return nil
}

func (h *fakeHost) Attach(_ context.Context, netnsPath string, spec netattach.Spec, id netattach.Identity) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.add("host Attach %s %s as %s", spec.HostIfName, netnsPath, spec.PodIfName)
	if err := h.fail["Attach"]; err != nil {
		return err
	}
	if err := known(id, "attach"); err != nil {
		return err
	}
	if h.gone[netnsPath] {
		return fmt.Errorf("netns %s: no such file", netnsPath)
	}
	if h.find(netnsPath, spec.PodIfName) != nil {
		return nil
	}
	l := h.find("", spec.HostIfName)
	if l == nil {
		return fmt.Errorf("link %s not found on the host", spec.HostIfName)
	}
	l.netns, l.name = netnsPath, spec.PodIfName
	if spec.MTU != 0 {
		l.mtu = spec.MTU
	}
	if spec.MAC != "" {
		l.mac = spec.MAC
	}
	return nil
}

func (h *fakeHost) InNetns(_ context.Context, netnsPath, podIfName string, id netattach.Identity) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.add("host InNetns %s %s", netnsPath, podIfName)
	if err := h.fail["InNetns"]; err != nil {
		return false, err
	}
	if err := known(id, "in netns"); err != nil {
		return false, err
	}
	if h.gone[netnsPath] {
		return false, nil
	}
	return h.find(netnsPath, podIfName) != nil, nil
}

// NetnsGone: the model's netns are files (or folders) standing in for
// the runtime's bind mounts; one marked gone, or missing, is gone.
func (h *fakeHost) NetnsGone(path string) (bool, string, error) {
	h.mu.Lock()
	gone := h.gone[path]
	h.mu.Unlock()
	if gone {
		return true, "marked gone", nil
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return true, "the path does not exist", nil
	} else if err != nil {
		return false, "", err
	}
	return false, "", nil
}

// holdingHost is the fake host that can hold a netns (NetnsHolder), as
// the real one can; the plain fakeHost cannot, which keeps the tests of
// the no-hold path (a runtime path gone with nothing holding the netns)
// as they are.
type holdingHost struct{ *fakeHost }

// HoldNetns: a hold keeps the netns alive in the model: a path through
// it reaches the netns's links even once the runtime's path is gone.
func (hh holdingHost) HoldNetns(path string) (NetnsHold, error) {
	h := hh.fakeHost
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.add("host HoldNetns %s", path)
	if h.holdFail != nil {
		return nil, h.holdFail
	}
	if h.gone[path] {
		return nil, fmt.Errorf("hold netns %s: no such file", path)
	}
	h.holdSeq++
	hp := fmt.Sprintf("/proc/self/fd/%d", 100+h.holdSeq)
	h.holds[hp] = path
	return &fakeHold{h: h, path: hp}, nil
}

type fakeHold struct {
	h    *fakeHost
	path string
}

func (f *fakeHold) Path() string { return f.path }

func (f *fakeHold) Close() error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	f.h.rec.add("host CloseHold %s", f.h.holds[f.path])
	delete(f.h.holds, f.path)
	return nil
}

// heldNetns returns the paths of the netns the model has open holds of.
func (h *fakeHost) heldNetns() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, ns := range h.holds {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

func (h *fakeHost) Detach(_ context.Context, netnsPath, podIfName string, orig netattach.Original) error {
	time.Sleep(h.detachDelay)
	h.mu.Lock()
	gate, entered := h.detachGate, h.detachEntered
	h.mu.Unlock()
	if gate != nil {
		entered <- struct{}{}
		<-gate
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.add("host Detach %s %s to %s", netnsPath, podIfName, orig.IfName)
	if err := h.fail["Detach"]; err != nil {
		return err
	}
	if err := known(orig.Identity, "detach"); err != nil {
		return err
	}
	if ns, ok := h.holds[netnsPath]; ok {
		// Through a hold: the netns is alive whatever its path.
		netnsPath = ns
	} else if h.gone[netnsPath] {
		netnsPath = "(gone)"
	}
	l := h.find(netnsPath, podIfName)
	if l == nil {
		// The kernel returned it to the host under its pod name.
		l = h.find("", podIfName)
	}
	if l == nil {
		if h.find("", orig.IfName) != nil {
			return nil // already restored
		}
		return fmt.Errorf("link %s: not in netns %s nor on the host", podIfName, netnsPath)
	}
	l.netns, l.name, l.mac, l.mtu = "", orig.IfName, orig.MAC, orig.MTU
	return nil
}

func (h *fakeHost) MoveRDMA(_ context.Context, rdmaDevice, netnsPath string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.add("host MoveRDMA %s %s", rdmaDevice, netnsPath)
	if err := h.fail["MoveRDMA"]; err != nil {
		return err
	}
	h.rdma[rdmaDevice] = netnsPath
	return nil
}

func (h *fakeHost) ReturnRDMA(_ context.Context, rdmaDevice, netnsPath string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.add("host ReturnRDMA %s %s", rdmaDevice, netnsPath)
	if err := h.fail["ReturnRDMA"]; err != nil {
		return err
	}
	h.rdma[rdmaDevice] = ""
	return nil
}

func (h *fakeHost) PinIRQs(_ context.Context, pciAddress, cpus string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rec.add("host PinIRQs %s %s", pciAddress, cpus)
	if err := h.fail["PinIRQs"]; err != nil {
		return err
	}
	h.irqs[pciAddress] = cpus
	return nil
}

var errInjected = errors.New("injected failure")

// only keeps the calls that start with one of the prefixes.
func only(calls []string, prefixes ...string) []string {
	var out []string
	for _, c := range calls {
		for _, p := range prefixes {
			if strings.HasPrefix(c, p) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

func writeEmpty(path string) error { return os.WriteFile(path, nil, 0o600) }

// persistUnlessFromKernel persists a change to d, except for a device
// whose attach state is derived from the kernel: as the driver's state,
// that stays in memory (unless its original changed). The caller holds
// m.mu.
func (m *memDevices) persistUnlessFromKernel(d *PodDevice) error {
	if d.AttachStateFromKernel {
		return nil
	}
	return m.persist()
}

// persist writes the state to m.file durably: temp file, fsync, rename,
// directory fsync. The caller holds m.mu.
func (m *memDevices) persist() error {
	if m.file == "" {
		return nil
	}
	b, err := json.Marshal(m.devs)
	if err != nil {
		return err
	}
	tmp := m.file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, m.file); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(m.file))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

package slicepub

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

const (
	testDriver = "sriov.dra.dev"
	testNode   = "node-a"
)

// device is a device with attributes like the driver's.
func device(i int, mac string) resourceapi.Device {
	str := func(s string) resourceapi.DeviceAttribute { return resourceapi.DeviceAttribute{StringValue: &s} }
	num := int64(i)
	return resourceapi.Device{
		Name: fmt.Sprintf("pci-0000-%02x-%02x-%x", i/256, (i/8)%32, i%8),
		Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
			"sriov.dra.dev/kind":              str("vf"),
			"sriov.dra.dev/mac":               str(mac),
			"sriov.dra.dev/pfName":            str(fmt.Sprintf("ens%df0", i/64)),
			"sriov.dra.dev/vfIndex":           {IntValue: &num},
			"sriov.dra.dev/driver":            str("iavf"),
			"sriov.dra.dev/vendor":            str("8086"),
			"sriov.dra.dev/device":            str("1889"),
			"sriov.dra.dev/linkType":          str("ethernet"),
			"sriov.dra.dev/numa":              {IntValue: &num},
			"resource.kubernetes.io/pcieRoot": str(fmt.Sprintf("pci0000:%02x", i/128)),
		},
	}
}

// makePool is a pool of n devices in slices of at most 128; change(i)
// returns a different MAC for device i when it should differ.
func makePool(n int, change func(i int) bool) Pool {
	pool := Pool{Name: testNode}
	for start := 0; start < n || start == 0; start += MaxDevicesPerSlice {
		end := min(start+MaxDevicesPerSlice, n)
		s := Slice{Devices: []resourceapi.Device{}}
		for i := start; i < end; i++ {
			mac := fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256)
			if change != nil && change(i) {
				mac = "02:ff:ff:ff:ff:ff"
			}
			s.Devices = append(s.Devices, device(i, mac))
		}
		pool.Slices = append(pool.Slices, s)
		if end >= n {
			break
		}
	}
	return pool
}

// harness runs a Publisher over a fake server; resync counts Resync calls.
type harness struct {
	t      *testing.T
	srv    *fakeServer
	pub    *Publisher
	ctx    context.Context
	stop   func()
	mu     sync.Mutex
	errs   []error
	resync chan struct{}
}

func start(t *testing.T, srv *fakeServer, tune ...func(*Options)) *harness {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	h := &harness{t: t, srv: srv, resync: make(chan struct{}, 16)}
	opts := Options{
		Client: srv, DriverName: testDriver, NodeName: testNode,
		Resync: func() {
			select {
			case h.resync <- struct{}{}:
			default:
			}
		},
		ErrorHandler: func(ctx context.Context, err error, msg string) {
			klog.FromContext(ctx).Info(msg, "err", err)
			h.mu.Lock()
			h.errs = append(h.errs, err)
			h.mu.Unlock()
		},
		Backoff: wait.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 100, Cap: 200 * time.Millisecond},
	}
	for _, f := range tune {
		f(&opts)
	}
	pub, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := pub.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	h.pub, h.ctx = pub, ctx
	h.stop = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(h.stop)
	return h
}

// publish publishes pool and waits until it is written.
func (h *harness) publish(pool Pool) {
	h.t.Helper()
	if err := h.pub.Publish(h.ctx, pool); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	if err := h.pub.Wait(ctx); err != nil {
		h.t.Fatalf("pool not written: %v", err)
	}
}

func (h *harness) errors() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.errs...)
}

// checkServer checks the server holds pool at generation gen: slices
// named by index, owned by the node, with the pool's fields and devices.
func checkServer(t *testing.T, srv *fakeServer, pool Pool, gen int64) {
	t.Helper()
	objs := srv.snapshot()
	if len(objs) != len(pool.Slices) {
		t.Fatalf("server has %d slices, want %d", len(objs), len(pool.Slices))
	}
	var names []string
	for n := range objs {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, name := range names {
		s := objs[name]
		prefix := fmt.Sprintf("%05x-%s-%s-", i, testDriver, testNode)
		if !strings.HasPrefix(name, prefix) {
			t.Errorf("slice %d named %s, want prefix %s", i, name, prefix)
		}
		want := resourceapi.ResourcePool{Name: testNode, Generation: gen, ResourceSliceCount: int64(len(pool.Slices))}
		if s.Spec.Pool != want {
			t.Errorf("%s: spec.pool %+v, want %+v", name, s.Spec.Pool, want)
		}
		if s.Spec.Driver != testDriver || s.Spec.NodeName == nil || *s.Spec.NodeName != testNode {
			t.Errorf("%s: driver %q node %v", name, s.Spec.Driver, s.Spec.NodeName)
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Node" || s.OwnerReferences[0].Name != testNode ||
			s.OwnerReferences[0].UID != srv.nodeUID || s.OwnerReferences[0].Controller == nil || !*s.OwnerReferences[0].Controller {
			t.Errorf("%s: owner references %+v", name, s.OwnerReferences)
		}
		if len(s.Spec.Devices) > MaxDevicesPerSlice {
			t.Errorf("%s: %d devices", name, len(s.Spec.Devices))
		}
		gotSum, _ := specDigest(&s.Spec)
		wantSpec := resourceapi.ResourceSliceSpec{Driver: testDriver, NodeName: s.Spec.NodeName, Devices: pool.Slices[i].Devices}
		wantSum, _ := specDigest(&wantSpec)
		if gotSum != wantSum {
			t.Errorf("%s: devices differ from slice %d of the pool", name, i)
		}
	}
}

type writes struct{ creates, updates, deletes int }

func (h *harness) writes() writes {
	return writes{h.srv.count("create"), h.srv.count("update"), h.srv.count("delete")}
}

func (w writes) minus(o writes) writes {
	return writes{w.creates - o.creates, w.updates - o.updates, w.deletes - o.deletes}
}

// TestConverge publishes one pool, then another, and counts the writes
// of the second.
func TestConverge(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second Pool
		want          writes
		wantGen       int64
	}{
		{"unchanged", makePool(1024, nil), makePool(1024, nil), writes{}, 1},
		{"one device changed", makePool(1024, nil), makePool(1024, func(i int) bool { return i == 700 }), writes{updates: 8}, 2},
		{"fewer devices", makePool(1024, nil), makePool(700, nil), writes{updates: 6, deletes: 2}, 2},
		{"more devices", makePool(300, nil), makePool(1024, nil), writes{updates: 3, creates: 5}, 2},
		{"empty pool", makePool(1024, nil), makePool(0, nil), writes{updates: 1, deletes: 7}, 2},
		{"no slices", makePool(256, nil), Pool{Name: testNode}, writes{deletes: 2}, 0},
		{"pool renamed", makePool(256, nil), func() Pool { p := makePool(256, nil); p.Name = "other"; return p }(), writes{creates: 2, deletes: 2}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer()
			h := start(t, srv)
			h.publish(tc.first)
			if len(tc.first.Slices) > 0 {
				checkServer(t, srv, tc.first, 1)
			}
			if got := h.writes(); got != (writes{creates: len(tc.first.Slices)}) {
				t.Fatalf("first publish wrote %+v, want %d creates", got, len(tc.first.Slices))
			}
			before := h.writes()
			h.publish(tc.second)
			if got := h.writes().minus(before); got != tc.want {
				t.Errorf("second publish wrote %+v, want %+v", got, tc.want)
			}
			if tc.second.Name == testNode && len(tc.second.Slices) > 0 {
				checkServer(t, srv, tc.second, tc.wantGen)
			}
			for name, s := range srv.snapshot() {
				if s.Spec.Pool.Name != tc.second.Name || s.Spec.Pool.Generation != tc.wantGen {
					t.Errorf("%s: pool %+v, want %s generation %d", name, s.Spec.Pool, tc.second.Name, tc.wantGen)
				}
			}
			if errs := h.errors(); len(errs) > 0 {
				t.Errorf("errors: %v", errs)
			}
		})
	}
}

// A daemon restarted on an unchanged host adopts its slices with no
// write; a changed host gets only the writes the change needs.
func TestAdoptOnRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(*fakeServer)
		pool    Pool
		want    writes
		wantGen int64
	}{
		{"unchanged", nil, makePool(1024, nil), writes{}, 1},
		{"one device changed", nil, makePool(1024, func(i int) bool { return i == 3 }), writes{updates: 8}, 2},
		{"fewer devices", nil, makePool(200, nil), writes{updates: 2, deletes: 6}, 2},
		{"node recreated", func(s *fakeServer) { s.nodeUID = "node-uid-2" }, makePool(1024, nil), writes{updates: 8}, 2},
		{"half-written generation", func(s *fakeServer) {
			for _, name := range s.names()[:3] {
				s.foreignUpdate(name, func(r *resourceapi.ResourceSlice) { r.Spec.Pool.Generation = 2 })
			}
		}, makePool(1024, nil), writes{updates: 8}, 3},
		{"duplicate index", func(s *fakeServer) {
			dup := s.snapshot()[s.names()[0]]
			dup.Name = dup.Name[:len(dup.Name)-5] + "zzzzz"
			s.foreignCreate(dup)
		}, makePool(1024, nil), writes{updates: 8, deletes: 1}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer()
			h := start(t, srv)
			h.publish(makePool(1024, nil))
			h.stop()
			if tc.prepare != nil {
				tc.prepare(srv)
			}
			before := h.writes()
			h2 := start(t, srv)
			h2.publish(tc.pool)
			if got := h2.writes().minus(before); got != tc.want {
				t.Errorf("after restart wrote %+v, want %+v", got, tc.want)
			}
			checkServer(t, srv, tc.pool, tc.wantGen)
		})
	}
}

// Slices someone else deletes, changes or adds are restored: the
// publisher asks for the pool (Resync) and writes it again.
func TestRestoreForeignChanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(srv *fakeServer, names []string)
	}{
		{"deleted", func(srv *fakeServer, names []string) { srv.foreignDelete(names[2]) }},
		{"all deleted", func(srv *fakeServer, names []string) {
			for _, n := range names {
				srv.foreignDelete(n)
			}
		}},
		{"devices changed", func(srv *fakeServer, names []string) {
			srv.foreignUpdate(names[1], func(s *resourceapi.ResourceSlice) { s.Spec.Devices = s.Spec.Devices[:5] })
		}},
		{"generation bumped", func(srv *fakeServer, names []string) {
			srv.foreignUpdate(names[0], func(s *resourceapi.ResourceSlice) { s.Spec.Pool.Generation = 7 })
		}},
		{"slice added", func(srv *fakeServer, names []string) {
			dup := srv.snapshot()[names[0]]
			dup.Name = strings.Replace(dup.Name, "00000-", "00009-", 1)
			srv.foreignCreate(dup)
		}},
		{"changed while the watch was down", func(srv *fakeServer, names []string) {
			srv.closeWatches()
			srv.inject("watch", apierrors.NewResourceExpired("too old"))
			srv.foreignDelete(names[3])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer()
			h := start(t, srv)
			pool := makePool(1024, nil)
			h.publish(pool)
			var names []string
			for n := range srv.snapshot() {
				names = append(names, n)
			}
			sort.Strings(names)
			tc.change(srv, names)
			// The owner's part: publish its pool again when asked.
			select {
			case <-h.resync:
			case <-time.After(5 * time.Second):
				t.Fatal("no Resync within 5s")
			}
			// The driver debounces its rescans: one publish for a burst.
			time.Sleep(50 * time.Millisecond)
			for len(h.resync) > 0 {
				<-h.resync
			}
			h.publish(makePool(1024, nil))
			var gen int64
			for _, s := range srv.snapshot() {
				gen = max(gen, s.Spec.Pool.Generation)
			}
			if gen <= 1 {
				t.Errorf("restored at generation %d, want above the first publication's 1", gen)
			}
			checkServer(t, srv, pool, gen)
			// And nothing more: the publisher's own writes are not news.
			before := h.writes()
			time.Sleep(100 * time.Millisecond)
			select {
			case <-h.resync:
				t.Error("Resync after the publisher's own writes")
			default:
			}
			if got := h.writes().minus(before); got != (writes{}) {
				t.Errorf("writes after restoring: %+v", got)
			}
		})
	}
}

// Someone else undoing every write (another daemon with another pool)
// is answered at most once per ResyncInterval, not in a tight loop.
func TestResyncPaced(t *testing.T) {
	srv := newFakeServer()
	const interval = 400 * time.Millisecond
	h := start(t, srv, func(o *Options) { o.ResyncInterval = interval })
	h.publish(makePool(256, nil))
	var at []time.Time
	for round := 0; round < 3; round++ {
		var first string
		for name := range srv.snapshot() {
			if first == "" || name < first {
				first = name
			}
		}
		srv.foreignUpdate(first, func(s *resourceapi.ResourceSlice) { s.Spec.Devices = s.Spec.Devices[1:] })
		select {
		case <-h.resync:
			at = append(at, time.Now())
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: no Resync within 5s", round)
		}
		h.publish(makePool(256, nil))
		checkServer(t, srv, makePool(256, nil), int64(round+2))
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < interval-50*time.Millisecond {
			t.Errorf("Resync %d came %v after the one before, want at least %v", i, gap, interval)
		}
	}
}

// Failed writes are retried with backoff; a conflict lists again.
func TestRetry(t *testing.T) {
	conflict := apierrors.NewConflict(sliceGR, "x", errors.New("modified"))
	unavailable := apierrors.NewServiceUnavailable("etcd leader changed")
	for _, tc := range []struct {
		name   string
		verb   string
		errs   []error
		second bool // inject before the second publish (an update)
		want   string
	}{
		{"create unavailable", "create", []error{unavailable, unavailable}, false, "create ResourceSlice 00000-sriov.dra.dev-node-a-*"},
		{"update conflict", "update", []error{conflict}, true, "update ResourceSlice 00000-sriov.dra.dev-node-a-"},
		{"node unavailable", "node", []error{unavailable}, false, "read the UID of node node-a"},
		{"list unavailable", "list", []error{unavailable, unavailable}, false, "list the ResourceSlices of node node-a"},
		{"watch unavailable", "watch", []error{unavailable}, false, "watch the ResourceSlices"},
		{"delete unavailable", "delete", []error{unavailable}, true, "delete obsolete ResourceSlice 00001-sriov.dra.dev-node-a-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer()
			if !tc.second {
				srv.inject(tc.verb, tc.errs...)
			}
			h := start(t, srv)
			h.publish(makePool(256, nil))
			second := makePool(256, nil)
			if tc.second {
				srv.inject(tc.verb, tc.errs...)
				second = makePool(100, nil)
			}
			lists := srv.count("list")
			h.publish(second)
			checkServer(t, srv, second, map[bool]int64{false: 1, true: 2}[tc.second])
			errs := h.errors()
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors reported: %v, want %d", errs, len(tc.errs))
			}
			for _, err := range errs {
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not say %q", err, tc.want)
				}
			}
			if tc.second && srv.count("list") == lists {
				t.Error("no list after a failed write")
			}
		})
	}
}

// A server without DRADeviceTaints drops the taints: reported as a
// DroppedFieldsError naming the devices, and not written again.
func TestDroppedTaints(t *testing.T) {
	srv := newFakeServer()
	srv.dropTaints = true
	h := start(t, srv)
	taint := resourceapi.DeviceTaint{Key: "sriov.dra.dev/unhealthy", Value: "link-down", Effect: resourceapi.DeviceTaintEffectNoSchedule}
	pool := makePool(256, nil)
	pool.Slices[1].Devices[4].Taints = []resourceapi.DeviceTaint{taint}
	h.publish(pool)
	var dropped *DroppedFieldsError
	errs := h.errors()
	if len(errs) != 1 || !errors.As(errs[0], &dropped) {
		t.Fatalf("errors %v, want one DroppedFieldsError", errs)
	}
	if !reflect.DeepEqual(dropped.DisabledFeatures(), []string{"DRADeviceTaints"}) || dropped.SliceIndex != 1 {
		t.Errorf("dropped %+v", dropped)
	}
	if !strings.Contains(dropped.Error(), "spec.devices[4].taints (device "+pool.Slices[1].Devices[4].Name+")") {
		t.Errorf("error does not name the field and device: %v", dropped)
	}
	before := h.writes()
	h.publish(makePoolWithTaint(taint))
	if got := h.writes().minus(before); got != (writes{}) {
		t.Errorf("republishing the same pool wrote %+v", got)
	}
}

func makePoolWithTaint(taint resourceapi.DeviceTaint) Pool {
	pool := makePool(256, nil)
	pool.Slices[1].Devices[4].Taints = []resourceapi.DeviceTaint{taint}
	return pool
}

// Taints keep the timeAdded the server gave them across updates of their
// slice.
func TestTaintTimeKept(t *testing.T) {
	srv := newFakeServer()
	h := start(t, srv)
	taint := resourceapi.DeviceTaint{Key: "sriov.dra.dev/unhealthy", Value: "link-down", Effect: resourceapi.DeviceTaintEffectNoSchedule}
	h.publish(makePoolWithTaint(taint))
	timeOf := func() string {
		for _, s := range srv.snapshot() {
			for _, d := range s.Spec.Devices {
				for _, tt := range d.Taints {
					return tt.TimeAdded.String()
				}
			}
		}
		return ""
	}
	was := timeOf()
	changed := makePool(256, func(i int) bool { return i == 200 })
	changed.Slices[1].Devices[4].Taints = []resourceapi.DeviceTaint{taint}
	h.publish(changed)
	if is := timeOf(); is != was || was == "" {
		t.Errorf("taint timeAdded %s -> %s", was, is)
	}
	if len(h.errors()) != 0 {
		t.Errorf("errors: %v", h.errors())
	}
}

func TestValidate(t *testing.T) {
	long := makePool(0, nil)
	long.Slices[0].Devices = makePool(129, nil).Slices[0].Devices
	long.Slices[0].Devices = append(long.Slices[0].Devices, makePool(129, nil).Slices[1].Devices...)
	dup := makePool(2, nil)
	dup.Slices = append(dup.Slices, Slice{Devices: dup.Slices[0].Devices[:1]})
	unnamed := makePool(2, nil)
	unnamed.Slices[0].Devices[1].Name = ""
	for _, tc := range []struct {
		name string
		pool Pool
		want string
	}{
		{"ok", makePool(300, nil), ""},
		{"no name", Pool{}, "spec.pool.name"},
		{"too many devices", long, "129 devices (spec.devices), at most 128"},
		{"duplicate device", dup, "(spec.devices[0].name) is in slice 0 and slice 1"},
		{"unnamed device", unnamed, "spec.devices[1].name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer()
			pub, err := New(Options{Client: srv, DriverName: testDriver, NodeName: testNode})
			if err != nil {
				t.Fatal(err)
			}
			err = pub.Publish(context.Background(), tc.pool)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if next, _ := pub.pending(); next != nil {
				t.Error("an invalid pool was handed over")
			}
		})
	}
}

func TestNewRequires(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{DriverName: testDriver, NodeName: testNode}, "Client"},
		{Options{Client: newFakeServer(), NodeName: testNode}, "DriverName"},
		{Options{Client: newFakeServer(), DriverName: testDriver}, "NodeName"},
	} {
		if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v): %v, want an error naming %s", tc.opts, err, tc.want)
		}
	}
}

func TestIndexOf(t *testing.T) {
	pub, _ := New(Options{Client: newFakeServer(), DriverName: testDriver, NodeName: testNode})
	for _, tc := range []struct {
		name string
		n    int
		want int
	}{
		{"00000-sriov.dra.dev-node-a-x7k2p", 8, 0},
		{"00007-sriov.dra.dev-node-a-x7k2p", 8, 7},
		{"00008-sriov.dra.dev-node-a-x7k2p", 8, -1},
		{"00001-sriov.dra.dev-node-b-x7k2p", 8, -1},
		{"0001-sriov.dra.dev-node-a-x7k2p", 8, -1},
		{"node-a-sriov.dra.dev-x7k2p", 8, -1},
		{"zzzzz-sriov.dra.dev-node-a-x7k2p", 8, -1},
		{"100000-sriov.dra.dev-node-a-x7k2p", 0x100001, 0x100000},
		{"00001-sriov.dra.dev-node-a-x7k2p", 0x100001, -1},
	} {
		if got := pub.indexOf(tc.name, tc.n); got != tc.want {
			t.Errorf("indexOf(%s, %d) = %d, want %d", tc.name, tc.n, got, tc.want)
		}
	}
}

package slicepub

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// fakeServer is an in-memory API server for ResourceSlices: it stores
// copies (a JSON round trip, as over the wire), assigns UIDs, names from
// generateName and resourceVersions, checks resourceVersions on update
// and UIDs on delete, filters by field selector, and streams watch
// events. Errors can be injected per verb, and it can drop taints as a
// server without DRADeviceTaints does.
type fakeServer struct {
	mu       sync.Mutex
	rv       int
	objs     map[string]*resourceapi.ResourceSlice
	nodeUID  types.UID
	watchers []*fakeWatch
	// fail maps a verb to the errors its next calls return.
	fail map[string][]error
	// dropTaints stores devices without their taints.
	dropTaints bool
	// calls counts calls by verb ("list", "watch", "create", ...).
	calls map[string]int
}

func newFakeServer() *fakeServer {
	return &fakeServer{objs: map[string]*resourceapi.ResourceSlice{}, nodeUID: "node-uid-1", fail: map[string][]error{}, calls: map[string]int{}}
}

var sliceGR = schema.GroupResource{Group: "resource.k8s.io", Resource: "resourceslices"}

func roundTrip(s *resourceapi.ResourceSlice) *resourceapi.ResourceSlice {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	out := &resourceapi.ResourceSlice{}
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

// injected returns the next injected error of verb and counts the call.
func (f *fakeServer) injected(verb string) error {
	f.calls[verb]++
	if errs := f.fail[verb]; len(errs) > 0 {
		f.fail[verb] = errs[1:]
		return errs[0]
	}
	return nil
}

func (f *fakeServer) inject(verb string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[verb] = append(f.fail[verb], errs...)
}

func (f *fakeServer) count(verb string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[verb]
}

func (f *fakeServer) stamp(s *resourceapi.ResourceSlice) {
	f.rv++
	s.ResourceVersion = strconv.Itoa(f.rv)
	if f.dropTaints {
		for i := range s.Spec.Devices {
			s.Spec.Devices[i].Taints = nil
		}
	}
	for i := range s.Spec.Devices {
		for j := range s.Spec.Devices[i].Taints {
			if s.Spec.Devices[i].Taints[j].TimeAdded == nil {
				s.Spec.Devices[i].Taints[j].TimeAdded = &metav1.Time{Time: time.Unix(int64(1_800_000_000+f.rv), 0)}
			}
		}
	}
}

func (f *fakeServer) notify(t watch.EventType, s *resourceapi.ResourceSlice) {
	for _, w := range f.watchers {
		if w.sel.Matches(sliceFields(s)) {
			w.send(watch.Event{Type: t, Object: roundTrip(s)})
		}
	}
}

func sliceFields(s *resourceapi.ResourceSlice) fields.Set {
	node := ""
	if s.Spec.NodeName != nil {
		node = *s.Spec.NodeName
	}
	return fields.Set{resourceapi.ResourceSliceSelectorNodeName: node, resourceapi.ResourceSliceSelectorDriver: s.Spec.Driver}
}

func (f *fakeServer) ListSlices(_ context.Context, opts metav1.ListOptions) (*resourceapi.ResourceSliceList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected("list"); err != nil {
		return nil, err
	}
	sel, err := fields.ParseSelector(opts.FieldSelector)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	l := &resourceapi.ResourceSliceList{ListMeta: metav1.ListMeta{ResourceVersion: strconv.Itoa(f.rv)}}
	for _, name := range f.names() {
		if s := f.objs[name]; sel.Matches(sliceFields(s)) {
			l.Items = append(l.Items, *roundTrip(s))
		}
	}
	return l, nil
}

func (f *fakeServer) names() []string {
	var out []string
	for n := range f.objs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (f *fakeServer) WatchSlices(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected("watch"); err != nil {
		return nil, err
	}
	sel, err := fields.ParseSelector(opts.FieldSelector)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	w := &fakeWatch{f: f, sel: sel, ch: make(chan watch.Event, 4096)}
	f.watchers = append(f.watchers, w)
	return w, nil
}

func (f *fakeServer) CreateSlice(_ context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected("create"); err != nil {
		return nil, err
	}
	c := roundTrip(s)
	if c.Name == "" {
		c.Name = fmt.Sprintf("%s%05d", c.GenerateName, f.rv+1)
	}
	if _, ok := f.objs[c.Name]; ok {
		return nil, apierrors.NewAlreadyExists(sliceGR, c.Name)
	}
	c.UID = types.UID(fmt.Sprintf("uid-%d", f.rv+1))
	f.stamp(c)
	f.objs[c.Name] = c
	f.notify(watch.Added, c)
	return roundTrip(c), nil
}

func (f *fakeServer) UpdateSlice(_ context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected("update"); err != nil {
		return nil, err
	}
	old, ok := f.objs[s.Name]
	if !ok {
		return nil, apierrors.NewNotFound(sliceGR, s.Name)
	}
	if s.ResourceVersion != old.ResourceVersion || (s.UID != "" && s.UID != old.UID) {
		return nil, apierrors.NewConflict(sliceGR, s.Name, fmt.Errorf("the object has been modified"))
	}
	c := roundTrip(s)
	c.UID = old.UID
	f.stamp(c)
	f.objs[c.Name] = c
	f.notify(watch.Modified, c)
	return roundTrip(c), nil
}

func (f *fakeServer) DeleteSlice(_ context.Context, name string, uid types.UID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected("delete"); err != nil {
		return err
	}
	old, ok := f.objs[name]
	if !ok {
		return apierrors.NewNotFound(sliceGR, name)
	}
	if uid != "" && uid != old.UID {
		return apierrors.NewConflict(sliceGR, name, fmt.Errorf("UID precondition failed"))
	}
	delete(f.objs, name)
	f.rv++
	gone := roundTrip(old)
	gone.ResourceVersion = strconv.Itoa(f.rv)
	f.notify(watch.Deleted, gone)
	return nil
}

func (f *fakeServer) GetNodeUID(_ context.Context, name string) (types.UID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.injected("node"); err != nil {
		return "", err
	}
	return f.nodeUID, nil
}

// snapshot returns copies of the stored slices by name.
func (f *fakeServer) snapshot() map[string]*resourceapi.ResourceSlice {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]*resourceapi.ResourceSlice{}
	for n, s := range f.objs {
		out[n] = roundTrip(s)
	}
	return out
}

// foreignDelete and foreignUpdate change the store as another client.
func (f *fakeServer) foreignDelete(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.objs[name]
	delete(f.objs, name)
	f.rv++
	old.ResourceVersion = strconv.Itoa(f.rv)
	f.notify(watch.Deleted, old)
}

func (f *fakeServer) foreignUpdate(name string, change func(*resourceapi.ResourceSlice)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := roundTrip(f.objs[name])
	change(c)
	f.stamp(c)
	f.objs[name] = c
	f.notify(watch.Modified, c)
}

func (f *fakeServer) foreignCreate(s *resourceapi.ResourceSlice) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := roundTrip(s)
	c.UID = types.UID(fmt.Sprintf("uid-%d", f.rv+1))
	f.stamp(c)
	f.objs[c.Name] = c
	f.notify(watch.Added, c)
}

// closeWatches ends every watch, as an API server restart does.
func (f *fakeServer) closeWatches() {
	f.mu.Lock()
	ws := f.watchers
	f.watchers = nil
	f.mu.Unlock()
	for _, w := range ws {
		w.Stop()
	}
}

type fakeWatch struct {
	f    *fakeServer
	sel  fields.Selector
	mu   sync.Mutex
	ch   chan watch.Event
	done bool
}

func (w *fakeWatch) send(ev watch.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.ch <- ev
	}
}

func (w *fakeWatch) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		close(w.ch)
	}
}

func (w *fakeWatch) ResultChan() <-chan watch.Event { return w.ch }

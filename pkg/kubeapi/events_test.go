package kubeapi_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2/ktesting"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func events(srv *apitest.Server) []eventsv1.Event {
	var out []eventsv1.Event
	for _, m := range srv.List("events.k8s.io", "events", "") {
		var ev eventsv1.Event
		b, _ := json.Marshal(m)
		_ = json.Unmarshal(b, &ev)
		out = append(out, ev)
	}
	return out
}

// Through the real client: the Event as the API server stores it.
func TestRecorderPostsEvents(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	srv, c := newClient(t)
	rec, stop := c.NewEventRecorder(ctx, "sriov.dra.dev", "sriov.dra.dev/n1")
	defer stop()
	// As read from the API server: no TypeMeta.
	cl := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "c1", UID: "u1", ResourceVersion: "7"}}
	node := &corev1.ObjectReference{Kind: "Node", Name: "n1", UID: "n1"}
	rec.Eventf(cl, nil, corev1.EventTypeWarning, "PrepareFailed", "Prepare", "device %s: %s", "vf-1", "busy")
	rec.Eventf(node, cl, corev1.EventTypeNormal, "VFsProvisioned", "Provision", "8 VFs on ens1")
	waitFor(t, "two events", func() bool { return len(events(srv)) == 2 })
	byReason := map[string]eventsv1.Event{}
	for _, ev := range events(srv) {
		byReason[ev.Reason] = ev
	}
	tests := []struct {
		reason, ns string
		regarding  corev1.ObjectReference
		related    *corev1.ObjectReference
		typ, note  string
	}{
		{"PrepareFailed", "apps", corev1.ObjectReference{APIVersion: "resource.k8s.io/v1", Kind: "ResourceClaim", Namespace: "apps", Name: "c1", UID: "u1", ResourceVersion: "7"},
			nil, corev1.EventTypeWarning, "device vf-1: busy"},
		{"VFsProvisioned", "default", *node,
			&corev1.ObjectReference{APIVersion: "resource.k8s.io/v1", Kind: "ResourceClaim", Namespace: "apps", Name: "c1", UID: "u1", ResourceVersion: "7"},
			corev1.EventTypeNormal, "8 VFs on ens1"},
	}
	for _, tc := range tests {
		ev, ok := byReason[tc.reason]
		if !ok {
			t.Errorf("no %s event", tc.reason)
			continue
		}
		if ev.Namespace != tc.ns || ev.Regarding != tc.regarding || ev.Type != tc.typ || ev.Note != tc.note ||
			ev.ReportingController != "sriov.dra.dev" || ev.ReportingInstance != "sriov.dra.dev/n1" || ev.EventTime.IsZero() ||
			!strings.HasPrefix(ev.Name, tc.regarding.Name+".") {
			t.Errorf("%s event %+v", tc.reason, ev)
		}
		if (ev.Related == nil) != (tc.related == nil) || ev.Related != nil && *ev.Related != *tc.related {
			t.Errorf("%s related %+v, want %+v", tc.reason, ev.Related, tc.related)
		}
	}
}

// A claim failing Prepare in a loop makes one Event whose series counts
// the repeats; after the window a new one starts.
func TestRecorderFoldsRepeats(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	srv, c := newClient(t)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	rec, stop := kubeapi.NewRecorder(ctx, c, kubeapi.RecorderOptions{Controller: "d", Instance: "d/n", Scheme: c.Scheme(), Now: clock, QPS: 1000, Burst: 1000})
	defer stop()
	cl := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "c1", UID: "u1"}}
	for i := 0; i < 20; i++ {
		rec.Eventf(cl, nil, corev1.EventTypeWarning, "PrepareFailed", "Prepare", "no VF free")
		advance(10 * time.Second)
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "the series at 20", func() bool {
		evs := events(srv)
		return len(evs) == 1 && evs[0].Series != nil && evs[0].Series.Count == 20
	})
	if n := srv.Count("create", "events"); n != 1 {
		t.Errorf("%d creates for one repeated event, want 1", n)
	}
	if n := srv.Count("patch", "events"); n > 19 {
		t.Errorf("%d series patches, want at most 19", n)
	}
	// Another note is another event.
	rec.Eventf(cl, nil, corev1.EventTypeWarning, "PrepareFailed", "Prepare", "VLAN 5000 out of range")
	waitFor(t, "a second event", func() bool { return len(events(srv)) == 2 })
	// Past the window: a new Event.
	advance(7 * time.Minute)
	rec.Eventf(cl, nil, corev1.EventTypeWarning, "PrepareFailed", "Prepare", "no VF free")
	waitFor(t, "a third event", func() bool { return len(events(srv)) == 3 })
	// The series' Event expired on the server: the next repeat makes a new one.
	for _, ev := range events(srv) {
		if ev.Note == "no VF free" && ev.Series == nil {
			srv.Delete("events.k8s.io", "events", ev.Namespace, ev.Name)
		}
	}
	rec.Eventf(cl, nil, corev1.EventTypeWarning, "PrepareFailed", "Prepare", "no VF free")
	waitFor(t, "the series in a new event", func() bool { return len(events(srv)) == 3 && srv.Count("create", "events") == 4 })
	if d := rec.Dropped(); d != 0 {
		t.Errorf("dropped %d", d)
	}
}

// blockingSink holds every post until released.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	created []*eventsv1.Event
	fail    error
}

func (s *blockingSink) CreateEvent(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	s.created = append(s.created, ev)
	return ev, nil
}

func (s *blockingSink) PatchEvent(ctx context.Context, _, _ string, _ types.PatchType, _ []byte) (*eventsv1.Event, error) {
	return s.CreateEvent(ctx, &eventsv1.Event{})
}

func (s *blockingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.created)
}

func claimN(i int) *resourceapi.ResourceClaim {
	return &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c" + itoa(int64(i)), UID: types.UID("u" + itoa(int64(i)))}}
}

func TestRecorderBoundsAndStop(t *testing.T) {
	tests := []struct {
		name        string
		queue, sent int
		slack       int
		release     bool
		fail        error
		wantDropped uint64
		wantPosted  int
	}{
		{name: "full queue drops, stop flushes the rest", queue: 4, sent: 10, slack: 1, release: true, wantDropped: 6, wantPosted: 4},
		{name: "a server that never answers: stop ends in time", queue: 8, sent: 3, release: false, wantDropped: 3},
		{name: "refused posts are tried, then dropped", queue: 8, sent: 2, release: true, fail: apierrors.NewBadRequest("note too long"), wantDropped: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ctx := ktesting.NewTestContext(t)
			sink := &blockingSink{release: make(chan struct{}), fail: tc.fail}
			rec, stop := kubeapi.NewRecorder(ctx, sink, kubeapi.RecorderOptions{
				Controller: "d", Instance: "d/n", Scheme: kubeapi.NewScheme(), QueueSize: tc.queue, NamespaceQueue: tc.queue,
				QPS: 1000, Burst: 1000, FlushTimeout: 300 * time.Millisecond,
			})
			start := time.Now()
			for i := 0; i < tc.sent; i++ {
				rec.Eventf(claimN(i), nil, corev1.EventTypeWarning, "R", "A", "n")
			}
			if took := time.Since(start); took > 200*time.Millisecond {
				t.Errorf("Eventf blocked for %v", took)
			}
			if tc.release {
				close(sink.release)
			}
			start = time.Now()
			stop()
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("stop took %v", took)
			}
			// The worker may or may not have taken the first event off
			// the queue before the others came: one more may be posted.
			dropped, posted := rec.Dropped(), sink.count()
			if dropped+uint64(posted) != uint64(tc.sent) || dropped < tc.wantDropped-uint64(tc.slack) || dropped > tc.wantDropped {
				t.Errorf("dropped %d, posted %d, want %d (or %d fewer) and %d", dropped, posted, tc.wantDropped, tc.slack, tc.wantPosted)
			}
			rec.Eventf(claimN(99), nil, corev1.EventTypeWarning, "R", "A", "after stop")
			if got := rec.Dropped(); got != dropped+1 {
				t.Errorf("an event after stop was not dropped (%d)", got)
			}
		})
	}
}

// One namespace's many failing claims fill at most its share of the
// queue: the Events of another namespace still get in and are posted.
func TestRecorderNamespaceShare(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	sink := &blockingSink{release: make(chan struct{})}
	rec, stop := kubeapi.NewRecorder(ctx, sink, kubeapi.RecorderOptions{
		Controller: "d", Instance: "d/n", Scheme: kubeapi.NewScheme(), QueueSize: 16, NamespaceQueue: 4,
		QPS: 1000, Burst: 1000, FlushTimeout: 2 * time.Second,
	})
	inNS := func(ns string, i int) *resourceapi.ResourceClaim {
		c := claimN(i)
		c.Namespace = ns
		return c
	}
	// The worker may take the first event off the queue before the
	// others come (the sink holds it): one more of the noisy namespace's
	// may get through.
	for i := 0; i < 50; i++ {
		rec.Eventf(inNS("noisy", i), nil, corev1.EventTypeWarning, "PrepareFailed", "Prepare", "bad config")
	}
	for i := 0; i < 3; i++ {
		rec.Eventf(inNS("quiet", i), nil, corev1.EventTypeWarning, "PrepareFailed", "Prepare", "bad config")
	}
	close(sink.release)
	stop()
	perNS := map[string]int{}
	sink.mu.Lock()
	for _, ev := range sink.created {
		perNS[ev.Regarding.Namespace]++
	}
	sink.mu.Unlock()
	if perNS["quiet"] != 3 {
		t.Errorf("the quiet namespace got %d of its 3 Events posted (posted per namespace: %v)", perNS["quiet"], perNS)
	}
	if n := perNS["noisy"]; n < 4 || n > 5 {
		t.Errorf("the noisy namespace got %d Events posted, want its share of 4 (or 5)", n)
	}
	if got, want := rec.Dropped(), uint64(53-len(sink.created)); got != want {
		t.Errorf("dropped %d, want %d (53 recorded, %d posted)", got, want, len(sink.created))
	}
}

// Objects without a usable reference are dropped, not posted half-made;
// long notes are cut at the API's limit.
func TestRecorderInput(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	sink := &blockingSink{release: make(chan struct{})}
	close(sink.release)
	rec, stop := kubeapi.NewRecorder(ctx, sink, kubeapi.RecorderOptions{Controller: "d", Instance: "d/n", Scheme: kubeapi.NewScheme()})
	rec.Eventf(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, nil, corev1.EventTypeWarning, "R", "A", "pod kinds are not in the scheme")
	rec.Eventf(nil, nil, corev1.EventTypeWarning, "R", "A", "about nothing")
	rec.Eventf(claimN(1), nil, corev1.EventTypeWarning, "R", "A", "%s", strings.Repeat("é", 600))
	stop()
	if rec.Dropped() != 2 {
		t.Errorf("dropped %d, want 2", rec.Dropped())
	}
	if sink.count() != 1 {
		t.Fatalf("posted %d, want 1", sink.count())
	}
	note := sink.created[0].Note
	if len(note) > 1024 || len(note) < 1022 || !strings.HasSuffix(note, "é") {
		t.Errorf("note of %d bytes, want cut at 1 kB on a rune boundary", len(note))
	}
}

// TestRecorderLongObjectName: an Event's name is the object's name, a dot
// and a time, so a claim with a long name (a namespace user may give it
// 253 bytes) would get a name the API server refuses, and no Event; the
// object's part is cut so that the name stays valid.
func TestRecorderLongObjectName(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	for _, tc := range []struct {
		name, obj string
		whole     bool // the Event's name starts with all of obj
	}{
		{"short", "c1", true},
		{"fits", strings.Repeat("a", 236), true},
		{"longest", strings.Repeat("a", 253), false},
		{"cut at a dash", strings.Repeat("a", 230) + "------" + strings.Repeat("b", 17), false},
		{"cut at a dot", strings.Repeat("a", 234) + ".b." + strings.Repeat("c", 16), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &blockingSink{release: make(chan struct{})}
			close(sink.release)
			rec, stop := kubeapi.NewRecorder(ctx, sink, kubeapi.RecorderOptions{Controller: "d", Instance: "d/n", Scheme: kubeapi.NewScheme()})
			cl := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: tc.obj, UID: "u"}}
			rec.Eventf(cl, nil, corev1.EventTypeWarning, "PrepareFailed", "Prepare", "bad")
			stop()
			if sink.count() != 1 {
				t.Fatalf("posted %d events, want 1", sink.count())
			}
			ev := sink.created[0]
			if errs := validation.IsDNS1123Subdomain(ev.Name); len(errs) > 0 {
				t.Errorf("Event name %q (%d bytes) is not valid: %v", ev.Name, len(ev.Name), errs)
			}
			obj, _, _ := strings.Cut(ev.Name, ".")
			if tc.whole && !strings.HasPrefix(ev.Name, tc.obj+".") || !tc.whole && (!strings.HasPrefix(tc.obj, obj) || len(obj) < 200) {
				t.Errorf("Event name %q does not start with the claim's name %q", ev.Name, tc.obj)
			}
			if ev.Regarding.Name != tc.obj {
				t.Errorf("regarding %q, want %q", ev.Regarding.Name, tc.obj)
			}
		})
	}
}

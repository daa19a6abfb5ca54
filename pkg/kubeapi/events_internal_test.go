package kubeapi

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2/ktesting"
)

type countingSink struct {
	mu      sync.Mutex
	created int
}

func (s *countingSink) CreateEvent(_ context.Context, ev *eventsv1.Event) (*eventsv1.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.created++
	return ev, nil
}

func (s *countingSink) PatchEvent(context.Context, string, string, types.PatchType, []byte) (*eventsv1.Event, error) {
	return &eventsv1.Event{}, nil
}

// Many distinct events: every one is posted, and the series remembered
// for folding repeats stay bounded.
func TestRecorderSeriesBounded(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	sink := &countingSink{}
	r, stop := NewRecorder(ctx, sink, RecorderOptions{Controller: "d", Instance: "d/n", QueueSize: 2 * maxSeries, QPS: 1e6, Burst: 1e6})
	defer stop()
	const n = maxSeries + 100
	event := func(i int) {
		r.Eventf(&corev1.ObjectReference{Kind: "Node", Name: fmt.Sprintf("n%d", i)}, nil, corev1.EventTypeNormal, "R", "A", "x")
	}
	waitPosted := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			sink.mu.Lock()
			got := sink.created
			sink.mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d events posted (dropped %d)", got, n, r.Dropped())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := 0; i < n; i++ {
		event(i)
	}
	waitPosted(n)
	// Queued series are never forgotten; the next new one makes room
	// among the posted ones.
	event(n)
	waitPosted(n + 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.series) > maxSeries {
		t.Errorf("%d series remembered, want at most %d", len(r.series), maxSeries)
	}
	if r.Dropped() != 0 {
		t.Errorf("dropped %d", r.Dropped())
	}
}

package kubeapi

// This file is the Event recorder: events.k8s.io/v1 Events about the
// driver's objects (a claim Prepare refused, a node's VF provisioning),
// posted in the background so that the caller never waits for the API
// server, with repeats folded into one Event's series.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
)

// EventSink is where a Recorder posts: *Client.
type EventSink interface {
	CreateEvent(ctx context.Context, ev *eventsv1.Event) (*eventsv1.Event, error)
	PatchEvent(ctx context.Context, namespace, name string, pt types.PatchType, data []byte) (*eventsv1.Event, error)
}

// RecorderOptions configure a Recorder. Controller and Instance are
// required; the rest have defaults.
type RecorderOptions struct {
	// Controller and Instance are the Events' reportingController (the
	// driver name) and reportingInstance (driver/node).
	Controller, Instance string
	// Scheme gives the kind and API version of typed objects whose
	// TypeMeta is empty (as objects read from the API server often are).
	Scheme *runtime.Scheme
	// QueueSize bounds the events waiting to be posted; beyond it new
	// events are dropped (and counted). 0 means 512.
	QueueSize int
	// NamespaceQueue bounds the events about objects of one namespace
	// waiting to be posted, so that one tenant's many failing claims
	// cannot fill the queue and crowd out the Events of the others.
	// 0 means QueueSize/8.
	NamespaceQueue int
	// QPS and Burst pace the requests to the API server; 0 means 5 and 25.
	QPS   float64
	Burst int
	// SeriesWindow: the same event (same object, type, reason, action and
	// note) again within this time after its last occurrence updates the
	// first one's series (count, last seen) instead of making a new Event
	// object. 0 means 6 minutes.
	SeriesWindow time.Duration
	// FlushTimeout bounds how long stopping waits for the queue to be
	// posted. 0 means 2 s.
	FlushTimeout time.Duration
	// Attempts is how often a failed post is tried before the event is
	// dropped. 0 means 3.
	Attempts int
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// maxNoteBytes is the API's limit of an Event's note.
const maxNoteBytes = 1024

// maxSeries bounds the series remembered for folding repeats.
const maxSeries = 4096

// Recorder posts Events in the background. Eventf never blocks on the API
// server: it queues, and a full queue drops the event.
type Recorder struct {
	sink    EventSink
	opts    RecorderOptions
	logger  klog.Logger
	limiter *rate.Limiter

	mu     sync.Mutex
	series map[seriesKey]*series
	queue  []seriesKey

	wake     chan struct{}
	stopping chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	dropped  atomic.Uint64
}

// seriesKey is what makes two events the same one.
type seriesKey struct {
	regarding, related              objectKey
	eventType, reason, action, note string
}

type objectKey struct {
	apiVersion, kind, namespace, name string
	uid                               types.UID
}

// series is one Event and its repeats.
type series struct {
	// event is the Event as first created (its name once created).
	event eventsv1.Event
	// created: the API server has the Event; sent is the count it has.
	created     bool
	count, sent int32
	last        time.Time
	queued      bool
	attempts    int
}

// NewRecorder starts a Recorder posting to sink and returns it with its
// stop function, which posts what is queued for at most FlushTimeout and
// then stops the recorder (events after it are dropped). ctx carries the
// logger; when it is done the recorder flushes and stops too.
func NewRecorder(ctx context.Context, sink EventSink, opts RecorderOptions) (*Recorder, func()) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 512
	}
	if opts.NamespaceQueue <= 0 {
		opts.NamespaceQueue = max(1, opts.QueueSize/8)
	}
	if opts.QPS <= 0 {
		opts.QPS = 5
	}
	if opts.Burst <= 0 {
		opts.Burst = 25
	}
	if opts.SeriesWindow <= 0 {
		opts.SeriesWindow = 6 * time.Minute
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = 2 * time.Second
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 3
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Recorder{
		sink: sink, opts: opts, logger: klog.FromContext(ctx).WithName("events"),
		limiter: rate.NewLimiter(rate.Limit(opts.QPS), opts.Burst),
		series:  map[seriesKey]*series{},
		wake:    make(chan struct{}, 1), stopping: make(chan struct{}), done: make(chan struct{}),
	}
	go r.run(ctx)
	return r, r.stop
}

// NewEventRecorder is a Recorder posting through c, reporting as
// controller (the driver name) and instance (driver/node).
func (c *Client) NewEventRecorder(ctx context.Context, controller, instance string) (*Recorder, func()) {
	return NewRecorder(ctx, c, RecorderOptions{Controller: controller, Instance: instance, Scheme: c.scheme})
}

// Dropped is the number of events not posted: the queue was full, the
// object had no usable reference, the API server refused them or the
// recorder was stopping.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Eventf records an event about regarding (and related, which may be
// nil): eventtype is corev1.EventTypeNormal or EventTypeWarning, reason a
// short CamelCase cause, action what the driver did, note the
// human-readable text (formatted with args, cut at 1 kB).
func (r *Recorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...interface{}) {
	select {
	case <-r.stopping:
		r.dropped.Add(1)
		return
	default:
	}
	reg, err := r.reference(regarding)
	if err != nil || reg == nil {
		r.dropped.Add(1)
		r.logger.Error(err, "Event dropped: no reference to the object it is about", "reason", reason)
		return
	}
	rel, err := r.reference(related)
	if err != nil {
		r.logger.V(2).Info("Event's related object left out", "reason", reason, "err", err)
		rel = nil
	}
	if len(args) > 0 {
		note = fmt.Sprintf(note, args...)
	}
	note = truncate(note, maxNoteBytes)
	key := seriesKey{regarding: keyOf(reg), eventType: eventtype, reason: reason, action: action, note: note}
	if rel != nil {
		key.related = keyOf(rel)
	}
	now := r.opts.Now()

	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.series[key]
	switch {
	case s != nil && now.Sub(s.last) <= r.opts.SeriesWindow:
		s.count++
		s.last = now
	default:
		if s != nil && s.queued {
			// The old series is still waiting to be posted: it becomes
			// this one (its first post carries the count).
			s.count++
			s.last = now
			break
		}
		// Room first, so that the new series is not what goes.
		r.prune(now)
		s = &series{event: r.newEvent(reg, rel, eventtype, reason, action, note, now), count: 1, last: now}
		r.series[key] = s
	}
	if s.queued {
		return
	}
	if len(r.queue) >= r.opts.QueueSize || r.queuedIn(key.regarding.namespace) >= r.opts.NamespaceQueue {
		r.dropped.Add(1)
		if !s.created && s.sent == 0 {
			delete(r.series, key)
		}
		return
	}
	s.queued = true
	r.queue = append(r.queue, key)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// newEvent is the Event of a new series.
func (r *Recorder) newEvent(reg, rel *corev1.ObjectReference, eventtype, reason, action, note string, now time.Time) eventsv1.Event {
	ns := reg.Namespace
	if ns == "" {
		// Events about cluster-scoped objects (a Node) live in default.
		ns = metav1.NamespaceDefault
	}
	return eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: eventName(reg.Name, now), Namespace: ns},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: r.opts.Controller,
		ReportingInstance:   r.opts.Instance,
		Action:              action,
		Reason:              reason,
		Regarding:           *reg,
		Related:             rel,
		Note:                note,
		Type:                eventtype,
	}
}

// eventName names a new Event about the object named obj as client-go
// does (obj, a dot, the time in hex), with obj cut so that the whole stays
// a valid name (a DNS subdomain of at most 253 bytes): the API server
// refuses a longer one, and a namespace user's claim may have a name of
// 253 bytes.
func eventName(obj string, now time.Time) string {
	suffix := fmt.Sprintf(".%x", now.UnixNano())
	if n := validation.DNS1123SubdomainMaxLength - len(suffix); len(obj) > n {
		obj = strings.TrimRight(obj[:n], "-.")
	}
	return obj + suffix
}

// prune forgets series that are over and posted once there are too
// many; r.mu is held.
func (r *Recorder) prune(now time.Time) {
	if len(r.series) < maxSeries {
		return
	}
	for k, s := range r.series {
		if !s.queued && now.Sub(s.last) > r.opts.SeriesWindow {
			delete(r.series, k)
		}
	}
	// Still too many live ones: forget posted ones (a repeat then starts
	// a new Event, which is what the window would do anyway).
	for k, s := range r.series {
		if len(r.series) < maxSeries {
			break
		}
		if !s.queued {
			delete(r.series, k)
		}
	}
}

// reference is the object reference of obj: an *corev1.ObjectReference
// as it is, else built from its metadata, with the kind from its TypeMeta
// or, when that is empty, from the scheme.
func (r *Recorder) reference(obj runtime.Object) (*corev1.ObjectReference, error) {
	if obj == nil {
		return nil, nil
	}
	if ref, ok := obj.(*corev1.ObjectReference); ok {
		if ref == nil {
			return nil, nil
		}
		c := *ref
		return &c, nil
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("event about a %T: %w", obj, err)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind == "" && r.opts.Scheme != nil {
		kinds, _, err := r.opts.Scheme.ObjectKinds(obj)
		if err != nil {
			return nil, fmt.Errorf("event about %s/%s: %w", m.GetNamespace(), m.GetName(), err)
		}
		gvk = kinds[0]
	}
	if gvk.Kind == "" {
		return nil, fmt.Errorf("event about %s/%s: the %T has no kind", m.GetNamespace(), m.GetName(), obj)
	}
	return &corev1.ObjectReference{
		APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
		Namespace: m.GetNamespace(), Name: m.GetName(), UID: m.GetUID(), ResourceVersion: m.GetResourceVersion(),
	}, nil
}

func keyOf(ref *corev1.ObjectReference) objectKey {
	return objectKey{apiVersion: ref.APIVersion, kind: ref.Kind, namespace: ref.Namespace, name: ref.Name, uid: ref.UID}
}

// run posts queued events until stopped or ctx is done, then flushes.
func (r *Recorder) run(ctx context.Context) {
	defer close(r.done)
	for {
		select {
		case <-r.stopping:
			r.flush()
			return
		case <-ctx.Done():
			r.stopOnce.Do(func() { close(r.stopping) })
			r.flush()
			return
		case <-r.wake:
			r.drain(ctx, r.stopping)
		}
	}
}

// drain posts the queue until it is empty or until stop is closed.
func (r *Recorder) drain(ctx context.Context, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		key, ok := r.pop()
		if !ok {
			return
		}
		if err := r.limiter.Wait(ctx); err != nil {
			r.requeue(key)
			return
		}
		r.post(ctx, key)
	}
}

// flush posts what is queued for at most FlushTimeout and drops the rest.
func (r *Recorder) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.FlushTimeout)
	defer cancel()
	r.drain(ctx, nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.queue); n > 0 {
		r.dropped.Add(uint64(n))
		r.logger.Info("Events not posted before the recorder stopped", "dropped", n)
		r.queue = nil
	}
}

func (r *Recorder) stop() {
	r.stopOnce.Do(func() { close(r.stopping) })
	<-r.done
}

// queuedIn counts the queued events about objects of namespace ns; r.mu
// is held. The queue is short (QueueSize) and events are rare.
func (r *Recorder) queuedIn(ns string) int {
	n := 0
	for _, k := range r.queue {
		if k.regarding.namespace == ns {
			n++
		}
	}
	return n
}

func (r *Recorder) pop() (seriesKey, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return seriesKey{}, false
	}
	key := r.queue[0]
	r.queue = r.queue[1:]
	return key, true
}

// requeue puts key back at the front (a post that did not happen).
func (r *Recorder) requeue(key seriesKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queue = append([]seriesKey{key}, r.queue...)
}

// post creates the series' Event, or updates its series when the API
// server has it already.
func (r *Recorder) post(ctx context.Context, key seriesKey) {
	r.mu.Lock()
	s := r.series[key]
	if s == nil {
		r.mu.Unlock()
		return
	}
	s.queued = false
	ev, created, count, last := s.event, s.created, s.count, s.last
	r.mu.Unlock()

	var err error
	switch {
	case !created:
		if count > 1 {
			ev.Series = &eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(last)}
		}
		_, err = r.sink.CreateEvent(ctx, &ev)
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	case count > s.sent:
		err = r.patchSeries(ctx, ev.Namespace, ev.Name, count, last)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil:
		s.created, s.attempts = true, 0
		s.sent = max(s.sent, count)
		if s.count > s.sent && !s.queued {
			// Repeats came in while it was posted.
			s.queued = true
			r.queue = append(r.queue, key)
		}
	case created && apierrors.IsNotFound(err):
		// The Event expired (the API server keeps them about an hour):
		// the series goes on in a new one.
		s.created, s.sent = false, 0
		s.event.Name = eventName(s.event.Regarding.Name, r.opts.Now())
		s.event.EventTime = metav1.NewMicroTime(last)
		r.retry(key, s, err)
	default:
		r.retry(key, s, err)
	}
}

// retry queues the series again unless it failed Attempts times; r.mu is
// held.
func (r *Recorder) retry(key seriesKey, s *series, err error) {
	s.attempts++
	if s.attempts >= r.opts.Attempts || s.queued {
		if !s.queued {
			r.dropped.Add(1)
			r.logger.Error(err, "Event dropped", "reason", s.event.Reason, "object", klog.KRef(s.event.Regarding.Namespace, s.event.Regarding.Name))
			if !s.created {
				delete(r.series, key)
			}
			s.attempts = 0
		}
		return
	}
	s.queued = true
	r.queue = append(r.queue, key)
}

func (r *Recorder) patchSeries(ctx context.Context, namespace, name string, count int32, last time.Time) error {
	patch, err := json.Marshal(map[string]any{"series": eventsv1.EventSeries{Count: count, LastObservedTime: metav1.NewMicroTime(last)}})
	if err != nil {
		return err
	}
	_, err = r.sink.PatchEvent(ctx, namespace, name, types.MergePatchType, patch)
	return err
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}

// Package slicepub publishes one node's pool of devices as ResourceSlices
// and keeps the API server's copy equal to it.
//
// It keeps no copy of the pool once the pool is written: per slice only
// its name, UID, resourceVersion, pool fields and a digest of its spec.
// A watch over the node's slices of the driver is reduced to that record,
// so a slice someone else deleted or changed is noticed; the publisher then
// asks its owner (Options.Resync) for the pool again instead of keeping it.
//
// Slice names follow the scheme kubelet plugins use ("<index, 5+ hex
// digits>-<driver>-<node>-" plus the API server's random suffix), so the
// slices of a daemon that used the upstream controller are adopted as
// they are, and the allocator's first-fit order follows the index.
package slicepub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"
)

// MaxDevicesPerSlice is the API's limit of devices in one ResourceSlice.
const MaxDevicesPerSlice = resourceapi.ResourceSliceMaxDevices

// Pool is what the node offers: one pool, its slices in the order the
// allocator should try them.
type Pool struct {
	// Name is the pool's name (spec.pool.name); a node-local driver names
	// it after the node.
	Name   string
	Slices []Slice
}

// Slice is the content of one ResourceSlice.
type Slice struct {
	Devices []resourceapi.Device
}

// Client is the part of the API client the publisher uses (the methods
// of kubeapi.Client of the same names). Errors are *apierrors.StatusError.
type Client interface {
	ListSlices(ctx context.Context, opts metav1.ListOptions) (*resourceapi.ResourceSliceList, error)
	WatchSlices(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	CreateSlice(ctx context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error)
	UpdateSlice(ctx context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error)
	// DeleteSlice deletes the slice if it still has that UID.
	DeleteSlice(ctx context.Context, name string, uid types.UID) error
	GetNodeUID(ctx context.Context, name string) (types.UID, error)
}

// Options configure a Publisher.
type Options struct {
	Client     Client
	DriverName string
	// NodeName is the node the slices are for (spec.nodeName) and their
	// owner, so they go when the Node object goes.
	NodeName string
	// Resync is called (from the publisher's goroutine; it must not
	// block) when someone else deleted, changed or added a slice of this
	// node and driver while no pool was waiting to be written: the
	// caller should call Publish again with its current pool. nil leaves
	// the server as it is until the next Publish.
	Resync func()
	// ResyncInterval is the least time between two Resync calls; 0 means
	// 2 s. The first change is restored at once, more within that: two
	// writers with different pools (the old and the new daemon of a
	// rolling update) undo each other's writes at that pace, not in a
	// tight loop.
	ResyncInterval time.Duration
	// ErrorHandler gets every failed attempt (it is retried) and every
	// *DroppedFieldsError; nil logs them.
	ErrorHandler func(ctx context.Context, err error, msg string)
	// Backoff paces the retries after a failed attempt; a zero Duration
	// means 250 ms doubling up to a minute.
	Backoff wait.Backoff
}

// Stats counts the publisher's writes.
type Stats struct {
	Creates, Updates, Deletes int64
}

// Publisher converges the API server's slices of one node and driver to
// the last pool given to Publish. Run does the work; Publish only hands
// the pool over.
type Publisher struct {
	opts Options

	// mu guards the hand-over from Publish to Run.
	mu sync.Mutex
	// next is the pool to write, nil when the last one is written.
	next *Pool
	// seq numbers the pools handed over; done is the number of the last
	// one written, lastErr the error of the last failed attempt.
	seq, done uint64
	lastErr   error
	// progress is closed and replaced whenever done or lastErr change.
	progress chan struct{}
	wake     chan struct{}

	creates, updates, deletes atomic.Int64

	// The rest belongs to Run's goroutine.
	nodeUID types.UID
	// slices is what the server holds of this node and driver, by name.
	slices map[string]*record
	// listed is set while slices reflect a list plus the watch since.
	listed bool
	// everListed is set after the first list.
	everListed bool
	// floorRV is the resourceVersion of the last list: events up to it
	// are in the list already.
	floorRV string
	// lastRV is the newest resourceVersion the watch reported; a new
	// watch starts there.
	lastRV string
	// deleted are slices this publisher deleted whose DELETED event has
	// not come yet: their older events are not someone else's change.
	deleted map[string]bool
	// gens is the highest generation seen of each pool, so a pool whose
	// slices were all deleted comes back at a higher one, never at a
	// generation that stale caches may still hold.
	gens map[string]int64
	// lastResync is when Resync was last called; resyncDue is set while
	// a call waits for ResyncInterval to pass.
	lastResync time.Time
	resyncDue  bool
}

// New checks opts and returns a Publisher; nothing runs until Run.
func New(opts Options) (*Publisher, error) {
	switch {
	case opts.Client == nil:
		return nil, errors.New("slicepub: Options.Client is required")
	case opts.DriverName == "":
		return nil, errors.New("slicepub: Options.DriverName is required")
	case opts.NodeName == "":
		return nil, errors.New("slicepub: Options.NodeName is required")
	}
	if opts.Backoff.Duration <= 0 {
		opts.Backoff = wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 1 << 30, Cap: time.Minute}
	}
	if opts.ResyncInterval <= 0 {
		opts.ResyncInterval = 2 * time.Second
	}
	if opts.ErrorHandler == nil {
		opts.ErrorHandler = func(ctx context.Context, err error, msg string) {
			utilruntime.HandleErrorWithContext(ctx, err, msg)
		}
	}
	return &Publisher{
		opts:     opts,
		progress: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		slices:   map[string]*record{},
		deleted:  map[string]bool{},
		gens:     map[string]int64{},
	}, nil
}

// Publish hands pool over to be written and returns without waiting for
// the API server; a later Publish replaces a pool not yet written. The
// publisher owns pool from now on (the caller must not change it) and
// drops it once it is written. An invalid pool is refused with an error
// naming the slice and field, and nothing is handed over.
func (p *Publisher) Publish(ctx context.Context, pool Pool) error {
	if err := validate(pool); err != nil {
		return err
	}
	p.mu.Lock()
	p.next = &pool
	p.seq++
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	klog.FromContext(ctx).V(5).Info("Pool handed to the ResourceSlice publisher", "pool", pool.Name, "slices", len(pool.Slices))
	return nil
}

// Wait blocks until every pool handed to Publish before the call is
// written, or ctx ends (then it returns the error of the last failed
// attempt, if any, with ctx's).
func (p *Publisher) Wait(ctx context.Context) error {
	p.mu.Lock()
	target := p.seq
	p.mu.Unlock()
	for {
		p.mu.Lock()
		done, lastErr, progress := p.done, p.lastErr, p.progress
		p.mu.Unlock()
		if done >= target {
			return nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last attempt: %w)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		}
	}
}

// Stats returns how many slices the publisher created, updated and
// deleted.
func (p *Publisher) Stats() Stats {
	return Stats{Creates: p.creates.Load(), Updates: p.updates.Load(), Deletes: p.deletes.Load()}
}

// pending returns the pool to write and its number.
func (p *Publisher) pending() (*Pool, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next, p.seq
}

// written records that pool number seq is on the server: the pool is
// dropped unless a newer one replaced it meanwhile.
func (p *Publisher) written(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seq == seq {
		p.next = nil
	}
	p.done, p.lastErr = seq, nil
	close(p.progress)
	p.progress = make(chan struct{})
}

// failed records the error of an attempt.
func (p *Publisher) failed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastErr = err
	close(p.progress)
	p.progress = make(chan struct{})
}

// Run writes the pools handed to Publish and keeps the server's slices
// equal to the last one until ctx ends; it returns nil then. Failures
// are reported to Options.ErrorHandler and retried with backoff.
func (p *Publisher) Run(ctx context.Context) error {
	logger := klog.LoggerWithValues(klog.LoggerWithName(klog.FromContext(ctx), "slicepub"), "node", p.opts.NodeName, "driver", p.opts.DriverName)
	ctx = klog.NewContext(ctx, logger)
	var w watch.Interface
	defer func() {
		if w != nil {
			w.Stop()
		}
	}()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var retryC <-chan time.Time
	resync := time.NewTimer(time.Hour)
	resync.Stop()
	defer resync.Stop()
	var resyncC <-chan time.Time
	backoff := p.opts.Backoff
	work := true
	// onEvent applies one watch event (ok false: the watch ended).
	onEvent := func(ev watch.Event, ok bool) {
		if !ok {
			logger.V(4).Info("ResourceSlice watch ended; watching again", "resourceVersion", p.lastRV)
			w.Stop()
			w = nil
			work = true
			return
		}
		switch p.handleEvent(ctx, ev) {
		case eventRestart:
			w.Stop()
			w = nil
			work = true
		case eventForeign:
			p.resyncDue = true
		}
	}
	// askResync has the foreign changes undone: by the pending pool, or
	// by asking for the pool, at most once per ResyncInterval.
	askResync := func() {
		if !p.resyncDue || resyncC != nil {
			return
		}
		if next, _ := p.pending(); next != nil || p.opts.Resync == nil {
			p.resyncDue = false
			work = work || next != nil
			return
		}
		if wait := time.Until(p.lastResync.Add(p.opts.ResyncInterval)); wait > 0 {
			resync.Reset(wait)
			resyncC = resync.C
			return
		}
		p.resyncDue = false
		p.lastResync = time.Now()
		logger.V(2).Info("ResourceSlices changed by someone else; asking for the pool again")
		p.opts.Resync()
	}
	for {
		askResync()
		if work && retryC == nil {
			// Events already received first, so the pool is compared
			// with the newest records.
			for drained := false; !drained && w != nil; {
				select {
				case ev, ok := <-w.ResultChan():
					onEvent(ev, ok)
				default:
					drained = true
				}
			}
			work = false
			hadPool, _ := p.pending()
			if err := p.step(ctx, &w); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.failed(err)
				p.opts.ErrorHandler(ctx, err, "Publishing ResourceSlices failed; retrying")
				retry.Reset(backoff.Step())
				retryC = retry.C
				work = true
			} else {
				backoff = p.opts.Backoff
				if hadPool != nil && p.resyncDue {
					// The pool just written was compared with the records
					// of every change seen so far: those are undone, and
					// asking for the pool again would write nothing.
					p.resyncDue = false
					resync.Stop()
					resyncC = nil
				}
			}
		}
		if p.resyncDue && resyncC == nil {
			// The drained events or a list found changes.
			continue
		}
		var events <-chan watch.Event
		if w != nil {
			events = w.ResultChan()
		}
		select {
		case <-ctx.Done():
			logger.V(3).Info("ResourceSlice publisher stopped", "stats", p.Stats())
			return nil
		case <-p.wake:
			work = true
		case <-retryC:
			retryC = nil
		case <-resyncC:
			resyncC = nil
		case ev, ok := <-events:
			onEvent(ev, ok)
		}
	}
}

// step brings the publisher one step further: the node's UID, a list of
// the slices, a watch, then the pending pool written.
func (p *Publisher) step(ctx context.Context, w *watch.Interface) error {
	if p.nodeUID == "" {
		uid, err := p.opts.Client.GetNodeUID(ctx, p.opts.NodeName)
		if err != nil {
			return fmt.Errorf("read the UID of node %s (the ResourceSlices' owner): %w", p.opts.NodeName, err)
		}
		p.nodeUID = uid
	}
	if !p.listed {
		if *w != nil {
			(*w).Stop()
			*w = nil
		}
		if err := p.list(ctx); err != nil {
			return err
		}
	}
	if *w == nil {
		nw, err := p.watch(ctx)
		if err != nil {
			return err
		}
		*w = nw
	}
	pool, seq := p.pending()
	if pool == nil {
		return nil
	}
	if err := p.converge(ctx, pool); err != nil {
		// What the server holds after a failed write is unknown: list
		// again before the next attempt.
		p.listed = false
		return err
	}
	p.written(seq)
	return nil
}

package slicepub

// This file is what the publisher remembers of a slice on the server, and
// how it learns it: a list at start (and after a failed write), then a
// watch whose events are reduced to that record.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"strconv"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"
)

// record is one slice on the server, without its devices.
type record struct {
	name string
	uid  types.UID
	rv   string
	// pool, generation and count are spec.pool.
	pool       string
	generation int64
	count      int64
	// digest is specDigest of the slice as this publisher wrote it, or as
	// the server held it when someone else wrote it last.
	digest [sha256.Size]byte
	// ownerOK: the slice is controlled by the node with nodeUID.
	ownerOK bool
	// Metadata others may have set, kept on update.
	labels, annotations map[string]string
	finalizers          []string
	otherOwners         []metav1.OwnerReference
	// taintTimes are the server's timeAdded of the devices' taints, by
	// taintKey, so an update keeps them.
	taintTimes map[string]metav1.Time
}

// taintKey identifies a device's taint across publications.
func taintKey(device string, t resourceapi.DeviceTaint) string {
	return device + "\x00" + t.Key + "\x00" + t.Value + "\x00" + string(t.Effect)
}

// recordOf reduces a slice read from the server to its record. digest is
// the digest to remember, nil for the digest of the slice as it is.
func (p *Publisher) recordOf(s *resourceapi.ResourceSlice, digest *[sha256.Size]byte) (*record, error) {
	r := &record{
		name: s.Name, uid: s.UID, rv: s.ResourceVersion,
		pool: s.Spec.Pool.Name, generation: s.Spec.Pool.Generation, count: s.Spec.Pool.ResourceSliceCount,
		labels: s.Labels, annotations: s.Annotations, finalizers: s.Finalizers,
	}
	p.gens[r.pool] = max(p.gens[r.pool], r.generation)
	for _, o := range s.OwnerReferences {
		if o.APIVersion == "v1" && o.Kind == "Node" && o.Controller != nil && *o.Controller {
			r.ownerOK = o.Name == p.opts.NodeName && o.UID == p.nodeUID && p.nodeUID != ""
			continue
		}
		r.otherOwners = append(r.otherOwners, o)
	}
	for _, d := range s.Spec.Devices {
		for _, t := range d.Taints {
			if t.TimeAdded != nil {
				if r.taintTimes == nil {
					r.taintTimes = map[string]metav1.Time{}
				}
				r.taintTimes[taintKey(d.Name, t)] = *t.TimeAdded
			}
		}
	}
	if digest != nil {
		r.digest = *digest
		return r, nil
	}
	sum, err := specDigest(&s.Spec)
	if err != nil {
		return nil, fmt.Errorf("ResourceSlice %s: %w", s.Name, err)
	}
	r.digest = sum
	return r, nil
}

// selector selects the slices of this node and driver.
func (p *Publisher) selector() string {
	return fields.Set{
		resourceapi.ResourceSliceSelectorNodeName: p.opts.NodeName,
		resourceapi.ResourceSliceSelectorDriver:   p.opts.DriverName,
	}.String()
}

// list replaces the records with the server's slices of this node and
// driver. After the first list a difference from the records is someone
// else's change (resyncDue).
func (p *Publisher) list(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	l, err := p.opts.Client.ListSlices(ctx, metav1.ListOptions{FieldSelector: p.selector()})
	if err != nil {
		return fmt.Errorf("list the ResourceSlices of node %s and driver %s: %w", p.opts.NodeName, p.opts.DriverName, err)
	}
	fresh := make(map[string]*record, len(l.Items))
	for i := range l.Items {
		s := &l.Items[i]
		// A server without the field selector would list every node's.
		if s.Spec.NodeName == nil || *s.Spec.NodeName != p.opts.NodeName || s.Spec.Driver != p.opts.DriverName {
			continue
		}
		old := p.slices[s.Name]
		if old != nil && old.uid == s.UID && old.rv == s.ResourceVersion {
			// Unchanged since this publisher wrote or saw it: keep the
			// digest of what it wrote (the server's copy may lack
			// dropped fields).
			fresh[s.Name] = old
			continue
		}
		r, err := p.recordOf(s, nil)
		if err != nil {
			return err
		}
		fresh[s.Name] = r
	}
	changed := len(fresh) != len(p.slices)
	for name, r := range fresh {
		if p.slices[name] != r {
			changed = true
		}
	}
	first := !p.everListed
	p.slices, p.listed, p.everListed = fresh, true, true
	p.floorRV, p.lastRV = l.ResourceVersion, l.ResourceVersion
	clear(p.deleted)
	logger.V(3).Info("Listed the node's ResourceSlices", "slices", sortedNames(fresh), "resourceVersion", l.ResourceVersion)
	if changed && !first {
		logger.V(2).Info("ResourceSlices changed by someone else while not watched")
		p.resyncDue = true
	}
	return nil
}

// watch watches the slices of this node and driver from the last
// resourceVersion seen.
func (p *Publisher) watch(ctx context.Context) (watch.Interface, error) {
	w, err := p.opts.Client.WatchSlices(ctx, metav1.ListOptions{
		FieldSelector:       p.selector(),
		ResourceVersion:     p.lastRV,
		AllowWatchBookmarks: true,
	})
	if err != nil {
		if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
			p.listed = false
		}
		return nil, fmt.Errorf("watch the ResourceSlices of node %s and driver %s from resourceVersion %s: %w", p.opts.NodeName, p.opts.DriverName, p.lastRV, err)
	}
	return w, nil
}

// eventResult is what handleEvent found.
type eventResult int

const (
	// eventNothing: a write of this publisher, or old news.
	eventNothing eventResult = iota
	// eventForeign: someone else changed the node's slices.
	eventForeign
	// eventRestart: the watch must be started again (after a list when
	// it fell too far behind).
	eventRestart
)

// handleEvent updates the records from a watch event.
func (p *Publisher) handleEvent(ctx context.Context, ev watch.Event) eventResult {
	logger := klog.FromContext(ctx)
	switch ev.Type {
	case watch.Bookmark:
		if m, err := meta.Accessor(ev.Object); err == nil {
			p.lastRV = m.GetResourceVersion()
		}
		return eventNothing
	case watch.Error:
		err := apierrors.FromObject(ev.Object)
		if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
			p.listed = false
		}
		logger.V(3).Info("ResourceSlice watch failed; starting over", "err", err)
		return eventRestart
	}
	s, ok := ev.Object.(*resourceapi.ResourceSlice)
	if !ok {
		logger.V(3).Info("Unexpected object in the ResourceSlice watch; starting over", "type", fmt.Sprintf("%T", ev.Object))
		return eventRestart
	}
	if s.Spec.NodeName == nil || *s.Spec.NodeName != p.opts.NodeName || s.Spec.Driver != p.opts.DriverName {
		return eventNothing
	}
	p.lastRV = s.ResourceVersion
	if !newerRV(s.ResourceVersion, p.floorRV) {
		return eventNothing
	}
	old := p.slices[s.Name]
	if ev.Type == watch.Deleted {
		delete(p.deleted, s.Name)
		if old == nil || old.uid != s.UID {
			return eventNothing
		}
		delete(p.slices, s.Name)
		// The node may have been replaced, taking its slices along.
		p.nodeUID = ""
		logger.V(2).Info("ResourceSlice deleted by someone else", "slice", s.Name)
		return eventForeign
	}
	if old == nil && p.deleted[s.Name] {
		return eventNothing
	}
	if old != nil && old.uid == s.UID && !newerRV(s.ResourceVersion, old.rv) {
		return eventNothing
	}
	r, err := p.recordOf(s, nil)
	if err != nil {
		logger.Error(err, "Cannot digest a ResourceSlice from the watch; listing again")
		p.listed = false
		return eventRestart
	}
	p.slices[s.Name] = r
	logger.V(2).Info("ResourceSlice written by someone else", "slice", s.Name, "event", ev.Type, "resourceVersion", s.ResourceVersion)
	return eventForeign
}

// newerRV reports whether resourceVersion a is newer than b. They are
// opaque to clients but etcd's revisions in practice; what does not parse
// counts as newer, so a change is never missed (at worst one needless
// comparison with the pool).
func newerRV(a, b string) bool {
	if b == "" {
		return true
	}
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA != nil || errB != nil {
		return a != b
	}
	return x > y
}

func sortedNames(m map[string]*record) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// namePrefix is the generateName of the slice at index i of a pool of n
// slices: the index in hex, at least 5 digits and as many as the largest
// index needs, then driver and node.
func (p *Publisher) namePrefix(i, n int) string {
	return fmt.Sprintf("%0*x-%s-%s-", indexWidth(n), i, p.opts.DriverName, p.opts.NodeName)
}

func indexWidth(n int) int {
	return max(5, len(strconv.FormatInt(int64(max(n-1, 0)), 16)))
}

// indexOf returns the index a slice's name carries for a pool of n
// slices, -1 when the name is not one this scheme gives that pool.
func (p *Publisher) indexOf(name string, n int) int {
	width := indexWidth(n)
	if len(name) <= width || name[width] != '-' {
		return -1
	}
	i, err := strconv.ParseUint(name[:width], 16, 31)
	if err != nil || int(i) >= n {
		return -1
	}
	if !strings.HasPrefix(name, p.namePrefix(int(i), n)) {
		return -1
	}
	return int(i)
}

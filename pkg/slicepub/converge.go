package slicepub

// This file writes a pool: it compares the pool with the records and
// deletes, updates and creates slices until the server holds the pool.

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// converge writes pool. Nothing is written when the server holds it
// already. Otherwise every slice gets the next generation: the scheduler
// uses only the slices of a pool's highest generation, so a pool half
// written at a new generation is incomplete rather than a mix of old and
// new devices.
func (p *Publisher) converge(ctx context.Context, pool *Pool) error {
	logger := klog.FromContext(ctx)
	n := len(pool.Slices)
	want := make([][sha256.Size]byte, n)
	for i := range pool.Slices {
		sum, err := specDigest(p.spec(pool, i, resourceapi.ResourcePool{}))
		if err != nil {
			return fmt.Errorf("pool %s, slice %d: %w", pool.Name, i, err)
		}
		want[i] = sum
	}

	// Match the records to the pool's slices by the index in their name.
	gen := p.gens[pool.Name]
	for _, r := range p.slices {
		if r.pool == pool.Name {
			gen = max(gen, r.generation)
		}
	}
	at := make([]*record, n)
	var obsolete []*record
	for _, name := range sortedNames(p.slices) {
		r := p.slices[name]
		i := p.indexOf(name, n)
		if r.pool != pool.Name || i < 0 || at[i] != nil {
			obsolete = append(obsolete, r)
			continue
		}
		at[i] = r
	}
	var stale []string
	for i, r := range at {
		switch {
		case r == nil:
			stale = append(stale, fmt.Sprintf("slice %d missing", i))
		case r.digest != want[i]:
			stale = append(stale, fmt.Sprintf("%s: devices", r.name))
		case r.generation != gen || r.count != int64(n):
			stale = append(stale, fmt.Sprintf("%s: spec.pool", r.name))
		case !r.ownerOK:
			stale = append(stale, fmt.Sprintf("%s: owner", r.name))
		}
	}
	for _, r := range obsolete {
		stale = append(stale, fmt.Sprintf("%s: obsolete", r.name))
	}
	if len(stale) == 0 {
		logger.V(4).Info("ResourceSlices up to date", "pool", pool.Name, "generation", gen, "slices", n)
		return nil
	}
	gen++
	logger.V(3).Info("Writing ResourceSlices", "pool", pool.Name, "generation", gen, "slices", n, "why", stale)
	if p.nodeUID == "" {
		uid, err := p.opts.Client.GetNodeUID(ctx, p.opts.NodeName)
		if err != nil {
			return fmt.Errorf("read the UID of node %s (the ResourceSlices' owner): %w", p.opts.NodeName, err)
		}
		p.nodeUID = uid
	}

	// Devices the node no longer has go first, even when the new slices
	// turn out to be unwritable.
	for _, r := range obsolete {
		err := p.opts.Client.DeleteSlice(ctx, r.name, r.uid)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete obsolete ResourceSlice %s of pool %s: %w", r.name, r.pool, err)
		}
		if err == nil {
			p.deletes.Add(1)
		}
		delete(p.slices, r.name)
		p.deleted[r.name] = true
		logger.V(4).Info("Deleted obsolete ResourceSlice", "slice", r.name)
	}

	poolRef := resourceapi.ResourcePool{Name: pool.Name, Generation: gen, ResourceSliceCount: int64(n)}
	for i := range pool.Slices {
		s := &resourceapi.ResourceSlice{Spec: *p.spec(pool, i, poolRef)}
		s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: p.opts.NodeName, UID: p.nodeUID, Controller: ptr.To(true)}}
		var (
			got  *resourceapi.ResourceSlice
			err  error
			verb string
		)
		if r := at[i]; r != nil {
			verb = "update"
			s.Name, s.UID, s.ResourceVersion = r.name, r.uid, r.rv
			s.Labels, s.Annotations, s.Finalizers = r.labels, r.annotations, r.finalizers
			s.OwnerReferences = append(s.OwnerReferences, r.otherOwners...)
			s.Spec.Devices = keepTaintTimes(s.Spec.Devices, r.taintTimes)
			got, err = p.opts.Client.UpdateSlice(ctx, s)
			if err == nil {
				p.updates.Add(1)
			}
		} else {
			verb = "create"
			s.GenerateName = p.namePrefix(i, n)
			got, err = p.opts.Client.CreateSlice(ctx, s)
			if err == nil {
				p.creates.Add(1)
			}
		}
		if err != nil {
			name := s.Name
			if name == "" {
				name = s.GenerateName + "*"
			}
			return fmt.Errorf("%s ResourceSlice %s (pool %s, slice %d of %d, generation %d, %d devices): %w", verb, name, pool.Name, i, n, gen, len(s.Spec.Devices), err)
		}
		r, err := p.recordOf(got, &want[i])
		if err != nil {
			return err
		}
		p.slices[got.Name] = r
		logger.V(4).Info("Wrote ResourceSlice", "verb", verb, "slice", got.Name, "resourceVersion", got.ResourceVersion, "devices", len(s.Spec.Devices))
		if dropped := droppedFields(pool.Name, i, s, got, want[i]); dropped != nil {
			p.opts.ErrorHandler(ctx, dropped, "ResourceSlice stored without some fields")
		}
	}
	logger.V(2).Info("Published ResourceSlices", "pool", pool.Name, "generation", gen, "slices", n, "stats", p.Stats())
	return nil
}

// spec is the spec of slice i of pool (its devices shared, not copied).
func (p *Publisher) spec(pool *Pool, i int, ref resourceapi.ResourcePool) *resourceapi.ResourceSliceSpec {
	return &resourceapi.ResourceSliceSpec{
		Driver:   p.opts.DriverName,
		Pool:     ref,
		NodeName: ptr.To(p.opts.NodeName),
		Devices:  pool.Slices[i].Devices,
	}
}

// keepTaintTimes returns devs with the timeAdded the server gave each
// taint that is still there; devs is copied where that changes it.
func keepTaintTimes(devs []resourceapi.Device, times map[string]metav1.Time) []resourceapi.Device {
	if len(times) == 0 {
		return devs
	}
	copied := false
	for i := range devs {
		own := false
		for j := range devs[i].Taints {
			t := devs[i].Taints[j]
			at, ok := times[taintKey(devs[i].Name, t)]
			if !ok || t.TimeAdded != nil {
				continue
			}
			if !copied {
				devs = slices.Clone(devs)
				copied = true
			}
			if !own {
				devs[i].Taints = slices.Clone(devs[i].Taints)
				own = true
			}
			devs[i].Taints[j].TimeAdded = &at
		}
	}
	return devs
}

// DroppedFieldsError says the API server stored a slice without some of
// its fields, usually because a feature gate they need is off. The
// publisher carries on: it does not write the slice again until the pool
// changes.
type DroppedFieldsError struct {
	Pool       string
	SliceIndex int
	SliceName  string
	// Fields are the dropped fields, e.g. "spec.devices[3].taints"
	// (device 0000:3b:02.1).
	Fields []string
	// Features are the feature gates whose absence explains them.
	Features []string
}

func (e *DroppedFieldsError) Error() string {
	return fmt.Sprintf("pool %s, slice %d (ResourceSlice %s): the API server dropped %s, probably because these features are off: %s",
		e.Pool, e.SliceIndex, e.SliceName, strings.Join(e.Fields, ", "), strings.Join(e.Features, ", "))
}

// DisabledFeatures returns the feature gates whose absence explains the
// dropped fields ("unknown" when none does).
func (e *DroppedFieldsError) DisabledFeatures() []string {
	return e.Features
}

// droppedFields compares what was sent with what the server stored.
func droppedFields(pool string, index int, sent, got *resourceapi.ResourceSlice, want [sha256.Size]byte) *DroppedFieldsError {
	if sum, err := specDigest(&got.Spec); err == nil && sum == want {
		return nil
	}
	e := &DroppedFieldsError{Pool: pool, SliceIndex: index, SliceName: got.Name}
	if len(got.Spec.Devices) != len(sent.Spec.Devices) {
		e.Fields = append(e.Fields, fmt.Sprintf("spec.devices (%d of %d devices stored)", len(got.Spec.Devices), len(sent.Spec.Devices)))
		e.Features = []string{"unknown"}
		return e
	}
	taints, other := false, false
	for i := range sent.Spec.Devices {
		a, b := &sent.Spec.Devices[i], &got.Spec.Devices[i]
		if len(b.Taints) < len(a.Taints) {
			taints = true
			e.Fields = append(e.Fields, fmt.Sprintf("spec.devices[%d].taints (device %s)", i, a.Name))
			continue
		}
		if deviceDigest(a) != deviceDigest(b) {
			other = true
			e.Fields = append(e.Fields, fmt.Sprintf("spec.devices[%d] (device %s)", i, a.Name))
		}
	}
	if taints {
		e.Features = append(e.Features, "DRADeviceTaints")
	}
	if other {
		e.Features = append(e.Features, "unknown")
	}
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}

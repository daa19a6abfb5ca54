package slicepub

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
)

// heapAlloc is the heap in use after two collections.
func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestRetainedHeap compares the heap the publisher keeps after writing
// 1,024 devices with what the upstream ResourceSlice controller keeps for
// the same pool in the same run. Each is measured as the heap in use
// while it runs minus the heap once it is stopped and dropped, so the
// fake API servers' own copies of the slices do not count.
func TestRetainedHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap: not with -short")
	}
	ctx := klog.NewContext(context.Background(), klog.Background().V(1))

	ours := func() int64 {
		srv := newFakeServer()
		pub, err := New(Options{Client: srv, DriverName: testDriver, NodeName: testNode})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = pub.Run(ctx)
		}()
		if err := pub.Publish(ctx, makePool(1024, nil)); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		if err := pub.Wait(wctx); err != nil {
			t.Fatal(err)
		}
		if got := len(srv.snapshot()); got != 8 {
			t.Fatalf("%d slices written, want 8", got)
		}
		running := heapAlloc()
		cancel()
		<-done
		pub = nil
		stopped := heapAlloc()
		runtime.KeepAlive(srv)
		return running - stopped
	}()

	upstream := func() int64 {
		cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: testNode, UID: "node-uid-1"}})
		// The fake clientset does not do generateName; the API server does.
		var mu sync.Mutex
		n := 0
		cs.PrependReactor("create", "resourceslices", func(a k8stesting.Action) (bool, kruntime.Object, error) {
			if s, ok := a.(k8stesting.CreateAction).GetObject().(*resourceapi.ResourceSlice); ok && s.Name == "" {
				mu.Lock()
				n++
				s.Name = fmt.Sprintf("%s%05d", s.GenerateName, n)
				mu.Unlock()
			}
			return false, nil, nil
		})
		pool := makePool(1024, nil)
		res := &resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{testNode: {}}}
		p := res.Pools[testNode]
		for _, s := range pool.Slices {
			p.Slices = append(p.Slices, resourceslice.Slice{Devices: s.Devices})
		}
		res.Pools[testNode] = p
		c, err := resourceslice.StartController(ctx, resourceslice.Options{
			DriverName: testDriver, KubeClient: cs, Resources: res,
			Owner: &resourceslice.Owner{APIVersion: "v1", Kind: "Node", Name: testNode, UID: "node-uid-1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		res, pool, p = nil, Pool{}, resourceslice.Pool{}
		deadline := time.Now().Add(time.Minute)
		for c.GetStats().NumCreates < 8 {
			if time.Now().After(deadline) {
				t.Fatalf("upstream controller wrote %+v in a minute", c.GetStats())
			}
			time.Sleep(10 * time.Millisecond)
		}
		l, err := cs.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 8 {
			t.Fatalf("upstream controller: %d slices, %v", len(l.Items), err)
		}
		l = &resourceapi.ResourceSliceList{}
		running := heapAlloc()
		c.Stop()
		c = nil
		stopped := heapAlloc()
		runtime.KeepAlive(cs)
		runtime.KeepAlive(l)
		return running - stopped
	}()

	t.Logf("heap retained after publishing 1,024 devices: slicepub %d KiB, upstream resourceslice controller %d KiB (%.0fx)",
		ours/1024, upstream/1024, float64(upstream)/float64(max(ours, 1)))
	// Not a timing threshold: the digests of 8 slices are a few KiB, the
	// upstream copies megabytes.
	if ours > 512<<10 {
		t.Errorf("slicepub retains %d KiB after publishing, want a few KiB (digests, not the pool)", ours/1024)
	}
}

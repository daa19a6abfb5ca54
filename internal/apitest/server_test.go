package apitest_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
)

func slice(name, node string, gen int64) *resourceapi.ResourceSlice {
	return &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourceapi.ResourceSliceSpec{Driver: "d", NodeName: &node,
			Pool: resourceapi.ResourcePool{Name: node, Generation: gen, ResourceSliceCount: 1}},
	}
}

// client-go's clientset (protobuf requests) and an informer with a field
// selector work against the server, as the kubelet plugin library and
// the ResourceSlice controller use them.
func TestClientsetAndInformer(t *testing.T) {
	srv := apitest.New(t)
	srv.Add(slice("before", "n1", 1), slice("elsewhere", "n2", 1))
	cs, err := kubernetes.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var mu sync.Mutex
	seen := map[string]int64{}
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "spec.nodeName=n1"
	}))
	inf := f.Resource().V1().ResourceSlices().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			mu.Lock()
			defer mu.Unlock()
			s := o.(*resourceapi.ResourceSlice)
			seen[s.Name] = s.Spec.Pool.Generation
		},
		UpdateFunc: func(_, o any) {
			mu.Lock()
			defer mu.Unlock()
			s := o.(*resourceapi.ResourceSlice)
			seen[s.Name] = s.Spec.Pool.Generation
		},
		DeleteFunc: func(o any) {
			mu.Lock()
			defer mu.Unlock()
			if s, ok := o.(*resourceapi.ResourceSlice); ok {
				delete(seen, s.Name)
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	f.Start(ctx.Done())
	defer func() { cancel(); f.Shutdown() }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	state := func() string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for n, g := range seen {
			out = append(out, fmt.Sprintf("%s@%d", n, g))
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	waitFor := func(want string) {
		t.Helper()
		for state() != want {
			if ctx.Err() != nil {
				t.Fatalf("informer sees %q, want %q", state(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("before@1")

	created, err := cs.ResourceV1().ResourceSlices().Create(ctx, slice("new", "n1", 1), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("before@1,new@1")
	upd := created.DeepCopy()
	upd.Spec.Pool.Generation = 2
	if _, err := cs.ResourceV1().ResourceSlices().Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("before@1,new@2")
	// Moving a slice out of the selector is a delete for the watcher.
	moved := slice("before", "n3", 1)
	var stored resourceapi.ResourceSlice
	srv.Get("resource.k8s.io", "resourceslices", "", "before", &stored)
	moved.ResourceVersion = stored.ResourceVersion
	if _, err := cs.ResourceV1().ResourceSlices().Update(ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("new@2")
	uid := created.UID
	if err := cs.ResourceV1().ResourceSlices().Delete(ctx, "new", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
		t.Fatal(err)
	}
	waitFor("")
	if _, err := cs.ResourceV1().ResourceSlices().Get(ctx, "new", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get of a deleted slice: %v", err)
	}
}

// Another manager's status.devices entry is a conflict for an apply
// that is not forced.
func TestApplyConflictWithoutForce(t *testing.T) {
	srv := apitest.New(t)
	srv.Add(&resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c", UID: "u"}})
	cs, err := kubernetes.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := []byte(`{"apiVersion":"resource.k8s.io/v1","kind":"ResourceClaim","metadata":{"name":"c","namespace":"ns"},
		"status":{"devices":[{"driver":"d","pool":"p","device":"x"}]}}`)
	apply := func(manager string, force bool) error {
		_, err := cs.ResourceV1().ResourceClaims("ns").Patch(ctx, "c", types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: manager, Force: &force}, "status")
		return err
	}
	if err := apply("a", false); err != nil {
		t.Fatal(err)
	}
	if err := apply("b", false); !apierrors.IsConflict(err) {
		t.Errorf("unforced apply of another manager's entry: %v, want Conflict", err)
	}
	if err := apply("b", true); err != nil {
		t.Errorf("forced apply: %v", err)
	}
	if _, err := cs.ResourceV1().ResourceClaims("ns").Patch(ctx, "c", types.ApplyPatchType, body, metav1.PatchOptions{}, "status"); !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
		t.Errorf("apply without a field manager: %v, want Invalid", err)
	}
}

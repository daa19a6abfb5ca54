package driver

import (
	"context"
	"fmt"
	"sync"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sriov-dra/sriov-dra/pkg/slicepub"
)

// clientsetSlices is the publisher's client over a (fake) clientset.
type clientsetSlices struct{ cs kubernetes.Interface }

func (c clientsetSlices) ListSlices(ctx context.Context, opts metav1.ListOptions) (*resourceapi.ResourceSliceList, error) {
	return c.cs.ResourceV1().ResourceSlices().List(ctx, opts)
}

func (c clientsetSlices) WatchSlices(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return c.cs.ResourceV1().ResourceSlices().Watch(ctx, opts)
}

func (c clientsetSlices) CreateSlice(ctx context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error) {
	return c.cs.ResourceV1().ResourceSlices().Create(ctx, s, metav1.CreateOptions{})
}

func (c clientsetSlices) UpdateSlice(ctx context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error) {
	return c.cs.ResourceV1().ResourceSlices().Update(ctx, s, metav1.UpdateOptions{})
}

func (c clientsetSlices) DeleteSlice(ctx context.Context, name string, uid types.UID) error {
	return c.cs.ResourceV1().ResourceSlices().Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
}

func (c clientsetSlices) GetNodeUID(ctx context.Context, name string) (types.UID, error) {
	n, err := c.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return n.UID, nil
}

// startPublisher runs a ResourceSlice publisher for d over cs until ctx
// ends, as the daemon does; the test's cleanup waits for it. A fake
// clientset is taught generateName, as the API server does it.
func startPublisher(ctx context.Context, t *testing.T, cs kubernetes.Interface, d *Driver) *slicepub.Publisher {
	t.Helper()
	if f, ok := cs.(*fake.Clientset); ok {
		var mu sync.Mutex
		n := 0
		f.PrependReactor("create", "resourceslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
			s, ok := a.(k8stesting.CreateAction).GetObject().(*resourceapi.ResourceSlice)
			if ok && s.Name == "" && s.GenerateName != "" {
				mu.Lock()
				n++
				s.Name = fmt.Sprintf("%s%05d", s.GenerateName, n)
				mu.Unlock()
			}
			return false, nil, nil
		})
	}
	pub, err := slicepub.New(slicepub.Options{
		Client: clientsetSlices{cs}, DriverName: d.cfg.DriverName, NodeName: d.cfg.NodeName,
		Resync: d.Republish, ErrorHandler: d.HandlePublishError,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = pub.Run(ctx) })
	t.Cleanup(wg.Wait)
	return pub
}

package daemon

// This file adapts the clientset to the ResourceSlice publisher's client
// (the methods of kubeapi.Client it uses). Temporary: it goes when the
// daemon gets a narrow API client of its own.

import (
	"context"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/sriov-dra/sriov-dra/pkg/slicepub"
)

// sliceClient is a slicepub.Client over a clientset.
type sliceClient struct{ cs kubernetes.Interface }

var _ slicepub.Client = sliceClient{}

func (c sliceClient) ListSlices(ctx context.Context, opts metav1.ListOptions) (*resourceapi.ResourceSliceList, error) {
	return c.cs.ResourceV1().ResourceSlices().List(ctx, opts)
}

func (c sliceClient) WatchSlices(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return c.cs.ResourceV1().ResourceSlices().Watch(ctx, opts)
}

func (c sliceClient) CreateSlice(ctx context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error) {
	return c.cs.ResourceV1().ResourceSlices().Create(ctx, s, metav1.CreateOptions{})
}

func (c sliceClient) UpdateSlice(ctx context.Context, s *resourceapi.ResourceSlice) (*resourceapi.ResourceSlice, error) {
	return c.cs.ResourceV1().ResourceSlices().Update(ctx, s, metav1.UpdateOptions{})
}

func (c sliceClient) DeleteSlice(ctx context.Context, name string, uid types.UID) error {
	return c.cs.ResourceV1().ResourceSlices().Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
}

func (c sliceClient) GetNodeUID(ctx context.Context, name string) (types.UID, error) {
	n, err := c.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return n.UID, nil
}

package daemon

// Stand-ins over the clientset until the narrow API client (pkg/kubeapi)
// and our own ResourceSlice publisher replace them: the kubelet server's
// ClaimGetter, and publishing through the upstream ResourceSlice
// controller, as the kubelet plugin helper did.

import (
	"context"
	"errors"
	"slices"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/klog/v2"
)

// clientsetClaims reads ResourceClaims through the clientset.
type clientsetClaims struct{ client kubernetes.Interface }

func (c clientsetClaims) GetClaim(ctx context.Context, namespace, name string) (*resourceapi.ResourceClaim, error) {
	return c.client.ResourceV1().ResourceClaims(namespace).Get(ctx, name, metav1.GetOptions{})
}

// controllerPublisher publishes the pool through the upstream ResourceSlice
// controller, started on the first publication (driver.Publisher).
type controllerPublisher struct {
	ctx        context.Context
	client     kubernetes.Interface
	driverName string
	nodeName   string
	// handleDropped hands the API server dropping device taints to the
	// driver, which logs it once.
	handleDropped func(ctx context.Context, err error, msg string)

	mu   sync.Mutex
	ctrl *resourceslice.Controller
}

func (p *controllerPublisher) PublishResources(_ context.Context, res resourceslice.DriverResources) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctrl != nil {
		p.ctrl.Update(&res)
		return nil
	}
	ctx := klog.NewContext(p.ctx, klog.LoggerWithName(klog.FromContext(p.ctx), "ResourceSlice controller"))
	ctrl, err := resourceslice.StartController(ctx, resourceslice.Options{
		DriverName: p.driverName,
		KubeClient: p.client,
		Owner:      &resourceslice.Owner{APIVersion: "v1", Kind: "Node", Name: p.nodeName},
		Resources:  &res,
		// The controller retries: none of its errors stops the daemon.
		ErrorHandler: func(ctx context.Context, err error, msg string) {
			var dropped *resourceslice.DroppedFieldsError
			if errors.As(err, &dropped) && slices.Equal(dropped.DisabledFeatures(), []string{"DRADeviceTaints"}) {
				p.handleDropped(ctx, err, msg)
				return
			}
			utilruntime.HandleErrorWithContext(ctx, err, msg)
		},
	})
	if err != nil {
		return err
	}
	p.ctrl = ctrl
	return nil
}

// stop stops the controller, if it was started.
func (p *controllerPublisher) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ctrl.Stop()
}

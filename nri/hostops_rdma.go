package nri

import (
	"context"
	"errors"
	"fmt"
	"os"

	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// MoveRDMA moves the RDMA device from the host into the pod netns
// (exclusive RDMA netns mode); already there is success.
func (o *hostOps) MoveRDMA(ctx context.Context, rdmaDevice, netnsPath string) error {
	pod, err := nlink.NewAt(netnsPath)
	if err != nil {
		return fmt.Errorf("move RDMA device %s: %w", rdmaDevice, err)
	}
	defer pod.Close()
	return rdma.Move(ctx, o.h, rdmaDevice, netnsPath, pod)
}

// ReturnRDMA moves the RDMA device from the pod netns back to the host;
// already on the host is success. When the netns is gone the kernel has
// returned the device to the host already, or will when the last holder
// of the netns lets go: until then it is an error, retried later.
func (o *hostOps) ReturnRDMA(ctx context.Context, rdmaDevice, netnsPath string) error {
	pod, err := nlink.NewAt(netnsPath)
	if errors.Is(err, os.ErrNotExist) {
		if _, herr := o.h.RdmaLinkByName(rdmaDevice); herr != nil {
			return fmt.Errorf("return RDMA device %s: netns %s is gone and the device is not back on the host yet: %w", rdmaDevice, netnsPath, herr)
		}
		klog.FromContext(ctx).V(2).Info("Pod netns gone, RDMA device already back on the host", "rdma", rdmaDevice, "netns", netnsPath)
		return nil
	}
	if err != nil {
		return fmt.Errorf("return RDMA device %s: %w", rdmaDevice, err)
	}
	defer pod.Close()
	return rdma.Move(ctx, pod, rdmaDevice, netattach.HostNetnsPath, o.h)
}

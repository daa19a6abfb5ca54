package nri

import (
	"context"
	"errors"
)

// TEMPORARY until pkg/rdma lands.
func (o *hostOps) MoveRDMA(ctx context.Context, rdmaDevice, netnsPath string) error {
	return errors.New("not wired")
}

func (o *hostOps) ReturnRDMA(ctx context.Context, rdmaDevice, netnsPath string) error {
	return errors.New("not wired")
}

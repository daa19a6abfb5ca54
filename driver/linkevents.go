package driver

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"
)

// SubscribeLinkEvents returns a channel that gets a value on every link
// change in the calling process's network namespace (the host netns: the
// daemon runs with host networking), for Config.LinkEvents. It never
// blocks the netlink reader: bursts collapse into one pending value, and
// the driver debounces further. The channel closes when ctx ends or the
// subscription fails (the slow poll still runs).
func SubscribeLinkEvents(ctx context.Context) (<-chan struct{}, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	errs := make(chan error, 1)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				klog.FromContext(ctx).Error(err, "Link event subscription failed; relying on the slow poll")
				return
			case _, ok := <-updates:
				if !ok {
					return
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}

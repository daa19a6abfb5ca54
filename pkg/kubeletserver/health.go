package kubeletserver

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	drahealth "k8s.io/kubelet/pkg/apis/dra-health/v1"
)

// kubeletHealthTimeout is how long kubelet trusts a device's health when
// the report gives no timeout.
const kubeletHealthTimeout = 30 * time.Second

// healthService streams the plugin's health reports to kubelet (the v1
// service; v1alpha1 is served by converting its messages).
type healthService struct {
	drahealth.UnsafeDRAResourceHealthServer
	s *Server
}

func (h *healthService) NodeWatchResources(_ *drahealth.NodeWatchResourcesRequest, stream drahealth.DRAResourceHealth_NodeWatchResourcesServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	logger := klog.FromContext(ctx)
	reports := make(chan DeviceHealthReport)
	done := make(chan error, 1)
	go func() { done <- h.s.plugin.WatchHealthStatus(ctx, reports) }()

	// A driver that stops re-sending lets kubelet show its devices'
	// health as unknown: say so in the log, once per lapse.
	check := time.NewTicker(kubeletHealthTimeout / 3)
	defer check.Stop()
	last, lease, warned := time.Now(), kubeletHealthTimeout, false
	for {
		select {
		case r := <-reports:
			last, lease, warned = time.Now(), shortestLease(r), false
			if err := stream.Send(toWireHealth(r)); err != nil {
				cancel()
				if werr := <-done; werr != nil {
					logger.V(2).Info("The driver's health watch ended with an error after kubelet's stream broke", "err", werr)
				}
				return err
			}
		case err := <-done:
			if errors.Is(err, ErrHealthNotSupported) {
				return status.Error(codes.Unimplemented, err.Error())
			}
			return err
		case <-check.C:
			if !warned && time.Since(last) > lease {
				warned = true
				logger.Info("The driver sent no device health for longer than kubelet trusts it: kubelet shows the devices' health as unknown", "since", time.Since(last).Truncate(time.Second), "lease", lease)
			}
		}
	}
}

// shortestLease is the shortest time kubelet trusts a device of the report.
func shortestLease(r DeviceHealthReport) time.Duration {
	lease := time.Duration(0)
	for _, d := range r.Devices {
		t := d.HealthCheckTimeout
		if t <= 0 {
			t = kubeletHealthTimeout
		}
		if lease == 0 || t < lease {
			lease = t
		}
	}
	if lease == 0 {
		return kubeletHealthTimeout
	}
	return lease
}

func toWireHealth(r DeviceHealthReport) *drahealth.NodeWatchResourcesResponse {
	out := &drahealth.NodeWatchResourcesResponse{Devices: make([]*drahealth.DeviceHealth, 0, len(r.Devices))}
	for _, d := range r.Devices {
		var updated int64
		if !d.LastUpdated.IsZero() {
			updated = d.LastUpdated.Unix()
		}
		out.Devices = append(out.Devices, &drahealth.DeviceHealth{
			Device:                    &drahealth.DeviceIdentifier{PoolName: d.PoolName, DeviceName: d.DeviceName},
			Health:                    toWireStatus(d.Health),
			LastUpdatedTime:           updated,
			HealthCheckTimeoutSeconds: int64(d.HealthCheckTimeout / time.Second),
			Message:                   d.Message,
		})
	}
	return out
}

func toWireStatus(h HealthStatus) drahealth.HealthStatus {
	switch h {
	case HealthStatusHealthy:
		return drahealth.HealthStatus_HEALTHY
	case HealthStatusUnhealthy:
		return drahealth.HealthStatus_UNHEALTHY
	default:
		return drahealth.HealthStatus_UNKNOWN
	}
}

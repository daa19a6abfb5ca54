package driver

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the driver's Prometheus metrics.
type Metrics struct {
	prepares     *prometheus.CounterVec
	unprepares   *prometheus.CounterVec
	prepareDur   prometheus.Histogram
	unprepareDur prometheus.Histogram
	devices      *prometheus.GaugeVec
	publishes    prometheus.Counter

	staleReleasesPending prometheus.Gauge
	staleReleaseFailures *prometheus.CounterVec

	vfProvisioningPending prometheus.Gauge

	lost      prometheus.Gauge
	lostTotal prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		prepares: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sriov_dra", Name: "prepare_claims_total",
			Help: "Claims prepared, by result (success, error).",
		}, []string{"result"}),
		unprepares: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sriov_dra", Name: "unprepare_claims_total",
			Help: "Claims unprepared, by result (success, error).",
		}, []string{"result"}),
		prepareDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sriov_dra", Name: "prepare_claim_duration_seconds",
			Help: "Time to prepare one claim.", Buckets: buckets,
		}),
		unprepareDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sriov_dra", Name: "unprepare_claim_duration_seconds",
			Help: "Time to unprepare one claim.", Buckets: buckets,
		}),
		devices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "sriov_dra", Name: "devices",
			Help: "Devices of this node by state (available, prepared, attached).",
		}, []string{"state"}),
		publishes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sriov_dra", Name: "resourceslice_publish_total",
			Help: "Times the node's pool was published because it changed.",
		}),
		staleReleasesPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sriov_dra", Name: "stale_releases_pending",
			Help: "Claim records from before the node rebooted whose release (IPAM, CDI spec, attach markers, status) has not succeeded yet; retried in the background.",
		}),
		staleReleaseFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sriov_dra", Name: "stale_release_failures_total",
			Help: "Failed steps of releases of claim records from before the node rebooted, by step.",
		}, []string{"step"}),
		vfProvisioningPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sriov_dra", Name: "vf_provisioning_pending",
			Help: "PFs whose configured VF count (or VF driver) waits because a VF of theirs, or the PF, is prepared.",
		}),
		lost: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "sriov_dra", Name: "devices_lost",
			Help: "Devices released while they were gone (removed, hot-unplugged) and not back with the same identity yet; not handed out.",
		}),
		lostTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sriov_dra", Name: "devices_lost_total",
			Help: "Devices that were gone for the lost-device timeout when their claim was unprepared; the claim was released without them.",
		}),
	}
	reg.MustRegister(m.lost, m.lostTotal, m.vfProvisioningPending, m.prepares, m.unprepares, m.prepareDur, m.unprepareDur, m.devices, m.publishes, m.staleReleasesPending, m.staleReleaseFailures)
	return m
}

// updateDeviceMetrics sets the devices gauge from the scan and the state.
func (d *Driver) updateDeviceMetrics() {
	m := d.cfg.Metrics
	if m == nil {
		return
	}
	owned, attached := d.state.deviceCounts()
	prepared := len(owned)
	available := 0
	if inv := d.inventory(); inv != nil {
		for _, dev := range inv.Publishable(d.cfg.PassthroughPFs) {
			if !owned[dev.Name] {
				available++
			}
		}
	}
	m.devices.WithLabelValues("available").Set(float64(available))
	m.devices.WithLabelValues("prepared").Set(float64(prepared))
	m.devices.WithLabelValues("attached").Set(float64(attached))
}

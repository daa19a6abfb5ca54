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
		prepares:     counterVec("prepare_claims_total", "Claims prepared, by result (success, error).", "result"),
		unprepares:   counterVec("unprepare_claims_total", "Claims unprepared, by result (success, error).", "result"),
		prepareDur:   histogram("prepare_claim_duration_seconds", "Time to prepare one claim.", buckets),
		unprepareDur: histogram("unprepare_claim_duration_seconds", "Time to unprepare one claim.", buckets),
		devices:      gaugeVec("devices", "Devices of this node by state (available, prepared, attached).", "state"),
		publishes:    counter("resourceslice_publish_total", "Times the node's pool was handed to the ResourceSlice publisher: at start and when it changed."),
		staleReleasesPending: gauge("stale_releases_pending",
			"Claim records from before the node rebooted whose release (IPAM, CDI spec, attach markers, status) has not succeeded yet; retried in the background."),
		staleReleaseFailures: counterVec("stale_release_failures_total",
			"Failed steps of releases of claim records from before the node rebooted, by step.", "step"),
		vfProvisioningPending: gauge("vf_provisioning_pending",
			"PFs whose configured VF count (or VF driver) waits because a VF of theirs, or the PF, is prepared."),
		lost: gauge("devices_lost",
			"Devices released while they were gone (removed, hot-unplugged) and not back with the same identity yet; not handed out."),
		lostTotal: counter("devices_lost_total",
			"Devices that were gone for the lost-device timeout when their claim was unprepared; the claim was released without them."),
	}
	reg.MustRegister(m.lost, m.lostTotal, m.vfProvisioningPending, m.prepares, m.unprepares, m.prepareDur, m.unprepareDur, m.devices, m.publishes, m.staleReleasesPending, m.staleReleaseFailures)
	return m
}

// metricsNamespace prefixes the names of all the driver's metrics.
const metricsNamespace = "sriov_dra"

// counter, counterVec, gauge, gaugeVec, histogram and histogramVec
// declare one metric of the driver (unregistered).
func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: name, Help: help})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
}

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: metricsNamespace, Name: name, Help: help, Buckets: buckets})
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metricsNamespace, Name: name, Help: help, Buckets: buckets}, labels)
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

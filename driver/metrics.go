package driver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sriov-dra/sriov-dra/nri"
)

// Metrics are the driver's Prometheus metrics.
type Metrics struct {
	prepares     *prometheus.CounterVec
	unprepares   *prometheus.CounterVec
	prepareDur   prometheus.Histogram
	unprepareDur prometheus.Histogram
	devices      *prometheus.GaugeVec
	publishes    prometheus.Counter
	nriHookDur   *prometheus.HistogramVec
	nriHookFails *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// The NRI hooks' budget: the runtime gives all its plugins about 2 s
	// together, so these are fine below 100 ms, where a hook should be,
	// and around 1-2 s, where the sandbox fails.
	nriHookBuckets := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5}
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
		nriHookDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sriov_dra", Name: "nri_hook_duration_seconds",
			Help:    "Time an NRI hook took for a pod with devices, by hook; the runtime allows all plugins about 2 s. For StopPodSandbox and RemovePodSandbox it is the detach's time, which may end in the background after the hook returned.",
			Buckets: nriHookBuckets,
		}, []string{"hook"}),
		nriHookFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sriov_dra", Name: "nri_hook_failures_total",
			Help: "NRI hooks that failed for a pod with devices, by hook (RunPodSandbox and CreateContainer failures fail the sandbox or container).",
		}, []string{"hook"}),
	}
	// Every hook has its series from the start, at zero.
	for _, h := range nri.Hooks() {
		m.nriHookDur.WithLabelValues(h)
		m.nriHookFails.WithLabelValues(h)
	}
	reg.MustRegister(m.prepares, m.unprepares, m.prepareDur, m.unprepareDur, m.devices, m.publishes, m.nriHookDur, m.nriHookFails)
	return m
}

// ObserveNRIHook records one NRI hook: its duration and whether it failed.
// It is the NRI plugin's Config.ObserveHook.
func (m *Metrics) ObserveNRIHook(hook string, took time.Duration, err error) {
	m.nriHookDur.WithLabelValues(hook).Observe(took.Seconds())
	if err != nil {
		m.nriHookFails.WithLabelValues(hook).Inc()
	}
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

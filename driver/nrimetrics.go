package driver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sriov-dra/sriov-dra/nri"
)

// NRIHookMetrics are the NRI hooks' latency and failures: the runtime gives
// all its NRI plugins about 2 s together, the tightest budget of the node.
type NRIHookMetrics struct {
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

// NewNRIHookMetrics creates the metrics and registers them with reg.
// Every hook of nri.Hooks has its series from the start, at zero.
func NewNRIHookMetrics(reg prometheus.Registerer) *NRIHookMetrics {
	m := &NRIHookMetrics{
		duration: histogramVec("nri_hook_duration_seconds",
			"Time an NRI hook took for a pod with devices, by hook; the runtime allows all plugins about 2 s. For StopPodSandbox and RemovePodSandbox it is the detach's time, which may end in the background after the hook returned.",
			// Fine below 100 ms, where a hook should be, and around
			// 1-2 s, where the sandbox fails.
			[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5}, "hook"),
		failures: counterVec("nri_hook_failures_total",
			"NRI hooks that failed for a pod with devices, by hook (RunPodSandbox and CreateContainer failures fail the sandbox or container).", "hook"),
	}
	for _, h := range nri.Hooks() {
		m.duration.WithLabelValues(h)
		m.failures.WithLabelValues(h)
	}
	reg.MustRegister(m.duration, m.failures)
	return m
}

// Observe records one NRI hook: its duration and whether it failed. It is
// the NRI plugin's Config.ObserveHook.
func (m *NRIHookMetrics) Observe(hook string, took time.Duration, err error) {
	m.duration.WithLabelValues(hook).Observe(took.Seconds())
	if err != nil {
		m.failures.WithLabelValues(hook).Inc()
	}
}

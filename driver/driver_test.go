package driver

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

func TestHandleError(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}})
	var fatal []error
	cfg := e.config()
	cfg.OnFatal = func(err error) { fatal = append(fatal, err) }
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	d.HandleError(ctx, apierrors.NewInvalid(schema.GroupKind{Group: "resource.k8s.io", Kind: "ResourceSlice"}, "s", field.ErrorList{field.Invalid(field.NewPath("spec"), "x", "bad")}), "publish")
	if len(fatal) != 0 {
		t.Fatalf("an invalid slice stopped the daemon: %v", fatal)
	}
	d.HandleError(ctx, errors.New("watch broke for good"), "background")
	if len(fatal) != 1 || !strings.Contains(fatal[0].Error(), "background: watch broke for good") {
		t.Fatalf("fatal = %v", fatal)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}})
	reg := prometheus.NewRegistry()
	cfg := e.config()
	cfg.Metrics = NewMetrics(reg)
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ok := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("a", vfName(e, 0, 0))})
	bad := newClaim("u2", "p2", []resourceapi.DeviceRequestAllocationResult{result("a", "pci-0000-99-00-1")})
	prepare(t, d, ok, bad)
	if _, err := d.publish(context.Background(), &countingPublisher{}); err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)
	for name, want := range map[string]float64{
		`sriov_dra_prepare_claims_total{result="success"}`: 1,
		`sriov_dra_prepare_claims_total{result="error"}`:   1,
		`sriov_dra_devices{state="prepared"}`:              1,
		`sriov_dra_devices{state="available"}`:             6,
		`sriov_dra_resourceslice_publish_total`:            1,
		`sriov_dra_prepare_claim_duration_seconds_count`:   2,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	unprepare(t, d, ok)
	if got := gather(t, reg)[`sriov_dra_unprepare_claims_total{result="success"}`]; got != 1 {
		t.Errorf("unprepare count %v", got)
	}
}

// gather flattens the registry into "name{label="value"}" -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var l []string
				for _, lp := range m.GetLabel() {
					l = append(l, lp.GetName()+`="`+lp.GetValue()+`"`)
				}
				name += "{" + strings.Join(l, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

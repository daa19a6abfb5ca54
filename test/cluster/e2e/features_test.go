//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// featureState is what the API server says about one feature gate.
type featureState struct {
	known   bool
	enabled bool
	stage   string // ALPHA, BETA, "" for GA
}

// featureLine is one gate in the API server's /metrics:
// kubernetes_feature_enabled{name="DRADeviceTaints",stage="ALPHA"} 0
var featureLine = regexp.MustCompile(`^kubernetes_feature_enabled\{name="([^"]+)",stage="([^"]*)"\} ([01])$`)

// parseFeatureMetrics reads the kubernetes_feature_enabled series of a
// Prometheus text exposition.
func parseFeatureMetrics(text string) map[string]featureState {
	out := map[string]featureState{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if m := featureLine.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = featureState{known: true, enabled: m[3] == "1", stage: m[2]}
		}
	}
	return out
}

// requireFeature skips the test, saying which feature is missing and on
// which Kubernetes version, unless the cluster's API server has the feature
// gate on. The scheduler, controller manager and kubelet of the test cluster
// run with the same gates (test/cluster/cluster.sh), so the API server's
// view is the cluster's. what says in words what the test needs the gate for.
func requireFeature(t *testing.T, e *env, gate, what string) {
	t.Helper()
	ver, err := e.cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("the API server's version: %v", err)
	}
	raw, err := e.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("the API server's /metrics (for feature gate %s): %v", gate, err)
	}
	st := parseFeatureMetrics(string(raw))
	if len(st) == 0 {
		t.Fatalf("the API server's /metrics has no kubernetes_feature_enabled series; cannot tell whether %s is on", gate)
	}
	if msg := featureSkipReason(st[gate], gate, what, ver.GitVersion); msg != "" {
		t.Skip(msg)
	}
}

// featureSkipReason is the skip message for a gate in state s, or "" when
// the feature is on.
func featureSkipReason(s featureState, gate, what, k8sVersion string) string {
	switch {
	case !s.known:
		return fmt.Sprintf("%s: Kubernetes %s does not know the feature gate %s", what, k8sVersion, gate)
	case !s.enabled:
		stage := strings.ToLower(s.stage)
		if stage == "" {
			stage = "GA"
		}
		return fmt.Sprintf("%s: feature gate %s (%s) is off in this cluster (Kubernetes %s)", what, gate, stage, k8sVersion)
	}
	return ""
}

func TestFeatureSkipReason(t *testing.T) {
	metrics := `# HELP kubernetes_feature_enabled [BETA] This metric records the data about the stage and enablement of a k8s feature.
# TYPE kubernetes_feature_enabled gauge
kubernetes_feature_enabled{name="DRADeviceTaints",stage="ALPHA"} 0
kubernetes_feature_enabled{name="DRAExtendedResource",stage=""} 1
`
	st := parseFeatureMetrics(metrics)
	for _, tc := range []struct {
		gate, want string
	}{
		{"DRADeviceTaints", "device taints: feature gate DRADeviceTaints (alpha) is off in this cluster (Kubernetes v1.34.4)"},
		{"DRAExtendedResource", ""},
		{"DRANoSuchThing", "device taints: Kubernetes v1.34.4 does not know the feature gate DRANoSuchThing"},
	} {
		if got := featureSkipReason(st[tc.gate], tc.gate, "device taints", "v1.34.4"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.gate, got, tc.want)
		}
	}
}

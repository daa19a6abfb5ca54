//go:build e2e

package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The driver runs with -v=4 as docs/troubleshooting.md tells users to give
// it (test/cluster/driver.sh patches the DaemonSet's args the way a
// kustomize overlay does), starts, and its log has a line it writes only
// at V(4): the resolved config of each device it prepares, here for this
// test's claim.
func TestDriverVerboseLog(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	pods, err := e.cs.CoreV1().Pods("sriov-dra").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=sriov-dra"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no driver pod: %v", err)
	}
	for _, c := range pods.Items[0].Spec.Containers {
		if c.Name == "driver" && !slices.Contains(c.Args, "-v=4") {
			t.Fatalf("the driver container runs with args %q, not -v=4: test/cluster/driver.sh no longer deploys it as the docs say", c.Args)
		}
	}

	e.template(t, "vf", vfClass, vfSelector, config("VfConfig", map[string]any{"ifName": "net7"}))
	e.pod(t, "verbose", "vf")
	e.waitRunning(t, "verbose", 90*time.Second)
	claim := e.claimOf(t, "verbose")
	want := `claim="` + claim.Namespace + "/" + claim.Name + `"`
	var log string
	found := func() bool {
		out, err := e.kubectlOut("logs", "-n", "sriov-dra", "-l", "app.kubernetes.io/name=sriov-dra", "--tail=-1")
		if err != nil {
			log = err.Error() + "\n" + out
			return false
		}
		log = out
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, `"Resolved device config"`) && strings.Contains(line, want) && strings.Contains(line, "net7") {
				return true
			}
		}
		return false
	}
	// Prepare finished before the pod ran; the log may take a moment.
	deadline := time.Now().Add(30 * time.Second)
	for !found() {
		if time.Now().After(deadline) {
			lines := strings.Split(log, "\n")
			t.Fatalf("no V(4) line \"Resolved device config\" with %s and ifName net7 in the driver's log after 30 s; its last lines:\n%s",
				want, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
		time.Sleep(time.Second)
	}
}

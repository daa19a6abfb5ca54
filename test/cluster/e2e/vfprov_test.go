//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestVFConfigPlumbing: the VF config reaches the driver through the
// ConfigMap the manifests mount. The simulated node's PFs are fixture
// sysfs folders (a write to sriov_numvfs there creates no VF and would
// disturb the other tests), so the test asks for more VFs than the PF
// allows: the driver re-reads the changed file, plans it against the
// node's PF and refuses it with a Warning Event on the Node naming the PF
// and its limit. Nothing is written.
func TestVFConfigPlumbing(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	var pfPCI string
	for _, d := range publishedDevices(t, e.cs) {
		if p := strAttr(d, "pfPciAddress"); p != "" {
			pfPCI = p
			break
		}
	}
	if pfPCI == "" {
		t.Fatal("no published VF names its PF")
	}
	cms := e.cs.CoreV1().ConfigMaps("sriov-dra")
	cm, err := cms.Get(ctx, "sriov-dra-vf-config", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the manifests' VF config ConfigMap: %v", err)
	}
	orig := cm.Data["config.yaml"]
	t.Cleanup(func() {
		cm, err := cms.Get(ctx, "sriov-dra-vf-config", metav1.GetOptions{})
		if err != nil {
			t.Errorf("restore VF config: %v", err)
			return
		}
		cm.Data["config.yaml"] = orig
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Errorf("restore VF config: %v", err)
		}
	})
	const tooMany = 4000
	cm.Data["config.yaml"] = fmt.Sprintf("apiVersion: sriov.dra.dev/v1alpha1\nkind: NodeConfig\npfs:\n- pciAddress: %q\n  numVfs: %d\n", pfPCI, tooMany)
	start := time.Now()
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var msg string
	// kubelet refreshes a ConfigMap volume on the pod's next sync (up to
	// about a minute and a half).
	waitFor(t, 180*time.Second, "a VFProvisioningFailed event on node "+nodeName, func() (bool, error) {
		evs, err := e.cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + nodeName + ",reason=VFProvisioningFailed",
		})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Message, pfPCI) && strings.Contains(ev.Message, fmt.Sprintf("numVfs %d", tooMany)) {
				msg = ev.Message
				return true, nil
			}
		}
		return false, nil
	})
	t.Logf("after %v: %s", time.Since(start).Round(time.Second), msg)
	if !strings.Contains(msg, "above the PF's limit sriov_totalvfs") {
		t.Errorf("event %q does not name the limit", msg)
	}
}

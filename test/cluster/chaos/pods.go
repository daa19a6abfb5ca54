// The churn: each slot creates a claim and a pod, follows the pod to its
// end, checks what the pod saw against the claim and deletes both.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func (c *chaos) objects(slot, gen int, rng *rand.Rand) (*resourceapi.ResourceClaim, *corev1.Pod, int) {
	name := fmt.Sprintf("s%02d-g%03d", slot, gen)
	mtu := 1280 + rng.IntN(200)
	params := map[string]any{
		"apiVersion": "sriov.dra.dev/v1alpha1", "kind": "VfConfig", "ifName": "net1", "mtu": mtu,
		"ipam": map[string]any{"type": "host-local", "ranges": [][]map[string]any{{{"subnet": "10.56.0.0/16"}}}},
	}
	raw, _ := json.Marshal(params)
	claim := &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.o.namespace, Labels: map[string]string{"app": "chaos"}},
		Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
			Requests: []resourceapi.DeviceRequest{{Name: "vf", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: "vf-ethernet.sriov.dra.dev"}}},
			Config: []resourceapi.DeviceClaimConfiguration{{Requests: []string{"vf"}, DeviceConfiguration: resourceapi.DeviceConfiguration{
				Opaque: &resourceapi.OpaqueDeviceConfiguration{Driver: "sriov.dra.dev", Parameters: runtime.RawExtension{Raw: raw}},
			}}},
		}},
	}
	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.o.namespace, Labels: map[string]string{"app": "chaos"}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			DNSPolicy:                     corev1.DNSNone,
			DNSConfig:                     &corev1.PodDNSConfig{Nameservers: []string{"127.0.0.1"}},
			Containers: []corev1.Container{{
				Name: "check", Image: c.o.image, ImagePullPolicy: corev1.PullNever,
				Command:   []string{"sh", "-c", checkScript},
				Env:       []corev1.EnvVar{{Name: "MTU", Value: strconv.Itoa(mtu)}, {Name: "HOLD", Value: strconv.Itoa(3 + rng.IntN(6))}},
				Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "net"}}},
			}},
			ResourceClaims: []corev1.PodResourceClaim{{Name: "net", ResourceClaimName: &claim.Name}},
		},
	}
	return claim, pod, mtu
}

// slot churns pods until ctx ends.
func (c *chaos) slot(ctx context.Context, slot int) {
	rng := rand.New(rand.NewPCG(c.o.seed, uint64(slot)+1))
	for gen := 0; ctx.Err() == nil; gen++ {
		claim, pod, _ := c.objects(slot, gen, rng)
		if err := retry(ctx, time.Minute, func() error {
			_, err := c.cs.ResourceV1().ResourceClaims(c.o.namespace).Create(context.Background(), claim, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		}); err != nil {
			continue
		}
		if err := retry(ctx, time.Minute, func() error {
			_, err := c.cs.CoreV1().Pods(c.o.namespace).Create(context.Background(), pod, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		}); err != nil {
			continue
		}
		// A pod that started is followed to its end even after the run's
		// duration (bounded), so its check counts; one still queued then
		// is deleted uncounted.
		c.follow(ctx, pod.Name, 4*time.Minute)
		c.remove(pod.Name)
	}
}

// follow waits for the pod to finish and checks what it saw. A pod that
// exits 3 saw a wrong device (or none); other failures are counted apart.
// A pod waits for a VF as long as the run lasts; within counts from when
// it was scheduled (got its device).
func (c *chaos) follow(run context.Context, name string, within time.Duration) {
	ctx := context.Background()
	var deadline time.Time // zero until scheduled
	var seen claimSeen
	for deadline.IsZero() || time.Now().Before(deadline) {
		p, err := c.cs.CoreV1().Pods(c.o.namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		if deadline.IsZero() && p.Spec.NodeName != "" {
			deadline = time.Now().Add(within)
		}
		if deadline.IsZero() && run.Err() != nil {
			c.queued.Add(1)
			return // still waiting for a VF at the end of the run
		}
		started := false
		for _, s := range p.Status.ContainerStatuses {
			started = started || s.State.Running != nil || s.State.Terminated != nil
		}
		if started && p.Status.Phase == corev1.PodRunning {
			// The claim is deallocated once the pod is done: read its
			// allocation and status while the pod runs.
			if cl, err := c.cs.ResourceV1().ResourceClaims(c.o.namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
				if a := cl.Status.Allocation; a != nil && len(a.Devices.Results) > 0 {
					seen.device = a.Devices.Results[0].Device
				}
				for _, d := range cl.Status.Devices {
					if d.NetworkData != nil {
						seen.net = d.NetworkData
					}
				}
			}
		}
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			c.podsRun.Add(1)
			c.verify(p, seen)
			return
		case corev1.PodFailed:
			c.podsRun.Add(1)
			if code, msg := terminated(p); code == 3 {
				c.wrong(fmt.Sprintf("pod %s failed its check: %s", name, msg))
			} else {
				c.failedOther.Add(1)
				fmt.Printf("chaos: pod %s failed, not in its check (exit %d): %s %s\n", name, code, p.Status.Reason, msg)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.podsRun.Add(1)
	c.failedOther.Add(1)
	fmt.Printf("chaos: pod %s did not finish within %s of being scheduled\n", name, within)
}

func terminated(p *corev1.Pod) (int32, string) {
	for _, s := range p.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			return t.ExitCode, strings.TrimSpace(t.Message)
		}
	}
	return -1, "no terminated container: " + p.Status.Message
}

// claimSeen is the claim as read while its pod ran.
type claimSeen struct {
	device string
	net    *resourceapi.NetworkDeviceData
}

// verify compares what the pod saw with the allocated device and the
// claim's status, both read while the pod ran.
func (c *chaos) verify(p *corev1.Pod, seen claimSeen) {
	msg := ""
	for _, s := range p.Status.ContainerStatuses {
		if t := s.State.Terminated; t != nil {
			msg = t.Message
		}
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(msg) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		} else if len(fields) > 0 {
			fields["ips"] += " " + f
		}
	}
	mac, ips := fields["mac"], strings.Fields(fields["ips"])
	if mac == "" || len(ips) == 0 {
		c.wrong(fmt.Sprintf("pod %s succeeded without reporting its net1 (termination message %q)", p.Name, msg))
		return
	}
	if seen.device == "" {
		// Finished between two looks: nothing to compare with.
		c.missing.Add(1)
		c.podsOK.Add(1)
		return
	}
	if want := c.baseline[seen.device].MAC; want == "" || !strings.EqualFold(want, mac) {
		c.wrong(fmt.Sprintf("pod %s saw net1 with MAC %s, but its claim has device %s (MAC %s)", p.Name, mac, seen.device, want))
		return
	}
	if st := seen.net; st == nil {
		c.missing.Add(1)
	} else if !strings.EqualFold(st.HardwareAddress, mac) || !sameSet(st.IPs, ips) {
		c.wrong(fmt.Sprintf("pod %s saw MAC %s IPs %v; the claim's status says MAC %s IPs %v", p.Name, mac, ips, st.HardwareAddress, st.IPs))
		return
	}
	c.podsOK.Add(1)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// remove deletes the pod and its claim (retried while the API server is
// away); their disappearance is checked at the end.
func (c *chaos) remove(name string) {
	ctx := context.Background()
	_ = retry(ctx, 2*time.Minute, func() error {
		err := c.cs.CoreV1().Pods(c.o.namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	_ = retry(ctx, 2*time.Minute, func() error {
		err := c.cs.ResourceV1().ResourceClaims(c.o.namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

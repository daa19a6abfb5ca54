// Command chaos churns pods with VF claims on the harness cluster while it
// injects faults at seeded random moments, then checks that nothing
// leaked. test/cluster/chaos.sh (make chaos) brings the cluster and the
// driver up and runs it; see docs/reliability.md for the figures.
//
// N pod slots (more than the node has VFs, so pods queue for devices)
// each create a ResourceClaim and a pod, wait for the pod to finish,
// check it and delete both, for the run's duration. Each pod checks from
// inside that net1 is there with the claim's MTU and an address from the
// claim's IPAM range, fails loudly (exit 3) otherwise, and reports its
// MAC and addresses; the run compares them with the allocated device's
// MAC and the claim's status. Faults, one at a time, 5-15 s apart, each
// kind once per shuffled round: kill -9 of the driver's process, a rolling
// update of its DaemonSet, a restart of the runtime, a restart of kubelet,
// the API server stopped for 20 s, the checkpoint's file system full for
// 10-25 s. At the end, with everything deleted: every VF back on the host
// as it was (name, MAC, MTU, up, ifindex, driver binding), no IPAM
// allocation, CDI spec or attach marker, an empty checkpoint, and the
// driver's RSS not grown.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

type options struct {
	clusterDir, kubeconfig, hostRoot, stateDir, cdiDir, markerDir string
	image, namespace, runtime, results, command                   string
	pods                                                          int
	duration                                                      time.Duration
	seed                                                          uint64
}

// Fault kinds.
const (
	faultDriverKill    = "driver-kill"
	faultDriverRollout = "driver-rollout"
	faultRuntime       = "runtime-restart"
	faultKubelet       = "kubelet-restart"
	faultAPIServer     = "apiserver-stop"
	faultDiskFull      = "disk-full"
)

var faultKinds = []string{faultDriverKill, faultDriverRollout, faultRuntime, faultKubelet, faultAPIServer, faultDiskFull}

// Summary is the run's outcome; it is also the results file.
type Summary struct {
	Seed        uint64         `json:"seed"`
	Command     string         `json:"command"`
	Duration    string         `json:"duration"`
	Slots       int            `json:"slots"`
	VFs         int            `json:"vfs"`
	PodsRun     int64          `json:"podsRun"`
	PodsOK      int64          `json:"podsOK"`
	Faults      map[string]int `json:"faults"`
	Leaks       []string       `json:"leaks"`
	WrongDevice []string       `json:"wrongDevice"`
	// StatusMissing counts pods whose claim had no network status when
	// checked (informational: the status writer retries).
	StatusMissing int64 `json:"statusMissing"`
	// PodsFailedOther failed outside their check (admission, a kill) or
	// never finished.
	PodsFailedOther int64 `json:"podsFailedOther"`
	// PodsQueued were still waiting for a VF at the end (deleted, not
	// counted as run). Absent from results of runs before it was counted:
	// there a pod queued for more than 4 min counted as failed-other.
	PodsQueued  int64  `json:"podsQueued"`
	RSSStartKiB int64  `json:"rssStartKiB"`
	RSSEndKiB   int64  `json:"rssEndKiB"`
	RSSMaxKiB   int64  `json:"rssMaxKiB"`
	Finished    string `json:"finished"`
}

func main() {
	var o options
	flag.StringVar(&o.clusterDir, "cluster-dir", "", "the harness cluster folder (pids/, logs/)")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "admin kubeconfig")
	flag.StringVar(&o.hostRoot, "host-root", "", "the simulated node's fixture root (the driver's HOST_ROOT)")
	flag.StringVar(&o.stateDir, "state-dir", "", "the driver's state dir on the host (a small tmpfs)")
	flag.StringVar(&o.cdiDir, "cdi-dir", "", "the driver's CDI spec dir on the host")
	flag.StringVar(&o.markerDir, "marker-dir", "", "the attach marker dir on the host")
	flag.StringVar(&o.image, "image", "", "test pod image (busybox)")
	flag.StringVar(&o.namespace, "namespace", "chaos", "namespace of the churned pods")
	flag.StringVar(&o.runtime, "runtime", "containerd", "container runtime of the cluster (RUNTIME)")
	flag.StringVar(&o.results, "results", "", "write the summary as JSON here")
	flag.StringVar(&o.command, "command", "", "the command line that reproduces this run, for the results")
	flag.IntVar(&o.pods, "pods", 24, "pods kept in flight")
	flag.DurationVar(&o.duration, "duration", 3*time.Minute, "how long pods are started")
	flag.Uint64Var(&o.seed, "seed", 0, "seed of the fault schedule (0: from the clock)")
	flag.Parse()
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano()%1_000_000) + 1
	}
	fmt.Printf("chaos: seed %d (reproduce with CHAOS_SEED=%d), %d pods, %s\n", o.seed, o.seed, o.pods, o.duration)
	s, err := run(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if o.results != "" {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(o.results, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: write results:", err)
			os.Exit(1)
		}
	}
	for _, l := range s.Leaks {
		fmt.Println("LEAK:", l)
	}
	for _, w := range s.WrongDevice {
		fmt.Println("WRONG DEVICE:", w)
	}
	fmt.Println(s.Line())
	if len(s.Leaks) > 0 || len(s.WrongDevice) > 0 || s.PodsOK == 0 {
		os.Exit(1)
	}
}

// Line is the one summary line.
func (s *Summary) Line() string {
	var fs []string
	for _, k := range faultKinds {
		fs = append(fs, fmt.Sprintf("%s=%d", k, s.Faults[k]))
	}
	return fmt.Sprintf("CHAOS seed=%d duration=%s pods-run=%d pods-ok=%d pods-failed-other=%d faults[%s] leaks=%d wrong-device=%d rss-start=%.1fMiB rss-end=%.1fMiB rss-max=%.1fMiB",
		s.Seed, s.Duration, s.PodsRun, s.PodsOK, s.PodsFailedOther, strings.Join(fs, " "), len(s.Leaks), len(s.WrongDevice),
		float64(s.RSSStartKiB)/1024, float64(s.RSSEndKiB)/1024, float64(s.RSSMaxKiB)/1024)
}

// vfState is what must be as before at the end.
type vfState struct {
	Device, IfName, MAC, Driver string
	MTU, IfIndex                int
	Up                          bool
}

func hostVFs(ctx context.Context, hostRoot string) (map[string]vfState, error) {
	nl, err := nlink.NewHost()
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	inv, err := inventory.Scan(ctx, inventory.Options{Root: hostRoot, Netlink: nl})
	if err != nil {
		return nil, fmt.Errorf("scan the simulated node: %w", err)
	}
	out := map[string]vfState{}
	for _, d := range inv.Devices {
		if d.Kind != inventory.KindVF {
			continue
		}
		st := vfState{Device: d.Name, IfName: d.IfName, Driver: d.Driver}
		if l, err := netlink.LinkByName(d.IfName); err == nil {
			a := l.Attrs()
			st.MAC, st.MTU, st.IfIndex, st.Up = a.HardwareAddr.String(), a.MTU, a.Index, a.Flags&net.FlagUp != 0
		}
		out[d.Name] = st
	}
	return out, nil
}

type chaos struct {
	o        options
	cs       *kubernetes.Clientset
	baseline map[string]vfState
	sum      Summary
	mu       sync.Mutex
	podsRun  atomic.Int64
	podsOK   atomic.Int64
	missing  atomic.Int64
	// failedOther counts pods that failed outside their check (not
	// admitted, killed) or never finished.
	failedOther atomic.Int64
	// queued counts pods still waiting for a VF when the run ended.
	queued atomic.Int64
}

func run(ctx context.Context, o options) (*Summary, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.Timeout = 15 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	base, err := hostVFs(ctx, o.hostRoot)
	if err != nil {
		return nil, err
	}
	c := &chaos{o: o, cs: cs, baseline: base}
	c.sum = Summary{Seed: o.seed, Command: o.command, Duration: o.duration.String(), Slots: o.pods, VFs: len(base), Faults: map[string]int{}}
	if err := c.setup(ctx); err != nil {
		return nil, err
	}
	rss := &rssSampler{}
	time.Sleep(3 * time.Second)
	c.sum.RSSStartKiB = rss.sample()

	runCtx, stop := context.WithTimeout(ctx, o.duration)
	defer stop()
	var wg sync.WaitGroup
	for i := 0; i < o.pods; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.slot(runCtx, i) }()
	}
	faultsDone := make(chan struct{})
	go func() { defer close(faultsDone); c.injectFaults(runCtx) }()
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				rss.sample()
			}
		}
	}()
	<-faultsDone
	wg.Wait()
	<-samplerDone
	fmt.Printf("chaos: churn over (%d pods run); deleting everything and checking for leaks\n", c.podsRun.Load())
	c.finish(ctx)
	time.Sleep(5 * time.Second)
	c.sum.RSSEndKiB = rss.sample()
	c.sum.RSSMaxKiB = rss.max
	if c.sum.RSSStartKiB > 0 && c.sum.RSSEndKiB > c.sum.RSSStartKiB*3/2+8*1024 {
		c.leak(fmt.Sprintf("driver RSS grew from %d KiB to %d KiB", c.sum.RSSStartKiB, c.sum.RSSEndKiB))
	}
	c.sum.PodsRun, c.sum.PodsOK, c.sum.StatusMissing = c.podsRun.Load(), c.podsOK.Load(), c.missing.Load()
	c.sum.PodsFailedOther, c.sum.PodsQueued = c.failedOther.Load(), c.queued.Load()
	c.sum.Finished = time.Now().UTC().Format(time.RFC3339)
	sort.Strings(c.sum.Leaks)
	return &c.sum, nil
}

func (c *chaos) leak(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum.Leaks = append(c.sum.Leaks, s)
}

func (c *chaos) wrong(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Println("chaos: WRONG DEVICE:", s)
	c.sum.WrongDevice = append(c.sum.WrongDevice, s)
}

func (c *chaos) setup(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.o.namespace}}
	if _, err := c.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", c.o.namespace, err)
	}
	// The default service account must exist before pods can be created.
	return retry(ctx, 60*time.Second, func() error {
		_, err := c.cs.CoreV1().ServiceAccounts(c.o.namespace).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// retry calls f until it succeeds or within is over.
func retry(ctx context.Context, within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkScript runs in each pod: net1 with the claim's MTU and an address
// of the claim's range, else exit 3 with the reason; on success it
// reports MAC and addresses in the termination message.
const checkScript = `fail() { echo "CHAOS-WRONG-DEVICE: $*" | tee /dev/termination-log >&2; exit 3; }
l=$(ip -o link show net1 2>&1) || fail "no net1 in the pod: $l"
case "$l" in *" mtu $MTU "*) ;; *) fail "net1 MTU is not the claim's $MTU: $l" ;; esac
case "$l" in *"state UP"*|*",UP"*|*"<UP"*) ;; *) fail "net1 is not up: $l" ;; esac
mac=$(echo "$l" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
[ -n "$mac" ] || fail "net1 has no MAC: $l"
ips=$(ip -o -4 addr show dev net1 | awk '{print $4}' | tr '\n' ' ')
case "$ips" in 10.56.*) ;; *) fail "net1 has $ips, not an address of the claim's range 10.56.0.0/16" ;; esac
echo "mac=$mac ips=$ips" > /dev/termination-log
echo "CHAOS-OK mac=$mac mtu=$MTU ips=$ips"
sleep "$HOLD"
`

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

// finish deletes what is left and checks the node.
func (c *chaos) finish(ctx context.Context) {
	// Pods still queued or running are deleted too.
	_ = retry(ctx, 2*time.Minute, func() error {
		return c.cs.CoreV1().Pods(c.o.namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=chaos"})
	})
	_ = retry(ctx, 2*time.Minute, func() error {
		return c.cs.ResourceV1().ResourceClaims(c.o.namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=chaos"})
	})
	// Everything must go within 3 minutes (the driver's lost-device
	// timeout is 2): what stays is stuck.
	var pods, claims []string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		pods, claims = nil, nil
		if l, err := c.cs.CoreV1().Pods(c.o.namespace).List(ctx, metav1.ListOptions{}); err == nil {
			for _, p := range l.Items {
				pods = append(pods, p.Name)
			}
		}
		if l, err := c.cs.ResourceV1().ResourceClaims(c.o.namespace).List(ctx, metav1.ListOptions{}); err == nil {
			for _, cl := range l.Items {
				claims = append(claims, cl.Name)
			}
		}
		if (len(pods) == 0 && len(claims) == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, p := range pods {
		c.leak("pod " + p + " still there 3 min after its deletion")
	}
	for _, cl := range claims {
		c.leak("claim " + cl + " still there 3 min after its deletion")
	}
	// The node: give the driver a moment to finish releases in flight.
	var leaks []string
	for range 30 {
		leaks = c.nodeLeaks(ctx)
		if len(leaks) == 0 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, l := range leaks {
		c.leak(l)
	}
}

func (c *chaos) nodeLeaks(ctx context.Context) []string {
	var out []string
	now, err := hostVFs(ctx, c.o.hostRoot)
	if err != nil {
		return []string{err.Error()}
	}
	for dev, was := range c.baseline {
		if is := now[dev]; is != was {
			out = append(out, fmt.Sprintf("VF %s not as before: was %+v, is %+v", dev, was, is))
		}
	}
	_ = filepath.WalkDir(filepath.Join(c.o.stateDir, "ipam"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && net.ParseIP(d.Name()) != nil {
			out = append(out, "IPAM allocation "+p)
		}
		return nil
	})
	if m, _ := filepath.Glob(filepath.Join(c.o.cdiDir, "*")); len(m) > 0 {
		for _, f := range m {
			out = append(out, "CDI spec "+f)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(c.o.markerDir, "*")); len(m) > 0 {
		for _, f := range m {
			out = append(out, "attach marker "+f)
		}
	}
	store, _, err := driver.NewFileStore(c.o.stateDir, c.o.hostRoot)
	if err != nil {
		return append(out, "open checkpoint: "+err.Error())
	}
	cp, err := store.Load()
	switch {
	case err != nil:
		out = append(out, "read checkpoint: "+err.Error())
	case cp != nil:
		for uid, r := range cp.Claims {
			out = append(out, fmt.Sprintf("checkpoint record of claim %s/%s (%s)", r.Namespace, r.Name, uid))
		}
		for dev := range cp.Lost {
			out = append(out, "device "+dev+" recorded lost")
		}
	}
	return out
}

// ---------------------------------------------------------------- faults

func (c *chaos) injectFaults(ctx context.Context) {
	rng := rand.New(rand.NewPCG(c.o.seed, 0))
	var round []string
	for {
		gap := 5*time.Second + time.Duration(rng.IntN(10_000))*time.Millisecond
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		if len(round) == 0 {
			round = append([]string(nil), faultKinds...)
			rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		}
		kind := round[0]
		round = round[1:]
		hold := 10*time.Second + time.Duration(rng.IntN(15_000))*time.Millisecond
		start := time.Now()
		err := c.fault(ctx, kind, hold)
		c.mu.Lock()
		c.sum.Faults[kind]++
		c.mu.Unlock()
		if err != nil {
			fmt.Printf("chaos: %s %s: %v\n", time.Now().Format("15:04:05"), kind, err)
		} else {
			fmt.Printf("chaos: %s %s done in %s\n", time.Now().Format("15:04:05"), kind, time.Since(start).Round(100*time.Millisecond))
		}
	}
}

func (c *chaos) fault(ctx context.Context, kind string, hold time.Duration) error {
	switch kind {
	case faultDriverKill:
		pid := driverPID()
		if pid == 0 {
			return errors.New("no driver process found")
		}
		return syscall.Kill(pid, syscall.SIGKILL)
	case faultDriverRollout:
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"chaos.sriov.dra.dev/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
		return retry(ctx, 30*time.Second, func() error {
			_, err := c.cs.AppsV1().DaemonSets("sriov-dra").Patch(context.Background(), "sriov-dra", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		})
	case faultRuntime:
		return c.restartRuntime()
	case faultKubelet:
		return c.restart("kubelet", 0)
	case faultAPIServer:
		return c.restart("kube-apiserver", 20*time.Second)
	case faultDiskFull:
		return fillFor(c.o.stateDir, hold)
	}
	return fmt.Errorf("unknown fault %q", kind)
}

// restartRuntime restarts the cluster's container runtime, keyed on
// RUNTIME: each runtime the harness can run names its component here.
func (c *chaos) restartRuntime() error {
	switch c.o.runtime {
	case "containerd", "":
		return c.restart("containerd", 0)
	case "crio":
		return c.restart("crio", 0)
	}
	return fmt.Errorf("no restart for runtime %q (RUNTIME): add its component to restartRuntime", c.o.runtime)
}

// restart stops a harness component (by the PID cluster.sh recorded),
// waits down for away, and starts it again with the same command line,
// environment-free of changes, logging where it logged.
func (c *chaos) restart(name string, away time.Duration) error {
	pidFile := filepath.Join(c.o.clusterDir, "pids", name+".pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: pid file %s: %w", name, pidFile, err)
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Errorf("%s (pid %d) not running: %w", name, pid, err)
	}
	argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 150 && alive(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 50 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(away)
	logf, err := os.OpenFile(filepath.Join(c.o.clusterDir, "logs", name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s again: %w", name, err)
	}
	// Not waited for: it runs on after this program, as cluster.sh's do.
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	_ = cmd.Process.Release()
	if name == "kube-apiserver" {
		return retry(context.Background(), 90*time.Second, func() error {
			_, err := c.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
			return err
		})
	}
	return nil
}

func alive(pid int) bool {
	// A zombie (our own child, not reaped) counts as gone.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 {
		return s[i+2] != 'Z'
	}
	return true
}

// fillFor fills the file system of dir until it has no space, keeps it
// full for hold, then frees the space.
func fillFor(dir string, hold time.Duration) error {
	p := filepath.Join(dir, "chaos-fill")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(p)
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			f.Close()
			return fmt.Errorf("fill %s: %w", dir, err)
		}
	}
	// Small writes may still fit a partial block.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	f.Close()
	time.Sleep(hold)
	return nil
}

// ---------------------------------------------------------------- RSS

type rssSampler struct{ max int64 }

// sample returns the driver process's RSS in KiB (0 when none runs).
func (r *rssSampler) sample() int64 {
	pid := driverPID()
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if kib > r.max {
				r.max = kib
			}
			return kib
		}
	}
	return 0
}

// driverPID finds the driver container's process: `sriov-dra driver` in
// a kubelet pod cgroup.
func driverPID() int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(argv) < 2 || filepath.Base(argv[0]) != "sriov-dra" || argv[1] != "driver" {
			continue
		}
		if cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil && strings.Contains(string(cg), "kubepods") {
			return pid
		}
	}
	return 0
}

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
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sriov-dra/sriov-dra/test/cluster/chaos/report"
)

type options struct {
	clusterDir, kubeconfig, hostRoot, stateDir, cdiDir, markerDir string
	image, namespace, runtime, results, command, commit           string
	pods                                                          int
	duration                                                      time.Duration
	seed                                                          uint64
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
	flag.StringVar(&o.commit, "commit", "", "the source commit the driver was built from, for the results")
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

type chaos struct {
	o        options
	cs       *kubernetes.Clientset
	baseline map[string]vfState
	sum      report.Summary
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

func run(ctx context.Context, o options) (*report.Summary, error) {
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
	c.sum = report.Summary{Seed: o.seed, Command: o.command, Commit: o.commit, Duration: o.duration.String(), Slots: o.pods, VFs: len(base), Faults: map[string]int{}}
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

package driver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// metricValue reads one gauge or counter (with the given label pairs)
// from reg; a series not there reads 0.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue series
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

const ipamVLAN = `{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":9,"ipam":{"type":"host-local"}}`

// rebootWithFailingRelease prepares u1 and u2 (each a VF with VF
// settings and IPAM, u1's netdev attached to its pod), then "reboots"
// with u1's IPAM DEL failing: the daemon must start anyway.
func rebootWithFailingRelease(t *testing.T) (e *env, reg *prometheus.Registry, c1, c2 *resourceapi.ResourceClaim) {
	t.Helper()
	e = newEnv(t, sysfstest.Standard())
	dev1, dev2 := vfName(e, 1, 0), vfName(e, 1, 1)
	c1 = newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev1)}, opaque(ipamVLAN))
	c2 = newClaim("u2", "p2", []resourceapi.DeviceRequestAllocationResult{result("eth", dev2)}, opaque(ipamVLAN))
	for _, c := range []*resourceapi.ResourceClaim{c1, c2} {
		if err := prepare(t, e.d, c)[c.UID].Err; err != nil {
			t.Fatal(err)
		}
	}
	if err := e.d.State().Attaching("u1", dev1, "/proc/1/ns/net", netattach.Original{IfName: "ens2f0v0"}); err != nil {
		t.Fatal(err)
	}
	if err := e.d.State().Attached("u1", dev1, false); err != nil {
		t.Fatal(err)
	}
	e.j.take()
	e.j.failOn("ipam.Release u1-", errInjected)
	e.bootID = "boot-2"
	reg = prometheus.NewRegistry()
	cfg := e.config()
	cfg.Metrics = NewMetrics(reg)
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("the daemon refused to start because one claim's release failed: %v", err)
	}
	e.d = d
	return e, reg, c1, c2
}

// One claim's release failing after a reboot: the others are released,
// the daemon starts, the failing record stays pending and marked, holds
// no device, is not offered to NRI, and nothing is restored onto the
// fresh VFs.
func TestStaleReleaseFailureDoesNotStopStart(t *testing.T) {
	e, reg, _, _ := rebootWithFailingRelease(t)
	dev1 := vfName(e, 1, 0)
	got := e.j.take()
	for _, s := range got {
		if strings.HasPrefix(s, "host.") {
			t.Errorf("a stale record touched the host: %s", s)
		}
	}
	if !slices.Contains(got, "ipam.Release u2-"+vfName(e, 1, 1)) || !slices.Contains(got, "cdi.Remove u1") {
		t.Errorf("u2 not released or u1's CDI spec not removed: %v", got)
	}
	if _, ok := e.d.State().Claim("u2"); ok {
		t.Error("u2 kept although its release succeeded")
	}
	rec, ok := e.d.State().Claim("u1")
	if !ok || rec.Stale == nil {
		t.Fatalf("u1: %+v, want kept and marked stale", rec)
	}
	if rec.Stale.BootID != "boot-1" || rec.Stale.Attempts != 1 || !strings.Contains(rec.Stale.LastError, "release IPAM allocation") || !strings.Contains(rec.Stale.LastError, dev1) {
		t.Errorf("u1 stale mark %+v: want boot-1, 1 attempt, the step and the device", rec.Stale)
	}
	if e.d.State().BootID() != "boot-2" {
		t.Errorf("checkpoint boot ID %s, want boot-2", e.d.State().BootID())
	}
	if owner := e.d.State().Owner(dev1); owner != "" {
		t.Errorf("the fresh VF %s is held by stale claim %s", dev1, owner)
	}
	if pds := e.d.State().ForPod("pod-uid-p1"); len(pds) != 0 || slices.Contains(e.d.State().Pods(), "pod-uid-p1") {
		t.Errorf("stale record offered to NRI: %+v", pds)
	}
	if v := metricValue(t, reg, "sriov_dra_stale_releases_pending"); v != 1 {
		t.Errorf("pending releases gauge %v, want 1", v)
	}
	if v := metricValue(t, reg, "sriov_dra_stale_release_failures_total", "step", "release IPAM allocation"); v != 1 {
		t.Errorf("failures counter %v, want 1", v)
	}

	// A restart in the same boot keeps it pending and stale: it is never
	// taken for a record of this boot.
	e.restart()
	if rec, ok := e.d.State().Claim("u1"); !ok || rec.Stale == nil || rec.Stale.Attempts != 2 {
		t.Errorf("after a restart in the same boot: %+v", rec)
	}
}

// The background retry releases the record once the IPAM plugin works
// again; the gauge goes to 0.
func TestStaleReleaseRetriedUntilItSucceeds(t *testing.T) {
	e, reg, _, _ := rebootWithFailingRelease(t)
	e.d.cfg.ReleaseBackoff = wait.Backoff{Duration: 10 * time.Millisecond, Factor: 2, Steps: 3, Cap: 40 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.d.Run(ctx, &countingPublisher{})
	}()
	defer func() { cancel(); <-done }()

	// Still failing: retried, counted, kept.
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return metricValue(t, reg, "sriov_dra_stale_release_failures_total", "step", "release IPAM allocation") >= 3, nil
	}); err != nil {
		t.Fatalf("no retries: %v", err)
	}
	e.j.clearFail()
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		_, held := e.d.State().Claim("u1")
		return !held, nil
	}); err != nil {
		t.Fatalf("record kept after the IPAM plugin recovered: %v", err)
	}
	if e.ipam.allocated() != 0 {
		t.Errorf("%d IPAM allocations left", e.ipam.allocated())
	}
	// The gauge follows the record (set after it is dropped).
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return metricValue(t, reg, "sriov_dra_stale_releases_pending") == 0, nil
	}); err != nil {
		t.Errorf("pending releases gauge %v, want 0", metricValue(t, reg, "sriov_dra_stale_releases_pending"))
	}
	for _, s := range e.j.take() {
		if strings.HasPrefix(s, "host.Restore") || strings.HasPrefix(s, "host.Detach") {
			t.Errorf("the retry restored onto a fresh VF: %s", s)
		}
	}
}

// kubelet's Unprepare of a stale claim releases and never restores; a
// Prepare of the same claim (its pod survived the reboot) releases the
// old allocation first and fails, naming why, while that fails.
func TestStaleClaimUnprepareAndPrepareAgain(t *testing.T) {
	t.Run("unprepare", func(t *testing.T) {
		e, _, c1, _ := rebootWithFailingRelease(t)
		e.j.take()
		if err := unprepare(t, e.d, c1)["u1"]; err == nil || !strings.Contains(err.Error(), "release IPAM allocation") {
			t.Errorf("Unprepare with IPAM DEL failing: %v", err)
		}
		if rec, ok := e.d.State().Claim("u1"); !ok || rec.Stale == nil || rec.Stale.Attempts != 2 {
			t.Errorf("after a failed Unprepare: %+v, want still stale with 2 failed attempts", rec)
		}
		e.j.clearFail()
		if err := unprepare(t, e.d, c1)["u1"]; err != nil {
			t.Fatal(err)
		}
		for _, s := range e.j.take() {
			if strings.HasPrefix(s, "host.") {
				t.Errorf("Unprepare of a stale claim touched the host: %s", s)
			}
		}
		if _, ok := e.d.State().Claim("u1"); ok {
			t.Error("record kept")
		}
	})
	t.Run("prepare again", func(t *testing.T) {
		e, _, c1, _ := rebootWithFailingRelease(t)
		e.j.take()
		err := prepare(t, e.d, c1)["u1"].Err
		if err == nil || !strings.Contains(err.Error(), "before the node rebooted") {
			t.Fatalf("Prepare while the old allocation cannot be released: %v", err)
		}
		if got := e.j.take(); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "host.") }) {
			t.Errorf("Prepare went on: %v", got)
		}
		e.j.clearFail()
		if err := prepare(t, e.d, c1)["u1"].Err; err != nil {
			t.Fatal(err)
		}
		got := e.j.take()
		rel := slices.Index(got, "ipam.Release u1-"+vfName(e, 1, 0))
		alloc := slices.IndexFunc(got, func(s string) bool { return strings.HasPrefix(s, "ipam.Allocate") })
		if rel < 0 || alloc < rel {
			t.Errorf("old allocation not released before the new one: %v", got)
		}
		if rec, ok := e.d.State().Claim("u1"); !ok || rec.Stale != nil || rec.Phase != PhasePrepareCompleted {
			t.Errorf("record after the new Prepare: %+v", rec)
		}
	})
	t.Run("device free for another claim", func(t *testing.T) {
		e, _, _, _ := rebootWithFailingRelease(t)
		c3 := newClaim("u3", "p3", []resourceapi.DeviceRequestAllocationResult{result("eth", vfName(e, 1, 0))})
		if err := prepare(t, e.d, c3)["u3"].Err; err != nil {
			t.Fatalf("a VF whose stale record is pending cannot be prepared: %v", err)
		}
	})
}

// The admin's drop request (written by sriov-dra checkpoint drop under
// the file lock) survives the daemon's saves until the daemon drops the
// record itself, undoing nothing; a request whose claim is already gone
// is cleared.
func TestDropRequests(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	root := bootRoot(t, "boot-1")
	e := newEnv(t, sysfstest.Standard())
	store, bootID, err := NewFileStore(dir, root)
	if err != nil {
		t.Fatal(err)
	}
	e.store, e.bootID = store, bootID
	e.restart()
	c1 := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", vfName(e, 1, 0))}, opaque(ipamVLAN))
	c2 := newClaim("u2", "p2", []resourceapi.DeviceRequestAllocationResult{result("eth", vfName(e, 1, 1))})
	if err := prepare(t, e.d, c1)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	if err := RequestDrop(dir, root, DropRequest{ClaimUID: "nope"}); err == nil || !strings.Contains(err.Error(), "no record") {
		t.Errorf("request for an unknown claim: %v", err)
	}
	if err := RequestDrop(dir, root, DropRequest{ClaimUID: "u1", By: "test"}); err != nil {
		t.Fatal(err)
	}
	// A save of the daemon (another claim prepared) keeps the request.
	if err := prepare(t, e.d, c2)["u2"].Err; err != nil {
		t.Fatal(err)
	}
	cp, _, err := ReadCheckpoint(dir, root)
	if err != nil {
		t.Fatal(err)
	}
	if len(cp.DropRequests) != 1 || cp.DropRequests[0].ClaimUID != "u1" || cp.Claims["u2"] == nil {
		t.Fatalf("after a daemon save: requests %+v, claims %d", cp.DropRequests, len(cp.Claims))
	}
	e.j.take()
	e.d.applyDropRequests(context.Background())
	for _, s := range e.j.take() {
		if !strings.HasPrefix(s, "store.") {
			t.Errorf("drop undid something: %s", s)
		}
	}
	cp, _, err = ReadCheckpoint(dir, root)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Claims["u1"] != nil || cp.Claims["u2"] == nil || len(cp.DropRequests) != 0 {
		t.Errorf("after the drop: claims %v, requests %+v", slices.Sorted(func(yield func(string) bool) {
			for k := range cp.Claims {
				if !yield(k) {
					return
				}
			}
		}), cp.DropRequests)
	}
	if e.d.State().Owner(vfName(e, 1, 0)) != "" {
		t.Error("dropped claim still holds its device")
	}

	// Asked while the daemon is down: applied when it starts. A request
	// for a claim that went meanwhile is cleared.
	if err := RequestDrop(dir, root, DropRequest{ClaimUID: "u2"}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	if _, ok := e.d.State().Claim("u2"); ok {
		t.Error("request not applied at start")
	}
	if cp, _, _ := ReadCheckpoint(dir, root); len(cp.DropRequests) != 0 {
		t.Errorf("requests left: %+v", cp.DropRequests)
	}
}

// The garbage collection at start removes exactly the CDI specs and
// attach markers this driver wrote that no record refers to: never a
// file of a record, never a file it did not write.
func TestCollectOrphansAtStart(t *testing.T) {
	const (
		held   = "c0ffee00-0000-4000-8000-000000000001"
		orphan = "c0ffee00-0000-4000-8000-000000000002"
	)
	ctx := context.Background()
	e := newEnv(t, sysfstest.Standard())
	cdiDir, markDir := filepath.Join(t.TempDir(), "cdi"), filepath.Join(t.TempDir(), "attached")
	w := cdi.New(cdiDir, t.TempDir())
	marks, err := attachmark.New(markDir, "")
	if err != nil {
		t.Fatal(err)
	}
	e.marks = marks
	cfg := e.config()
	cfg.CDI = w
	d, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev := vfName(e, 1, 0)
	if err := prepare(t, d, newClaim(held, "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)}))[held].Err; err != nil {
		t.Fatal(err)
	}
	write := func(p, content string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustNil := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Ours, with a record: the held claim's spec and marker.
	mustNil(marks.Create(held, dev))
	// Ours, without a record: an orphaned spec and markers (one of the
	// held claim but for a device it does not have).
	_, err = w.Write(ctx, orphan, []cdi.Device{{Request: "eth", Name: dev}})
	mustNil(err)
	mustNil(marks.Create(orphan, dev))
	mustNil(marks.Create(held, vfName(e, 1, 1)))
	// Not ours.
	foreignSpec := filepath.Join(cdiDir, "example.com-gpu_x.json")
	write(foreignSpec, `{"cdiVersion":"0.6.0","kind":"example.com/gpu","devices":[{"name":"x","containerEdits":{"env":["A=1"]}}]}`)
	nameOnly := w.SpecPath("c0ffee00-0000-4000-8000-000000000003")
	write(nameOnly, `{"cdiVersion":"0.6.0","kind":"example.com/gpu","devices":[{"name":"c0ffee00-0000-4000-8000-000000000003-x"}]}`)
	otherNames := w.SpecPath("c0ffee00-0000-4000-8000-000000000004")
	write(otherNames, `{"cdiVersion":"0.6.0","kind":"sriov.dra.dev/vf","devices":[{"name":"someone-else"}]}`)
	broken := w.SpecPath("c0ffee00-0000-4000-8000-000000000005")
	write(broken, `{"kind":"sriov.dra.dev/vf",`)
	tmp := filepath.Join(cdiDir, ".sriov.dra.dev-vf_"+orphan+".json.tmp-1")
	write(tmp, "")
	readme := filepath.Join(markDir, "README")
	write(readme, "hands off")
	notEmpty := filepath.Join(markDir, orphan+"-"+vfName(e, 1, 2))
	write(notEmpty, "data")
	notUUID := filepath.Join(markDir, "u1-"+dev)
	write(notUUID, "")
	asDir := filepath.Join(markDir, orphan+"-"+vfName(e, 1, 3))
	mustNil(os.Mkdir(asDir, 0o755))

	// The restart with the held claim recorded.
	if _, err := New(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	exists := func(p string) bool { _, err := os.Lstat(p); return err == nil }
	heldMark, _ := marks.Path(held, dev)
	orphanMark, _ := marks.Path(orphan, dev)
	strayMark, _ := marks.Path(held, vfName(e, 1, 1))
	for _, tc := range []struct {
		path string
		want bool
	}{
		{w.SpecPath(held), true}, {heldMark, true},
		{w.SpecPath(orphan), false}, {orphanMark, false}, {strayMark, false},
		{foreignSpec, true}, {nameOnly, true}, {otherNames, true}, {broken, true}, {tmp, true},
		{readme, true}, {notEmpty, true}, {notUUID, true}, {asDir, true},
	} {
		if got := exists(tc.path); got != tc.want {
			t.Errorf("%s: there %v, want %v", tc.path, got, tc.want)
		}
	}
}

// hangingIPAM's DEL of one claim hangs until its context ends, like a
// plugin that never answers.
type hangingIPAM struct {
	*fakeIPAM
	claim string
}

func (h *hangingIPAM) Release(ctx context.Context, res *ipam.Result) error {
	if strings.HasPrefix(res.ContainerID, h.claim+"-") {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.fakeIPAM.Release(ctx, res)
}

// A DEL that hangs holds neither the start nor the other claims: the
// attempt is bounded, the record stays pending, the other claim goes.
func TestStaleReleaseHangingDoesNotHoldStart(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	for i, uid := range []string{"u1", "u2"} {
		c := newClaim(uid, uid, []resourceapi.DeviceRequestAllocationResult{result("eth", vfName(e, 1, i))}, opaque(ipamVLAN))
		if err := prepare(t, e.d, c)[c.UID].Err; err != nil {
			t.Fatal(err)
		}
	}
	cfg := e.config()
	cfg.BootID = "boot-2"
	cfg.IPAM = &hangingIPAM{fakeIPAM: e.ipam, claim: "u1"}
	cfg.ReleaseTimeout = 300 * time.Millisecond
	start := time.Now()
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("start took %s with a hanging IPAM DEL", took)
	}
	if rec, ok := d.State().Claim("u1"); !ok || rec.Stale == nil || !strings.Contains(rec.Stale.LastError, "deadline") {
		t.Errorf("u1 after a hanging DEL: %+v", rec)
	}
	if _, ok := d.State().Claim("u2"); ok {
		t.Error("u2 not released")
	}
}

package reliability

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sriov-dra/sriov-dra/driver"
)

// vfGoneForGood: the VF is removed while it is in the pod (here the veth
// dies with its netns, so nothing comes back to the host). The pod's
// deletion must not hang forever: Unprepare fails, naming the device, for
// the lost-device timeout only, then releases everything else (IPAM
// allocation, CDI spec, attach marker, record), posts a DeviceLost event
// on the claim, and the device is refused by Prepare, also when a link
// under its name but without its identity appears.
func vfGoneForGood(t *testing.T) {
	const name = "VF removed while in the pod (its netns dies, nothing comes back to the host)"
	n := newNode(t, 1)
	n.LostTimeout = 2 * time.Second
	ctx := logCtx(t)
	c := n.claim(0, "")
	again := n.claim(0, "")
	again.UID, again.Name = "c0ffee00-0000-4000-8000-000000000a00", "net-0-again"
	cs := newAPI(c, again)
	dm, err := startDaemon(t, n, cs)
	if err != nil {
		t.Fatal(err)
	}
	run := func() (string, error) {
		if msg, _, err := dm.prepare(ctx, c); err != nil || msg != "" {
			return "", fmt.Errorf("prepare: %v %s", err, msg)
		}
		pod := n.sandbox(0)
		if err := dm.plugin.RunPodSandbox(ctx, pod); err != nil {
			return "", err
		}
		dm.checkInPod(t, 0)
		// The VF goes (hot-unplug): the link is deleted in the pod, which
		// takes its host peer along, and the netns is deleted. (Deleting
		// the netns alone would not do: the driver holds a pod's netns
		// open until its devices are detached, for CRI-O's teardown order.)
		if err := deleteLinkIn(n.netnsPath(0), "net1"); err != nil {
			return "", fmt.Errorf("unplug the VF: %w", err)
		}
		if err := netns.DeleteNamed(n.netnsName(0)); err != nil {
			return "", fmt.Errorf("delete netns: %w", err)
		}
		peer := n.vfName(0) + "p"
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := netlink.LinkByName(peer); err != nil {
				break
			}
			if time.Now().After(deadline) {
				return "", errors.New("the VF's veth outlived its netns")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := dm.plugin.StopPodSandbox(ctx, pod); err != nil {
			return "", err
		}
		if err := dm.plugin.RemovePodSandbox(ctx, pod); err != nil {
			return "", err
		}
		start := time.Now()
		first, err := dm.unprepare(ctx, c)
		if err != nil {
			return "", err
		}
		if !strings.Contains(first, n.device(0)) || !strings.Contains(first, "recorded as lost") {
			return "", fmt.Errorf("first Unprepare answered %q, want an error naming the device and the lost-device release", first)
		}
		var took time.Duration
		for {
			msg, err := dm.unprepare(ctx, c)
			if err != nil {
				return "", err
			}
			if msg == "" {
				took = time.Since(start)
				break
			}
			if time.Since(start) > n.LostTimeout+10*time.Second {
				return "", fmt.Errorf("Unprepare still failing %s after the first: %s", time.Since(start).Round(time.Second), msg)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if took < n.LostTimeout-200*time.Millisecond {
			return "", fmt.Errorf("released after %s, before the %s timeout", took, n.LostTimeout)
		}
		var errs []error
		for _, l := range n.leftovers(t) {
			errs = append(errs, errors.New(l+" left"))
		}
		if cl := dm.d.State().Claims(); len(cl) != 0 {
			errs = append(errs, fmt.Errorf("checkpoint still has %d claims", len(cl)))
		}
		if _, lost := dm.d.State().Lost(n.device(0)); !lost {
			errs = append(errs, errors.New("the device is not recorded lost"))
		}
		if !lostEvent(ctx, dm, n.device(0)) {
			errs = append(errs, errors.New("no DeviceLost event on the claim"))
		}
		if msg, _, err := dm.prepare(ctx, again); err != nil || !strings.Contains(msg, "lost") {
			errs = append(errs, fmt.Errorf("Prepare of the lost device: %v %q, want a refusal", err, msg))
		}
		// A link under the VF's name appears, with another host peer (not
		// the device's identity): still lost.
		makeVeth(t, n.vfName(0), n.vf(0).MAC)
		dm.d.TriggerRescan()
		time.Sleep(500 * time.Millisecond)
		if msg, _, err := dm.prepare(ctx, again); err != nil || !strings.Contains(msg, "lost") {
			errs = append(errs, fmt.Errorf("Prepare after a look-alike link appeared: %v %q, want a refusal", err, msg))
		}
		if err := errors.Join(errs...); err != nil {
			return "", err
		}
		t.Logf("released %s after the first Unprepare", took)
		return fmt.Sprintf("Unprepare fails naming the device for the %s lost-device timeout, then releases IPAM, CDI spec, attach marker and record; DeviceLost event on the claim; Prepare refuses the device, also after a link with its name but not its identity appears", n.LostTimeout), nil
	}
	result, err := run()
	if err != nil {
		t.Error(err)
		result = "FAIL: " + firstLine(err)
	}
	results.add("runtime", "9"+name, name, result)
}

// lostEvent waits for the DeviceLost event naming device.
func lostEvent(ctx context.Context, dm *daemon, device string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range dm.api.List("events.k8s.io", "events", "") {
			if e["reason"] == "DeviceLost" && e["type"] == "Warning" && strings.Contains(fmt.Sprint(e["note"]), device) {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

var _ = driver.DefaultLostDeviceTimeout

// deleteLinkIn deletes the link name in the netns at path.
func deleteLinkIn(path, name string) error {
	h, err := handleIn(path)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkDel(l)
}

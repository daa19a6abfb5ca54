// The end of a run: everything deleted, then the node compared with the
// state before the churn (VFs, IPAM, CDI specs, markers, checkpoint).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

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

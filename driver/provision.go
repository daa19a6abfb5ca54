package driver

import (
	"context"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/vfprov"
)

// provisioner is the driver's memory of the VF provisioning: what it last
// said about each PF, so that a waiting change is logged and posted as an
// event once, not at every poll.
type provisioner struct {
	said   map[string]string // PF PCI address -> last pending/error message
	badCfg string            // last config error reported
}

// preparedOn returns the recorded devices that are
// the PF itself or one of its VFs, by the record's PCI address, the PF it
// recorded for the VF, or the VFs sysfs lists for the PF. Records of an
// earlier boot hold no device.
func (s *State) preparedOn(pf vfprov.PF) []vfprov.Held {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []vfprov.Held
	for _, rec := range s.cp.Claims {
		if rec.Stale != nil {
			continue
		}
		for _, d := range rec.Devices {
			if d.PCIAddress == pf.PCIAddress || slices.Contains(pf.VFs, d.PCIAddress) ||
				d.Snapshot.PFPCIAddress == pf.PCIAddress ||
				(d.Published != nil && d.Published.PFPCIAddress == pf.PCIAddress) {
				out = append(out, vfprov.Held{Device: d.Device, PCIAddress: d.PCIAddress})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
	return slices.Compact(out)
}

// nodeRef is the Node the provisioning events are about (the UID of a
// Node's events is its name, as kubelet posts them).
func (d *Driver) nodeRef() *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Node", Name: d.cfg.NodeName, UID: types.UID(d.cfg.NodeName)}
}

func (d *Driver) nodeEvent(eventType, reason, action, msg string) {
	if d.cfg.Events == nil {
		return
	}
	d.cfg.Events.Eventf(d.nodeRef(), nil, eventType, reason, action, "%s", msg)
}

// provision applies the admin's VF config (re-read when the file changed)
// to the PFs it selects, under planMu so that no claim is planned
// meanwhile: a PF with a prepared (or reserved) VF is left as it is and
// reported as pending. When it wrote sriov_numvfs it rescans before
// letting claims be planned again, and reports true: the new VFs are then
// in the inventory, the removed ones gone from it.
func (d *Driver) provision(ctx context.Context) (bool, error) {
	src := d.cfg.VFConfig
	if src == nil {
		return false, nil
	}
	logger := klog.FromContext(ctx).WithValues("vfConfig", src.Path())
	changed, cfg, err := src.Refresh()
	if err != nil {
		if msg := err.Error(); msg != d.prov.badCfg {
			d.prov.badCfg = msg
			logger.Error(err, "VF config not applied; keeping the last valid one")
			d.nodeEvent(corev1.EventTypeWarning, "VFConfigInvalid", "LoadVFConfig", msg)
		}
	} else if changed {
		d.prov.badCfg = ""
		n := 0
		if cfg != nil {
			n = len(cfg.PFs)
		}
		logger.Info("VF config loaded", "entries", n)
	}
	if cfg == nil {
		d.setProvisioningPending(0)
		return false, nil
	}
	pfs, scanErr := vfprov.ScanPFs(d.cfg.HostRoot)
	if scanErr != nil {
		logger.V(2).Info("Some PFs could not be read for VF provisioning", "err", scanErr)
	}
	d.planMu.Lock()
	defer d.planMu.Unlock()
	plan := vfprov.Plan(d.cfg.HostRoot, cfg, pfs, d.state.preparedOn)
	wrote := false
	pending := 0
	seen := map[string]bool{}
	for _, st := range plan {
		pf := st.PF.PCIAddress
		seen[pf] = true
		log := logger.WithValues("pf", pf, "ifName", st.PF.IfName, "numVfs", st.PF.NumVFs, "desired", st.Desired)
		switch st.State {
		case vfprov.StateOK:
			delete(d.prov.said, pf)
		case vfprov.StatePending:
			pending++
			if d.prov.said[pf] != st.Reason {
				d.prov.said[pf] = st.Reason
				log.Info("VF change waits for prepared devices", "prepared", st.Busy, "reason", st.Reason)
				d.nodeEvent(corev1.EventTypeNormal, "VFProvisioningPending", "ProvisionVFs", st.Reason)
			}
		case vfprov.StateError:
			if d.prov.said[pf] != st.Reason {
				d.prov.said[pf] = st.Reason
				log.Error(nil, "VF config cannot be applied to this PF", "reason", st.Reason)
				d.nodeEvent(corev1.EventTypeWarning, "VFProvisioningFailed", "ProvisionVFs", st.Reason)
			}
		case vfprov.StateApply:
			writes, err := vfprov.Apply(ctx, d.cfg.HostRoot, st)
			if len(writes) > 0 {
				wrote = true
			}
			if err != nil {
				msg := err.Error()
				if d.prov.said[pf] != msg {
					d.prov.said[pf] = msg
					log.Error(err, "Provisioning VFs failed", "writes", writes)
					d.nodeEvent(corev1.EventTypeWarning, "VFProvisioningFailed", "ProvisionVFs", msg)
				}
				continue
			}
			delete(d.prov.said, pf)
			msg := fmt.Sprintf("PF %s: sriov_numvfs %d -> %d", st.Name(), st.PF.NumVFs, st.Desired)
			if st.VFDriver != "" && st.Desired > 0 {
				msg += ", VFs on " + st.VFDriver
			}
			log.Info("Provisioned VFs", "writes", writes, "vfDriver", st.VFDriver)
			d.nodeEvent(corev1.EventTypeNormal, "VFsProvisioned", "ProvisionVFs", msg)
		}
	}
	for pf := range d.prov.said {
		if !seen[pf] {
			delete(d.prov.said, pf) // no longer selected, or gone
		}
	}
	d.setProvisioningPending(pending)
	if !wrote {
		return false, nil
	}
	// The kernel has created (or removed) the VFs inside the write: scan
	// now, before claims are planned against the old inventory.
	if _, err := d.scan(ctx); err != nil {
		return true, err
	}
	return true, nil
}

func (d *Driver) setProvisioningPending(n int) {
	if m := d.cfg.Metrics; m != nil {
		m.vfProvisioningPending.Set(float64(n))
	}
}

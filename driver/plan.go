package driver

import (
	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// vfSettings are the VF knobs of a resolved config, applied through the
// PF. `guid: auto` is not copied: Prepare picks the GUID (AutoGUID).
func vfSettings(r *v1alpha1.Resolved) vfconfig.Settings {
	s := vfconfig.Settings{
		VLAN:      clonePtr(r.VLAN),
		QoS:       clonePtr(r.VLANQoS),
		VLANProto: clonePtr(r.VLANProto),
		SpoofChk:  clonePtr(r.SpoofChk),
		Trust:     clonePtr(r.Trust),
		LinkState: clonePtr(r.LinkState),
		MinTxRate: clonePtr(r.MinTxRate),
		MaxTxRate: clonePtr(r.MaxTxRate),
	}
	if r.MAC != "" {
		s.MAC = clonePtr(&r.MAC)
	}
	if r.GUID != "" && r.GUID != v1alpha1.GUIDAuto {
		s.GUID = clonePtr(&r.GUID)
	}
	return s
}

// netSpec is how the device's netdev must look in the pod; IPAM adds the
// addresses and its routes later.
func netSpec(r *v1alpha1.Resolved, hostIfName, podIfName string) netattach.Spec {
	s := netattach.Spec{HostIfName: hostIfName, PodIfName: podIfName, MTU: r.MTU, MAC: r.MAC}
	for _, rt := range r.Routes {
		s.Routes = append(s.Routes, netattach.Route{Dst: rt.Dst, GW: rt.GW})
	}
	return s
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Package settings turns a resolved sriov.dra.dev config into the values
// the driver's packages apply: the VF settings set through the PF
// (pkg/vfconfig) and the netdev's look in the pod (pkg/netattach). It is
// apart from package v1alpha1 so that the API package depends on nothing
// of the driver.
package settings

import (
	v1alpha1 "github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

// VF returns the VF settings to apply through the PF. A MAC of
// v1alpha1.MACAuto is not copied: the driver picks the value and sets
// Settings.MAC itself. The GUID is not a VF setting (see GUID). The result
// shares no memory with r.
func VF(r *v1alpha1.Resolved) vfconfig.Settings {
	s := vfconfig.Settings{
		VLAN:      clone(r.VLAN),
		QoS:       clone(r.VLANQoS),
		VLANProto: clone(r.VLANProto),
		SpoofChk:  clone(r.SpoofChk),
		Trust:     clone(r.Trust),
		LinkState: clone(r.LinkState),
		MinTxRate: clone(r.MinTxRate),
		MaxTxRate: clone(r.MaxTxRate),
	}
	if r.MAC != "" && r.MAC != v1alpha1.MACAuto {
		s.MAC = new(r.MAC)
	}
	return s
}

// GUID returns the IB GUID to set on the VF, nil for none. A GUID of
// v1alpha1.GUIDAuto is not returned: the driver picks the value itself.
func GUID(r *v1alpha1.Resolved) *string {
	if r.GUID == "" || r.GUID == v1alpha1.GUIDAuto {
		return nil
	}
	return new(r.GUID)
}

// NetSpec returns how the device's netdev must look in the pod. podIfName
// is the name v1alpha1.AssignIfNames chose; the addresses come from IPAM
// and are the caller's to add, and so is the MAC for v1alpha1.MACAuto.
func NetSpec(r *v1alpha1.Resolved, hostIfName, podIfName string) netattach.Spec {
	s := netattach.Spec{
		HostIfName: hostIfName,
		PodIfName:  podIfName,
		MTU:        r.MTU,
	}
	if r.MAC != v1alpha1.MACAuto {
		s.MAC = r.MAC
	}
	for _, rt := range r.Routes {
		s.Routes = append(s.Routes, netattach.Route{Dst: rt.Dst, GW: rt.GW})
	}
	return s
}

func clone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	return new(*p)
}

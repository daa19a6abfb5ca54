package driver

import (
	"encoding/json"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/claimstatus"
)

func claimRef(rec *ClaimRecord) claimstatus.ClaimRef {
	return claimstatus.ClaimRef{Namespace: rec.Namespace, Name: rec.Name, UID: types.UID(rec.UID)}
}

// deviceStatus is the status.devices[] content of one device: the
// interface in the pod (netdevice mode), its addresses as CIDRs, its MAC,
// and as opaque data the GUID that `guid` (or `guid: auto`) set.
func deviceStatus(dr *DeviceRecord) claimstatus.DeviceStatus {
	st := claimstatus.DeviceStatus{
		Pool:            dr.Pool,
		Device:          dr.Device,
		InterfaceName:   dr.Pod.Spec.PodIfName,
		HardwareAddress: strings.ToLower(dr.Pod.Spec.MAC),
		Ready:           dr.Pod.VFIO || dr.Pod.Attached,
	}
	if st.HardwareAddress == "" && dr.Settings.MAC != nil {
		st.HardwareAddress = strings.ToLower(*dr.Settings.MAC)
	}
	if st.HardwareAddress == "" && dr.Pod.Original != nil {
		st.HardwareAddress = dr.Pod.Original.MAC
	}
	if dr.IPAM != nil {
		st.IPs = dr.IPAM.Addresses()
	}
	if dr.Pod.VFIO {
		st.Message = "vfio-pci: the addresses are for the application to configure"
	}
	if dr.GUID != nil {
		st.Data, _ = json.Marshal(map[string]string{"guid": *dr.GUID})
	}
	return st
}

// queueStatus records the claim's status entries for the devices that are
// ready (attached, or vfio-pci). It only queues: it runs inside NRI hooks.
func (d *Driver) queueStatus(rec *ClaimRecord) {
	var st []claimstatus.DeviceStatus
	for _, dr := range rec.Devices {
		if dr.Pod.Attached || dr.Pod.VFIO {
			st = append(st, deviceStatus(dr))
		}
	}
	if len(st) == 0 {
		return
	}
	if err := d.cfg.Status.Set(claimRef(rec), st); err != nil {
		klog.Background().Error(err, "Claim status not queued", "claim", klog.KRef(rec.Namespace, rec.Name))
	}
}

// claimAttached queues the claim's status after the NRI side recorded an
// attach.
func (d *Driver) claimAttached(claimUID string) {
	if rec, ok := d.state.Claim(claimUID); ok {
		d.queueStatus(rec)
	}
}

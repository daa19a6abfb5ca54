package driver

import (
	"strings"
)

// deviceStatus is the status.devices[] content of one device: the
// interface in the pod (netdevice mode), its addresses as CIDRs, MAC, and
// the GUID `guid` (or `guid: auto`) set.
func deviceStatus(dr *DeviceRecord) DeviceStatus {
	st := DeviceStatus{
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
	if dr.Settings.GUID != nil {
		st.GUID = *dr.Settings.GUID
	}
	return st
}

// claimAttached queues the claim's status update after the NRI side
// recorded an attach. It runs inside the NRI hook and so only queues.
func (d *Driver) claimAttached(claimUID string) {
	rec, ok := d.state.Claim(claimUID)
	if !ok {
		return
	}
	var st []DeviceStatus
	for _, dr := range rec.Devices {
		if dr.Pod.Attached || dr.Pod.VFIO {
			st = append(st, deviceStatus(dr))
		}
	}
	if len(st) > 0 {
		d.cfg.Status.Update(ClaimRef{Namespace: rec.Namespace, Name: rec.Name, UID: rec.UID}, st)
	}
}

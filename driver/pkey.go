package driver

// This file holds Prepare's pkey checks: a claim's pkey against its
// port's pkey table, in the plan when no GUID change comes, after the
// GUID step otherwise (the table is the port GUID's). GUIDs themselves
// are picked in guid.go and checked for holders in plan.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// pkeyWaits bounds how long checkPKeyAfterGUID waits for the VF's port
// to show a pkey table after the rebind that set its GUID.
const (
	pkeyWaits    = 20
	pkeyWaitStep = 100 * time.Millisecond
)

// checkPKeyAfterGUID checks a device's configured pkey against the pkey
// table of its port as it is after the GUID step: the subnet manager
// keys partition membership on the port GUID, so the table the port had
// before the change says nothing about the new GUID's. A table that is
// not there yet (the VF's RDMA device is probing after the rebind) is
// read again for a short while. An error makes Prepare roll back,
// the GUID included.
func (d *Driver) checkPKeyAfterGUID(ctx context.Context, dr *DeviceRecord) error {
	var res v1alpha1.Resolved
	if err := json.Unmarshal(dr.Config, &res); err != nil {
		return fmt.Errorf("read the recorded config: %w", err)
	}
	if res.PKey == 0 || hw.PKey(res.PKey).IsDefault() {
		return nil
	}
	var (
		table []string
		err   error
	)
	for range pkeyWaits {
		table, err = d.cfg.Kernel.PKeys(ctx, &dr.Snapshot)
		if err == nil && len(table) > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pkeyWaitStep):
		}
	}
	if err != nil {
		return fmt.Errorf("pkey %s: read the port's pkey table after setting GUID %s: %w", res.PKey, guidOf(dr), err)
	}
	if err := checkPKeyTable(res.PKey, table, dr.Device); err != nil {
		return fmt.Errorf("after setting GUID %s: %w", guidOf(dr), err)
	}
	return nil
}

func guidOf(dr *DeviceRecord) string {
	if dr.GUID == nil {
		return ""
	}
	return *dr.GUID
}

// checkPKeyLink refuses a pkey on a device that is not InfiniBand.
func checkPKeyLink(want v1alpha1.PKey, dev *inventory.Device) error {
	if want != 0 && dev.LinkType != inventory.LinkTypeInfiniBand {
		return fmt.Errorf("pkey %s is set but device %s is %s, not infiniband", want, dev.Name, dev.LinkType)
	}
	return nil
}

// checkPKey refuses a pkey the device's port does not carry. It is a
// pre-flight check, not a grant: a node agent cannot give a port
// partition membership, the fabric's subnet manager programs the pkey
// tables of the PF port and its VFs. So the driver compares the request
// with the port's table (the VF's own pkeys from sysfs, else its PF's port
// 1) and fails Prepare with the field named rather than start a pod that
// cannot reach its partition. All 16 bits are compared: a full-member key
// (0x8000 set) needs the full-member entry, a limited one the limited
// entry, so a claim never gets more (or less) membership than it asked
// for. The default partition (0x7fff/0xffff) is always accepted: every
// port is a member of it in the one way the SM configured.
func checkPKey(want v1alpha1.PKey, pf, dev *inventory.Device) error {
	if want == 0 {
		return nil
	}
	if err := checkPKeyLink(want, dev); err != nil {
		return err
	}
	table := dev.PKeys
	if len(table) == 0 && pf != nil {
		table = pf.PKeys
	}
	return checkPKeyTable(want, table, dev.Name)
}

// checkPKeyTable compares a pkey with a port's table (see checkPKey).
func checkPKeyTable(want v1alpha1.PKey, table []string, device string) error {
	w := hw.PKey(want)
	if w == 0 || w.IsDefault() {
		return nil
	}
	var other hw.PKey
	for _, s := range table {
		p, err := hw.ParsePKey(s)
		switch {
		case err != nil:
		case p == w:
			return nil
		case p.Partition() == w.Partition():
			other = p
		}
	}
	if other != 0 {
		return fmt.Errorf("pkey %s asks for %s membership but the port's pkey table %v of device %s has the partition as %s (%s membership): ask for %s, or have the subnet manager change the membership",
			w, membership(w), table, device, other, membership(other), other)
	}
	return fmt.Errorf("pkey %s is not in the port's pkey table %v of device %s: the subnet manager must add the partition first", w, table, device)
}

func membership(p hw.PKey) string {
	if p.FullMember() {
		return "full"
	}
	return "limited"
}

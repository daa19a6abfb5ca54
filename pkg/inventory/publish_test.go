package inventory_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/dynamic-resource-allocation/deviceattribute"
	"sigs.k8s.io/yaml"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

func names(ds []inventory.Device) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.PCIAddress)
	}
	return out
}

func TestPublishable(t *testing.T) {
	pf := func(pci, name string, numVFs int, hostUse string) inventory.Device {
		return inventory.Device{Name: inventory.DeviceName(pci), Kind: inventory.KindPF, PCIAddress: pci, PFPCIAddress: pci, IfName: name, PFName: name, NumVFs: numVFs, VFIndex: -1, HostUse: hostUse}
	}
	vf := func(pci, pfPCI string) inventory.Device {
		return inventory.Device{Name: inventory.DeviceName(pci), Kind: inventory.KindVF, PCIAddress: pci, PFPCIAddress: pfPCI}
	}
	const inUse = "the host uses netdev ens4: global addresses 192.0.2.1/24"
	inv := &inventory.Inventory{Devices: []inventory.Device{
		pf("0000:01:00.0", "ens1", 2, ""), vf("0000:01:00.1", "0000:01:00.0"), vf("0000:01:00.2", "0000:01:00.0"),
		pf("0000:02:00.0", "ens2", 0, ""),
		pf("0000:03:00.0", "", 1, ""), vf("0000:03:00.1", "0000:03:00.0"),
		pf("0000:04:00.0", "ens4", 1, inUse), vf("0000:04:00.1", "0000:04:00.0"),
	}}
	allVFs := []string{"0000:01:00.1", "0000:01:00.2", "0000:03:00.1", "0000:04:00.1"}
	notListed := map[string]string{
		"pci-0000-01-00-0": inventory.ReasonPFNotListed, "pci-0000-02-00-0": inventory.ReasonPFNotListed,
		"pci-0000-03-00-0": inventory.ReasonPFNotListed, "pci-0000-04-00-0": inventory.ReasonPFNotListed,
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	sriovOn := func(n int) string {
		return fmt.Sprintf("listed for passthrough but refused: SR-IOV is on (%d VFs), and a pod holding the PF could change its VFs' settings through it: set sriov_numvfs to 0 to offer the PF whole", n)
	}
	cases := []struct {
		name        string
		passthrough []string
		want        []string
		verdicts    map[string]string
	}{
		{"default: all VFs, no PF (passthrough is opt-in)", nil, allVFs, notListed},
		{"VF-less PF only when listed", []string{"ens2"}, []string{"0000:01:00.1", "0000:01:00.2", "0000:02:00.0", "0000:03:00.1", "0000:04:00.1"},
			with(notListed, "pci-0000-02-00-0", "")},
		{"listed PF with SR-IOV on is refused, its VFs stay", []string{"ens1"}, allVFs,
			with(notListed, "pci-0000-01-00-0", sriovOn(2))},
		{"PF by PCI address (spaces), by name (case)", []string{" 0000:02:00.0 ", "ENS1", "0000:03:00.0"}, []string{"0000:01:00.1", "0000:01:00.2", "0000:02:00.0", "0000:03:00.1", "0000:04:00.1"},
			with(notListed, "pci-0000-02-00-0", "", "pci-0000-01-00-0", sriovOn(2), "pci-0000-03-00-0", sriovOn(1))},
		{"listed PF in use on the host is refused, its VFs stay", []string{"ens4", "0000:04:00.0"}, allVFs,
			with(notListed, "pci-0000-04-00-0", "listed for passthrough but refused: "+inUse)},
		{"unknown name ignored", []string{"nope", "0000:09:00.0"}, allVFs, notListed},
		{"empty name does not match a PF without netdev", []string{""}, allVFs, notListed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := inv.Publishable(tc.passthrough)
			if !reflect.DeepEqual(names(got), tc.want) {
				t.Errorf("Publishable(%q) = %v, want %v", tc.passthrough, names(got), tc.want)
			}
			if v := inv.WholePFVerdicts(tc.passthrough); !reflect.DeepEqual(v, tc.verdicts) {
				t.Errorf("WholePFVerdicts(%q) = %v, want %v", tc.passthrough, v, tc.verdicts)
			}
			// Never a PF together with its own VFs.
			pfs := map[string]bool{}
			for _, d := range got {
				if d.Kind == inventory.KindPF {
					pfs[d.PCIAddress] = true
				}
			}
			for _, d := range got {
				if d.Kind == inventory.KindVF && pfs[d.PFPCIAddress] {
					t.Errorf("VF %s published with its PF", d.PCIAddress)
				}
			}
		})
	}
	if got := (&inventory.Inventory{}).Publishable(nil); got == nil || len(got) != 0 {
		t.Errorf("empty inventory: %v, want empty non-nil", got)
	}
}

func TestPublishableFixtures(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Standard())
	inv := scan(t, h, nil)
	for _, tc := range []struct {
		passthrough []string
		wantPFs     []string
	}{
		{nil, nil},
		{[]string{"ens5f0"}, []string{"0000:af:00.0"}},
	} {
		got := inv.Publishable(tc.passthrough)
		var pfs []string
		for _, d := range got {
			if d.Kind == inventory.KindPF {
				pfs = append(pfs, d.PCIAddress)
			}
		}
		if len(got) != 31+len(tc.wantPFs) || !reflect.DeepEqual(pfs, tc.wantPFs) {
			t.Errorf("passthrough %q: published %d devices with PFs %v; want 31 VFs and PFs %v", tc.passthrough, len(got), pfs, tc.wantPFs)
		}
	}
}

func str(s string) resourceapi.DeviceAttribute { return resourceapi.DeviceAttribute{StringValue: &s} }
func num(n int64) resourceapi.DeviceAttribute  { return resourceapi.DeviceAttribute{IntValue: &n} }
func boolean(b bool) resourceapi.DeviceAttribute {
	return resourceapi.DeviceAttribute{BoolValue: &b}
}

func TestAttributes(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Standard())
	inv := scan(t, h, nil)
	type attrs = map[resourceapi.QualifiedName]resourceapi.DeviceAttribute
	root := deviceattribute.StandardDeviceAttributePCIeRoot
	bus := deviceattribute.StandardDeviceAttributePCIBusID
	numa := deviceattribute.StandardDeviceAttributeNUMANode
	cases := []struct {
		pci  string
		want attrs
	}{
		{"0000:3b:00.0", attrs{ // IB PF
			inventory.AttrKind: str("pf"), inventory.AttrPFName: str("ibp59s0f0"), inventory.AttrPFPCIAddress: str("0000:3b:00.0"),
			inventory.AttrPCIAddress: str("0000:3b:00.0"), inventory.AttrVendor: str("15b3"), inventory.AttrDeviceID: str("101b"),
			inventory.AttrDriver: str("mlx5_core"), inventory.AttrLinkType: str("infiniband"), inventory.AttrNUMANode: num(0),
			inventory.AttrIfName: str("ibp59s0f0"), inventory.AttrMAC: str("00:00:10:87:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:ab:cd:00"),
			inventory.AttrGUID: str("0c:42:a1:03:00:ab:cd:00"), inventory.AttrPKeys: str("0xffff,0x8001,0x8002"),
			inventory.AttrRDMA: boolean(true), inventory.AttrRDMADevice: str("mlx5_0"), inventory.AttrEswitchMode: str("legacy"),
			inventory.AttrTotalVFs: num(16), root: str("pci0000:3a"), bus: str("0000:3b:00.0"), numa: num(0),
		}},
		{"0000:3b:00.1", attrs{ // IB VF 0
			inventory.AttrKind: str("vf"), inventory.AttrPFName: str("ibp59s0f0"), inventory.AttrPFPCIAddress: str("0000:3b:00.0"),
			inventory.AttrVFIndex: num(0), inventory.AttrPCIAddress: str("0000:3b:00.1"), inventory.AttrVendor: str("15b3"),
			inventory.AttrDeviceID: str("101c"), inventory.AttrDriver: str("mlx5_core"), inventory.AttrLinkType: str("infiniband"),
			inventory.AttrNUMANode: num(0), inventory.AttrIfName: str("ibp59s0f0v0"),
			inventory.AttrMAC:  str("00:00:10:87:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:ab:ce:10"),
			inventory.AttrGUID: str("0c:42:a1:03:00:ab:cd:10"), inventory.AttrRDMA: boolean(true), inventory.AttrRDMADevice: str("mlx5_1"),
			root: str("pci0000:3a"), bus: str("0000:3b:00.1"), numa: num(0),
		}},
		{"0000:5e:00.2", attrs{ // E810 VF 1: VLAN 100
			inventory.AttrKind: str("vf"), inventory.AttrPFName: str("ens2f0"), inventory.AttrPFPCIAddress: str("0000:5e:00.0"),
			inventory.AttrVFIndex: num(1), inventory.AttrPCIAddress: str("0000:5e:00.2"), inventory.AttrVendor: str("8086"),
			inventory.AttrDeviceID: str("1889"), inventory.AttrDriver: str("iavf"), inventory.AttrLinkType: str("ethernet"),
			inventory.AttrNUMANode: num(1), inventory.AttrIfName: str("ens2f0v1"), inventory.AttrMAC: str("02:00:5e:00:00:01"),
			inventory.AttrVLAN: num(100), inventory.AttrRDMA: boolean(false), root: str("pci0000:5d"), bus: str("0000:5e:00.2"), numa: num(1),
		}},
		{"0000:5e:01.5", attrs{ // E810 VF 12 on vfio-pci: no netdev, MAC from the admin state
			inventory.AttrKind: str("vf"), inventory.AttrPFName: str("ens2f0"), inventory.AttrPFPCIAddress: str("0000:5e:00.0"),
			inventory.AttrVFIndex: num(12), inventory.AttrPCIAddress: str("0000:5e:01.5"), inventory.AttrVendor: str("8086"),
			inventory.AttrDeviceID: str("1889"), inventory.AttrDriver: str("vfio-pci"), inventory.AttrLinkType: str("ethernet"),
			inventory.AttrNUMANode: num(1), inventory.AttrMAC: str("02:00:5e:00:00:0c"), inventory.AttrRDMA: boolean(false),
			root: str("pci0000:5d"), bus: str("0000:5e:01.5"), numa: num(1),
		}},
		{"0000:02:00.1", attrs{ // igb VF: NUMA unknown, admin MAC unset
			inventory.AttrKind: str("vf"), inventory.AttrPFName: str("enp2s0f0"), inventory.AttrPFPCIAddress: str("0000:02:00.0"),
			inventory.AttrVFIndex: num(0), inventory.AttrPCIAddress: str("0000:02:00.1"), inventory.AttrVendor: str("8086"),
			inventory.AttrDeviceID: str("1520"), inventory.AttrDriver: str("igbvf"), inventory.AttrLinkType: str("ethernet"),
			inventory.AttrIfName: str("enp2s0f0v0"), inventory.AttrMAC: str("02:00:02:00:01:5a"), inventory.AttrRDMA: boolean(false),
			root: str("pci0000:00"), bus: str("0000:02:00.1"),
		}},
		{"0000:af:00.0", attrs{ // PF with SR-IOV disabled
			inventory.AttrKind: str("pf"), inventory.AttrPFName: str("ens5f0"), inventory.AttrPFPCIAddress: str("0000:af:00.0"),
			inventory.AttrPCIAddress: str("0000:af:00.0"), inventory.AttrVendor: str("8086"), inventory.AttrDeviceID: str("1572"),
			inventory.AttrDriver: str("i40e"), inventory.AttrLinkType: str("ethernet"), inventory.AttrNUMANode: num(1),
			inventory.AttrIfName: str("ens5f0"), inventory.AttrMAC: str("02:00:af:00:00:5a"), inventory.AttrRDMA: boolean(false),
			inventory.AttrTotalVFs: num(64), root: str("pci0000:ae"), bus: str("0000:af:00.0"), numa: num(1),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.pci, func(t *testing.T) {
			got := inventory.Attributes(mustFind(t, inv, tc.pci))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Attributes:\n got %s\nwant %s", dump(got), dump(tc.want))
			}
		})
	}
}

func TestAttributesLimits(t *testing.T) {
	d := inventory.Device{Kind: inventory.KindVF, VFIndex: 3, LinkType: inventory.LinkTypeUnknown, NUMANode: inventory.NUMAUnknown}
	for i := 0; i < 12; i++ {
		d.PKeys = append(d.PKeys, "0x8001")
	}
	got := inventory.Attributes(d)
	if _, ok := got[inventory.AttrPKeys]; ok {
		t.Error("pkeys longer than 64 characters published")
	}
	for _, k := range []resourceapi.QualifiedName{inventory.AttrLinkType, inventory.AttrNUMANode, inventory.AttrMAC, inventory.AttrVLAN, inventory.AttrTotalVFs,
		deviceattribute.StandardDeviceAttributePCIeRoot, deviceattribute.StandardDeviceAttributePCIBusID, deviceattribute.StandardDeviceAttributeNUMANode} {
		if _, ok := got[k]; ok {
			t.Errorf("empty %s published", k)
		}
	}
	if v := got[inventory.AttrVFIndex]; v.IntValue == nil || *v.IntValue != 3 {
		t.Errorf("vfIndex = %v, want 3", v)
	}
	for k, v := range got {
		if v.StringValue != nil && len(*v.StringValue) > resourceapi.DeviceAttributeMaxValueLength {
			t.Errorf("%s longer than the API allows", k)
		}
		if id := strings.TrimPrefix(string(k), inventory.AttributeDomain+"/"); len(id) > resourceapi.DeviceMaxIDLength {
			t.Errorf("attribute name %s too long", k)
		}
	}
}

func TestStandardAttributes(t *testing.T) {
	type want struct {
		root, bus string
		numa      int64
	} // "" / -1: absent
	cases := []struct {
		name string
		dev  inventory.Device
		want want
	}{
		{"all three", inventory.Device{PCIAddress: "0000:3b:00.2", PCIeRoot: "pci0000:3a", NUMANode: 1}, want{"pci0000:3a", "0000:3b:00.2", 1}},
		{"NUMA node 0 is a node", inventory.Device{PCIAddress: "0000:02:00.1", PCIeRoot: "pci0000:00", NUMANode: 0}, want{"pci0000:00", "0000:02:00.1", 0}},
		{"no NUMA affinity", inventory.Device{PCIAddress: "0000:02:00.1", PCIeRoot: "pci0000:00", NUMANode: inventory.NUMAUnknown}, want{"pci0000:00", "0000:02:00.1", -1}},
		{"NUMA node beyond the kernel's limit", inventory.Device{PCIAddress: "0000:02:00.1", NUMANode: 1024}, want{"", "0000:02:00.1", -1}},
		{"PCI address not in extended BDF form", inventory.Device{PCIAddress: "3b:00.2", PCIeRoot: "pci0000:3a", NUMANode: 0}, want{"pci0000:3a", "", 0}},
		{"upper-case PCI address refused by the helper", inventory.Device{PCIAddress: "0000:AF:00.0", NUMANode: 0}, want{"", "", 0}},
		{"nothing known", inventory.Device{NUMANode: inventory.NUMAUnknown}, want{"", "", -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := want{numa: -1}
			for _, a := range inventory.StandardAttributes(tc.dev) {
				switch a.Name {
				case deviceattribute.StandardDeviceAttributePCIeRoot:
					got.root = *a.Value.StringValue
				case deviceattribute.StandardDeviceAttributePCIBusID:
					got.bus = *a.Value.StringValue
				case deviceattribute.StandardDeviceAttributeNUMANode:
					got.numa = *a.Value.IntValue
				default:
					t.Errorf("unexpected attribute %s", a.Name)
				}
			}
			if got != tc.want {
				t.Errorf("StandardAttributes = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func dump(m map[resourceapi.QualifiedName]resourceapi.DeviceAttribute) string {
	var keys []string
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		v, _ := json.Marshal(m[resourceapi.QualifiedName(k)])
		b.WriteString("\n  " + k + "=" + string(v))
	}
	return b.String()
}

func TestReport(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB(), sysfstest.SRIOVDisabled()}})
	inv := scan(t, h, nil)
	inv.Excluded = append(inv.Excluded, inventory.Exclusion{PCIAddress: "0000:99:00.0", Reason: "test reason"})
	r := inventory.NewReport(inv, []string{"enp2s0f0", "ens5f0"})

	var table bytes.Buffer
	if err := r.Write(&table, inventory.FormatTable); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if len(lines) != 1+9+2 || !strings.HasPrefix(lines[0], "NAME ") || !strings.HasSuffix(lines[0], "PUBLISHED") {
		t.Fatalf("table:\n%s", table.String())
	}
	for _, l := range lines[1:10] {
		f := strings.Fields(l)
		wantPub := "yes" // the VFs and the listed VF-less PF
		if strings.HasPrefix(l, "pci-0000-02-00-0 ") {
			wantPub = "no" // listed, but SR-IOV is on
		}
		if f[len(f)-1] != wantPub {
			t.Errorf("row %q: published %s, want %s", l, f[len(f)-1], wantPub)
		}
	}
	if !strings.HasPrefix(lines[10], "PF 0000:02:00.0 (enp2s0f0): listed for passthrough but refused: SR-IOV is on (7 VFs)") {
		t.Errorf("line %q, want the refusal of enp2s0f0", lines[10])
	}
	if lines[11] != "excluded 0000:99:00.0: test reason" {
		t.Errorf("last line %q", lines[11])
	}

	// A PF not listed says so; the VF-less PF is no longer offered by default.
	var notListed bytes.Buffer
	if err := inventory.NewReport(inv, []string{"enp2s0f0"}).Write(&notListed, inventory.FormatTable); err != nil {
		t.Fatal(err)
	}
	if want := "PF 0000:af:00.0 (ens5f0): " + inventory.ReasonPFNotListed; !strings.Contains(notListed.String(), want+"\n") {
		t.Errorf("table without ens5f0 listed:\n%s\nwant a line %q", notListed.String(), want)
	}

	for _, format := range []string{inventory.FormatJSON, inventory.FormatYAML} {
		var out bytes.Buffer
		if err := r.Write(&out, format); err != nil {
			t.Fatal(err)
		}
		var back inventory.Report
		if err := yaml.Unmarshal(out.Bytes(), &back); err != nil {
			t.Fatalf("%s output does not parse: %v", format, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("%s round trip differs", format)
		}
	}
	if err := r.Write(&bytes.Buffer{}, "xml"); err == nil || !strings.Contains(err.Error(), "xml") {
		t.Errorf("xml format: %v", err)
	}

	var empty bytes.Buffer
	if err := inventory.NewReport(&inventory.Inventory{Note: inventory.NoteNoSRIOV}, nil).Write(&empty, inventory.FormatTable); err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSpace(empty.String()), "\n"); len(got) != 2 || !strings.Contains(got[1], inventory.NoteNoSRIOV) {
		t.Errorf("empty report:\n%s", empty.String())
	}
}

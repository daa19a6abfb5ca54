package devicesview

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

const driver = "sriov.dra.dev"

func vf(pci, pf string, idx int, lt inventory.LinkType, vlan, numa int, guid string) inventory.Device {
	d := inventory.Device{
		Name: inventory.DeviceName(pci), Kind: inventory.KindVF, PCIAddress: pci,
		PFPCIAddress: "0000:3b:00.0", PFName: pf, VFIndex: idx, LinkType: lt,
		NUMANode: numa, NodeGUID: guid, Admin: &inventory.VFAdminState{VLAN: vlan},
	}
	if lt == inventory.LinkTypeInfiniBand {
		d.RDMADevices = []string{"mlx5_" + pci[len(pci)-1:]}
	}
	return d
}

func pf(pci, name string) inventory.Device {
	return inventory.Device{
		Name: inventory.DeviceName(pci), Kind: inventory.KindPF, PCIAddress: pci,
		PFPCIAddress: pci, PFName: name, IfName: name, VFIndex: -1,
		LinkType: inventory.LinkTypeEthernet, NUMANode: inventory.NUMAUnknown, TotalVFs: 8,
	}
}

func slice(name, drv, node string, gen int64, devs ...inventory.Device) *resourceapi.ResourceSlice {
	s := &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourceapi.ResourceSliceSpec{
			Driver:   drv,
			NodeName: &node,
			Pool:     resourceapi.ResourcePool{Name: node, Generation: gen, ResourceSliceCount: 1},
			Devices:  []resourceapi.Device{},
		},
	}
	for _, d := range devs {
		s.Spec.Devices = append(s.Spec.Devices, resourceapi.Device{Name: d.Name, Attributes: inventory.Attributes(d)})
	}
	return s
}

type alloc struct{ drv, pool, device string }

func claim(ns, name string, pods []string, allocs ...alloc) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)}}
	if len(allocs) > 0 {
		c.Status.Allocation = &resourceapi.AllocationResult{}
		for i, a := range allocs {
			c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results, resourceapi.DeviceRequestAllocationResult{
				Request: "net" + string(rune('0'+i)), Driver: a.drv, Pool: a.pool, Device: a.device,
			})
		}
	}
	for _, p := range pods {
		c.Status.ReservedFor = append(c.Status.ReservedFor, resourceapi.ResourceClaimConsumerReference{Resource: "pods", Name: p, UID: types.UID(p)})
	}
	return c
}

var (
	ethVF0  = vf("0000:3b:02.0", "ens1f0", 0, inventory.LinkTypeEthernet, 100, 0, "")
	ethVF1  = vf("0000:3b:02.1", "ens1f0", 1, inventory.LinkTypeEthernet, 0, 0, "")
	ibVF0   = vf("0000:5e:00.2", "ibp94s0", 0, inventory.LinkTypeInfiniBand, 0, 1, "aa:bb:cc:dd:ee:ff:00:01")
	wholePF = pf("0000:af:00.0", "ens5f0")
)

func objects() []runtime.Object {
	return []runtime.Object{
		// node-a: two Ethernet VFs, one held by a running pod.
		slice("node-a-sriov-1", driver, "node-a", 2, ethVF0, ethVF1),
		// A slice of an older generation of node-a's pool: ignored.
		slice("node-a-sriov-old", driver, "node-a", 1, ethVF0, ethVF1, wholePF),
		// node-b: an IB VF allocated but not reserved yet, and a whole PF.
		slice("node-b-sriov-1", driver, "node-b", 1, ibVF0, wholePF),
		// Another driver's slice: ignored.
		slice("node-a-gpu", "gpu.example.com", "node-a", 1, pf("0000:01:00.0", "gpu0")),
		claim("team1", "web-net", []string{"web-0"}, alloc{driver, "node-a", ethVF0.Name}),
		claim("team2", "mpi-ib", nil, alloc{driver, "node-b", ibVF0.Name}),
		// Holds a device node-a no longer publishes.
		claim("team1", "old", []string{"old-0"}, alloc{driver, "node-a", "pci-0000-3b-02-7"}),
		// Other drivers' and unallocated claims: ignored.
		claim("team3", "gpu", []string{"train-0"}, alloc{"gpu.example.com", "node-a", inventory.DeviceName("0000:01:00.0")}),
		claim("team3", "pending", nil),
	}
}

func ptr(v int64) *int64 { return &v }

// newAPI is an in-memory API server with objs and a real client of it.
func newAPI(t *testing.T, objs ...runtime.Object) (*apitest.Server, *kubeapi.Client) {
	t.Helper()
	srv := apitest.New(t)
	srv.Add(objs...)
	c, err := kubeapi.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func newClient(t *testing.T, objs ...runtime.Object) *kubeapi.Client {
	t.Helper()
	_, c := newAPI(t, objs...)
	return c
}

func TestCollect(t *testing.T) {
	ethVF0Row := Device{Node: "node-a", Pool: "node-a", Device: ethVF0.Name, Kind: "vf", PCIAddress: ethVF0.PCIAddress,
		PF: "ens1f0", VFIndex: ptr(0), LinkType: "ethernet", VLAN: ptr(100), NUMANode: ptr(0), Published: true,
		Holder: &Holder{Namespace: "team1", Claim: "web-net", Pods: []string{"web-0"}}}
	ethVF1Row := Device{Node: "node-a", Pool: "node-a", Device: ethVF1.Name, Kind: "vf", PCIAddress: ethVF1.PCIAddress,
		PF: "ens1f0", VFIndex: ptr(1), LinkType: "ethernet", NUMANode: ptr(0), Published: true}
	goneRow := Device{Node: "node-a", Pool: "node-a", Device: "pci-0000-3b-02-7",
		Holder: &Holder{Namespace: "team1", Claim: "old", Pods: []string{"old-0"}}}
	ibRow := Device{Node: "node-b", Pool: "node-b", Device: ibVF0.Name, Kind: "vf", PCIAddress: ibVF0.PCIAddress,
		PF: "ibp94s0", VFIndex: ptr(0), LinkType: "infiniband", GUID: "aa:bb:cc:dd:ee:ff:00:01", NUMANode: ptr(1),
		RDMADevice: "mlx5_2", Published: true, Holder: &Holder{Namespace: "team2", Claim: "mpi-ib"}}
	pfRow := Device{Node: "node-b", Pool: "node-b", Device: wholePF.Name, Kind: "pf", PCIAddress: wholePF.PCIAddress,
		PF: "ens5f0", LinkType: "ethernet", Published: true}

	tests := []struct {
		name                   string
		node                   string
		want                   []Device
		total, allocated, free int
	}{
		{name: "whole cluster", want: []Device{ethVF0Row, ethVF1Row, goneRow, ibRow, pfRow}, total: 4, allocated: 2, free: 2},
		{name: "one node", node: "node-b", want: []Device{ibRow, pfRow}, total: 2, allocated: 1, free: 1},
		{name: "node with a held device no longer published", node: "node-a", want: []Device{ethVF0Row, ethVF1Row, goneRow}, total: 2, allocated: 1, free: 1},
		{name: "unknown node", node: "node-z", want: []Device{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, client := newAPI(t, objects()...)
			v, err := Collect(context.Background(), client, Options{Driver: driver, Node: tc.node})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(v.Devices, "", " ")
			want, _ := json.MarshalIndent(tc.want, "", " ")
			if string(got) != string(want) {
				t.Errorf("devices:\n%s\nwant:\n%s", got, want)
			}
			if v.Total != tc.total || v.Allocated != tc.allocated || v.Free != tc.free {
				t.Errorf("counts total/allocated/free = %d/%d/%d, want %d/%d/%d", v.Total, v.Allocated, v.Free, tc.total, tc.allocated, tc.free)
			}
		})
	}
}

// Attributes of the driver's own domain may be written without the domain.
func TestCollectShortAttributeNames(t *testing.T) {
	s := slice("n-1", driver, "n", 1)
	attrs := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{}
	for k, v := range inventory.Attributes(ethVF0) {
		attrs[resourceapi.QualifiedName(strings.TrimPrefix(string(k), driver+"/"))] = v
	}
	s.Spec.Devices = []resourceapi.Device{{Name: ethVF0.Name, Attributes: attrs}}
	v, err := Collect(context.Background(), newClient(t, s), Options{Driver: driver})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Devices) != 1 {
		t.Fatalf("got %d devices, want 1", len(v.Devices))
	}
	d := v.Devices[0]
	if d.Kind != "vf" || d.PF != "ens1f0" || d.VLAN == nil || *d.VLAN != 100 || d.VFIndex == nil || *d.VFIndex != 0 {
		t.Errorf("short names not read: %+v", d)
	}
}

// Large clusters come in pages; every page is read.
func TestCollectPages(t *testing.T) {
	objs := []runtime.Object{slice("a", driver, "node-a", 1, ethVF0)}
	for i := 0; i < listPageSize; i++ {
		objs = append(objs, slice(fmt.Sprintf("b-%03d", i), driver, fmt.Sprintf("node-b%03d", i), 1, ibVF0))
	}
	srv, client := newAPI(t, objs...)
	v, err := Collect(context.Background(), client, Options{Driver: driver})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Devices) != listPageSize+1 || v.Devices[0].Node != "node-a" || v.Devices[listPageSize].Node != fmt.Sprintf("node-b%03d", listPageSize-1) {
		t.Errorf("%d devices, want one of node-a and one of each node-b", len(v.Devices))
	}
	var continues []string
	for _, r := range srv.Requests() {
		if r.Resource != "resourceslices" {
			continue
		}
		continues = append(continues, r.Query.Get("continue"))
		if r.Query.Get("limit") != fmt.Sprint(listPageSize) {
			t.Errorf("limit %s, want %d", r.Query.Get("limit"), listPageSize)
		}
		if !strings.Contains(r.Query.Get("fieldSelector"), "spec.driver="+driver) {
			t.Errorf("field selector %q does not select the driver", r.Query.Get("fieldSelector"))
		}
	}
	if len(continues) != 2 || continues[0] != "" || continues[1] == "" {
		t.Errorf("continue tokens %q, want \"\" then the server's", continues)
	}
}

func TestCollectErrors(t *testing.T) {
	for _, res := range []string{"resourceslices", "resourceclaims"} {
		t.Run(res, func(t *testing.T) {
			srv, client := newAPI(t, objects()...)
			srv.React(func(r apitest.Request) *metav1.Status {
				if r.Resource == res {
					st := apierrors.NewForbidden(schema.GroupResource{Group: "resource.k8s.io", Resource: res}, "", errors.New("forbidden")).Status()
					return &st
				}
				return nil
			})
			_, err := Collect(context.Background(), client, Options{Driver: driver})
			if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(strings.ToLower(err.Error()), strings.TrimSuffix(res, "s")) {
				t.Errorf("error %v, want one naming %s and the cause", err, res)
			}
		})
	}
	if _, err := Collect(context.Background(), newClient(t), Options{}); err == nil {
		t.Error("no error for an empty driver name")
	}
}

func TestWrite(t *testing.T) {
	v, err := Collect(context.Background(), newClient(t, objects()...), Options{Driver: driver})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("table", func(t *testing.T) {
		var b bytes.Buffer
		if err := v.Write(&b, FormatTable); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		if len(lines) != 1+5+2 {
			t.Fatalf("got %d lines, want header, 5 rows, blank, summary:\n%s", len(lines), b.String())
		}
		wantRows := [][]string{
			{"NODE", "DEVICE", "KIND", "PF", "VF", "LINK", "VLAN", "GUID", "NUMA", "NAMESPACE", "POD", "CLAIM"},
			{"node-a", ethVF0.Name, "vf", "ens1f0", "0", "ethernet", "100", "-", "0", "team1", "web-0", "web-net"},
			{"node-a", ethVF1.Name, "vf", "ens1f0", "1", "ethernet", "-", "-", "0", "-", "-", "-"},
			{"node-a", "pci-0000-3b-02-7", "(not", "published)", "-", "-", "-", "-", "-", "-", "-", "team1", "old-0", "old"},
			{"node-b", ibVF0.Name, "vf", "ibp94s0", "0", "infiniband", "-", "aa:bb:cc:dd:ee:ff:00:01", "1", "team2", "<none>", "mpi-ib"},
			{"node-b", wholePF.Name, "pf", "ens5f0", "-", "ethernet", "-", "-", "-", "-", "-", "-"},
		}
		for i, want := range wantRows {
			if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("line %d: %q\nwant %q", i, got, want)
			}
		}
		if lines[len(lines)-1] != "4 devices: 2 allocated, 2 free" {
			t.Errorf("summary %q", lines[len(lines)-1])
		}
	})
	t.Run("json", func(t *testing.T) {
		var b bytes.Buffer
		if err := v.Write(&b, FormatJSON); err != nil {
			t.Fatal(err)
		}
		var back View
		if err := json.Unmarshal(b.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if len(back.Devices) != 5 || back.Devices[0].Holder == nil || back.Devices[0].Holder.Pods[0] != "web-0" || back.Free != 2 {
			t.Errorf("json round trip lost data: %s", b.String())
		}
	})
	t.Run("yaml", func(t *testing.T) {
		var b bytes.Buffer
		if err := v.Write(&b, FormatYAML); err != nil {
			t.Fatal(err)
		}
		var back View
		if err := yaml.UnmarshalStrict(b.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if len(back.Devices) != 5 || back.Devices[3].GUID != "aa:bb:cc:dd:ee:ff:00:01" {
			t.Errorf("yaml round trip lost data:\n%s", b.String())
		}
	})
	t.Run("empty", func(t *testing.T) {
		var b bytes.Buffer
		empty := &View{Driver: driver, Node: "node-z", Devices: []Device{}}
		if err := empty.Write(&b, FormatTable); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "No devices of driver sriov.dra.dev on node node-z") {
			t.Errorf("empty table: %q", b.String())
		}
	})
	t.Run("bad format", func(t *testing.T) {
		if err := v.Write(&bytes.Buffer{}, "wide"); err == nil || !strings.Contains(err.Error(), `"wide"`) {
			t.Errorf("error %v, want one naming the format", err)
		}
	})
}

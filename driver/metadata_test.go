package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/dynamic-resource-allocation/api/metadata"
	"k8s.io/dynamic-resource-allocation/api/metadata/install"
	"k8s.io/dynamic-resource-allocation/devicemetadata"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/claimstatus"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

func strPtr(s string) *string { return &s }
func intPtr(i int) *int       { return &i }

// TestDeviceMetadata: a device's metadata is its published attributes
// with the claim's view laid over them (the pod's interface name and MAC,
// the claim's VLAN and GUID, vfio-pci), the device nodes, and the claim
// status's networkData; each result passes the metadata API's validation
// in every version the driver writes. Values the API cannot carry are an
// error naming the device and attribute or field.
func TestDeviceMetadata(t *testing.T) {
	published := func(extra map[resourceapi.QualifiedName]string) map[resourceapi.QualifiedName]resourceapi.DeviceAttribute {
		dev := inventory.Device{
			Name: "pci-0000-5e-00-1", Kind: inventory.KindVF, PCIAddress: "0000:5e:00.1", PFName: "ens2f0", PFPCIAddress: "0000:5e:00.0",
			VFIndex: 0, Vendor: "8086", DeviceID: "1889", Driver: "iavf", LinkType: inventory.LinkTypeEthernet, NUMANode: 1,
			PCIeRoot: "pci0000:5d", IfName: "ens2f0v0", MAC: "02:00:5e:00:00:00", Admin: &inventory.VFAdminState{VLAN: 7},
		}
		m := inventory.Attributes(dev)
		for k, v := range extra {
			m[k] = resourceapi.DeviceAttribute{StringValue: strPtr(v)}
		}
		return m
	}
	netdev := func(mod func(dr *DeviceRecord)) *DeviceRecord {
		dr := &DeviceRecord{
			Request: "vf", Pool: "node-a", Device: "pci-0000-5e-00-1", PCIAddress: "0000:5e:00.1", Kind: inventory.KindVF,
			Snapshot: vfconfig.Snapshot{PCIAddress: "0000:5e:00.1", IfName: "ens2f0v0", MAC: "02:00:5e:00:00:00"},
			IPAM:     &ipam.Result{IPs: []ipam.IPConfig{{Address: "192.168.100.10/24"}, {Address: "fd00::0a/64"}}},
			Pod:      nri.PodDevice{Spec: netattach.Spec{HostIfName: "ens2f0v0", PodIfName: "net1"}},
		}
		if mod != nil {
			mod(dr)
		}
		return dr
	}
	str := func(s string) resourceapi.DeviceAttribute { return resourceapi.DeviceAttribute{StringValue: &s} }
	num := func(n int64) resourceapi.DeviceAttribute { return resourceapi.DeviceAttribute{IntValue: &n} }
	boolean := func(b bool) resourceapi.DeviceAttribute { return resourceapi.DeviceAttribute{BoolValue: &b} }
	attr := func(name string) string { return inventory.AttributeDomain + "/" + name }

	tests := []struct {
		name      string
		dr        *DeviceRecord
		attrs     map[resourceapi.QualifiedName]resourceapi.DeviceAttribute
		nodes     deviceNodes
		mac       string
		wantNet   *resourceapi.NetworkDeviceData
		wantAttrs map[string]resourceapi.DeviceAttribute // compared where given
		wantGone  []string                               // attributes that must not be there
		wantErr   string
	}{{
		name:  "netdevice VF, MAC from the host",
		dr:    netdev(nil),
		attrs: published(nil),
		mac:   "02:00:5E:00:00:00",
		wantNet: &resourceapi.NetworkDeviceData{InterfaceName: "net1", IPs: []string{"192.168.100.10/24", "fd00::a/64"},
			HardwareAddress: "02:00:5e:00:00:00"},
		wantAttrs: map[string]resourceapi.DeviceAttribute{
			attr("ifName"): str("net1"), attr("mac"): str("02:00:5e:00:00:00"), attr("vfio"): boolean(false),
			attr("pciAddress"): str("0000:5e:00.1"), "resource.kubernetes.io/pciBusID": str("0000:5e:00.1"),
			attr("vlan"): num(7), attr("driver"): str("iavf"), attr("pfName"): str("ens2f0"), attr("vfIndex"): num(0),
		},
		wantGone: []string{attr("vfioGroup"), attr("vfioDevice"), attr("rdmaCharDevices")},
	}, {
		name: "claim's MAC and VLAN win",
		dr: netdev(func(dr *DeviceRecord) {
			dr.Settings = vfconfig.Settings{MAC: strPtr("02:11:22:33:44:55"), VLAN: intPtr(100)}
			dr.Pod.Spec.MAC = "02:11:22:33:44:55"
		}),
		attrs:     published(nil),
		mac:       "02:00:5e:00:00:00",
		wantNet:   &resourceapi.NetworkDeviceData{InterfaceName: "net1", IPs: []string{"192.168.100.10/24", "fd00::a/64"}, HardwareAddress: "02:11:22:33:44:55"},
		wantAttrs: map[string]resourceapi.DeviceAttribute{attr("mac"): str("02:11:22:33:44:55"), attr("vlan"): num(100)},
	}, {
		name:     "vlan 0 clears the VF's VLAN",
		dr:       netdev(func(dr *DeviceRecord) { dr.Settings.VLAN = intPtr(0) }),
		attrs:    published(nil),
		wantNet:  &resourceapi.NetworkDeviceData{InterfaceName: "net1", IPs: []string{"192.168.100.10/24", "fd00::a/64"}, HardwareAddress: "02:00:5e:00:00:00"},
		mac:      "02:00:5e:00:00:00",
		wantGone: []string{attr("vlan")},
	}, {
		name: "vfio-pci VF with addresses for the application",
		dr: netdev(func(dr *DeviceRecord) {
			dr.Pod = nri.PodDevice{VFIO: true}
			dr.Settings.MAC = strPtr("02:AA:00:00:00:01")
			dr.IPAM.IPs = dr.IPAM.IPs[:1]
		}),
		attrs:   published(nil),
		nodes:   deviceNodes{vfioGroup: "46"},
		wantNet: &resourceapi.NetworkDeviceData{IPs: []string{"192.168.100.10/24"}, HardwareAddress: "02:aa:00:00:00:01"},
		wantAttrs: map[string]resourceapi.DeviceAttribute{
			attr("vfio"): boolean(true), attr("driver"): str("vfio-pci"), attr("vfioGroup"): str("46"),
			attr("vfioDevice"): str("/dev/vfio/46"), attr("mac"): str("02:aa:00:00:00:01"),
		},
		wantGone: []string{attr("ifName"), attr("rdmaCharDevices")},
	}, {
		name: "vfio-pci VF without addresses or MAC: no networkData",
		dr: netdev(func(dr *DeviceRecord) {
			dr.Pod = nri.PodDevice{VFIO: true}
			dr.IPAM = nil
		}),
		attrs:     published(nil),
		nodes:     deviceNodes{vfioGroup: "46"},
		wantAttrs: map[string]resourceapi.DeviceAttribute{attr("vfio"): boolean(true)},
		wantGone:  []string{attr("ifName"), attr("mac")},
	}, {
		name: "InfiniBand VF: the claim's GUID, the RDMA character devices",
		dr: netdev(func(dr *DeviceRecord) {
			dr.GUID = strPtr("0c:42:a1:03:00:ab:cd:99")
			dr.IPAM = nil
		}),
		attrs: published(map[resourceapi.QualifiedName]string{inventory.AttrGUID: "0c:42:a1:03:00:ab:cd:10", inventory.AttrRDMADevice: "mlx5_1"}),
		nodes: deviceNodes{rdmaChar: []string{"/dev/infiniband/uverbs1", "/dev/infiniband/rdma_cm"}},
		mac:   "00:00:10:87:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:ab:cd:99",
		wantNet: &resourceapi.NetworkDeviceData{InterfaceName: "net1",
			HardwareAddress: "00:00:10:87:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:ab:cd:99"},
		wantAttrs: map[string]resourceapi.DeviceAttribute{
			attr("guid"): str("0c:42:a1:03:00:ab:cd:99"), attr("rdmaDevice"): str("mlx5_1"),
			attr("rdmaCharDevices"): {StringValues: []string{"/dev/infiniband/uverbs1", "/dev/infiniband/rdma_cm"}},
		},
	}, {
		name:  "no published attributes (a record from before they were kept)",
		dr:    netdev(nil),
		mac:   "02:00:5e:00:00:00",
		nodes: deviceNodes{},
		wantNet: &resourceapi.NetworkDeviceData{InterfaceName: "net1", IPs: []string{"192.168.100.10/24", "fd00::a/64"},
			HardwareAddress: "02:00:5e:00:00:00"},
		wantAttrs: map[string]resourceapi.DeviceAttribute{attr("ifName"): str("net1"), attr("vfio"): boolean(false)},
	}, {
		name:    "an address that is no CIDR",
		dr:      netdev(func(dr *DeviceRecord) { dr.IPAM.IPs = []ipam.IPConfig{{Address: "192.168.100.10"}} }),
		wantErr: `device pci-0000-5e-00-1: networkData.ips: "192.168.100.10" is not an address in CIDR form`,
	}, {
		name:    "a device node path longer than the API allows",
		dr:      netdev(nil),
		nodes:   deviceNodes{rdmaChar: []string{"/dev/infiniband/" + strings.Repeat("u", 60)}},
		wantErr: "device pci-0000-5e-00-1: device metadata attribute sriov.dra.dev/rdmaCharDevices: value",
	}, {
		name: "more attributes than the API allows",
		dr:   netdev(nil),
		attrs: func() map[resourceapi.QualifiedName]resourceapi.DeviceAttribute {
			m := published(nil)
			for i := 0; len(m) <= maxMetadataAttributes; i++ { // the MAC goes (none known), vfio comes
				m[resourceapi.QualifiedName(attr("extra"+string(rune('a'+i))))] = str("x")
			}
			return m
		}(),
		wantErr: "device pci-0000-5e-00-1: device metadata: 33 attributes, the API allows 32",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md, err := deviceMetadata(tt.dr, tt.attrs, tt.nodes, tt.mac)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("deviceMetadata: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("deviceMetadata: %v", err)
			}
			if !reflect.DeepEqual(md.NetworkData, tt.wantNet) {
				t.Errorf("networkData = %+v, want %+v", md.NetworkData, tt.wantNet)
			}
			for k, want := range tt.wantAttrs {
				if got, ok := md.Attributes[k]; !ok || !reflect.DeepEqual(got, want) {
					t.Errorf("attribute %s = %s, want %s", k, attrString(got), attrString(want))
				}
			}
			for _, k := range tt.wantGone {
				if got, ok := md.Attributes[k]; ok {
					t.Errorf("attribute %s = %s, want none", k, attrString(got))
				}
			}
			for _, gv := range MetadataVersions() {
				checkMetadataDecodes(t, gv, "pci-0000-5e-00-1", md)
			}
		})
	}
}

func attrString(a resourceapi.DeviceAttribute) string {
	b, _ := json.Marshal(a)
	return string(b)
}

// checkMetadataDecodes encodes md as the kubelet server does (the
// internal type through the metadata scheme into one API version) and
// reads it back with the decoder applications use, with validation: what
// a container reads is what the driver gave.
func checkMetadataDecodes(t *testing.T, gv schema.GroupVersion, device string, md *kubeletserver.DeviceMetadata) {
	t.Helper()
	dev := metadata.Device{Driver: "sriov.dra.dev", Pool: "node-a", Name: device, NetworkData: md.NetworkData}
	if md.Attributes != nil {
		dev.Attributes = map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{}
		for k, v := range md.Attributes {
			dev.Attributes[resourceapi.QualifiedName(k)] = v
		}
	}
	in := &metadata.DeviceMetadata{
		ObjectMeta:   metav1.ObjectMeta{Name: "claim-1", Namespace: "ns", UID: "u1", Generation: 1},
		PodClaimName: strPtr("net"),
		Requests:     []metadata.DeviceMetadataRequest{{Name: "vf", Devices: []metadata.Device{dev}}},
	}
	codecs := serializer.NewCodecFactory(install.NewScheme())
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok {
		t.Fatal("no JSON serializer for the metadata scheme")
	}
	data, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, gv), in)
	if err != nil {
		t.Fatalf("encode as %s: %v", gv, err)
	}
	var out metadata.DeviceMetadata
	var invalid error
	var got schema.GroupVersionKind
	if err := devicemetadata.DecodeMetadataFromStream(json.NewDecoder(bytes.NewReader(data)), &out,
		devicemetadata.DecodeMetadataWithValidationResult(&invalid), devicemetadata.DecodeMetadataStoreGVKResult(&got)); err != nil {
		t.Fatalf("decode %s: %v\n%s", gv, err, data)
	}
	if invalid != nil {
		t.Errorf("%s fails the metadata API's validation: %v\n%s", gv, invalid, data)
	}
	if got.GroupVersion() != gv {
		t.Errorf("decoded %s, want %s", got.GroupVersion(), gv)
	}
	if len(out.Requests) != 1 || len(out.Requests[0].Devices) != 1 {
		t.Fatalf("%s: decoded %+v", gv, out.Requests)
	}
	back := out.Requests[0].Devices[0]
	if !reflect.DeepEqual(back.NetworkData, md.NetworkData) || len(back.Attributes) != len(md.Attributes) {
		t.Errorf("%s round trip changed the device: %+v", gv, back)
	}
}

// TestPrepareGivesDeviceMetadata: with Config.DeviceMetadata every
// prepared device carries its metadata in the answer to kubelet, a
// retried Prepare answers the same, the networkData is the claim status's
// once the device is attached, and without it no device carries any.
func TestPrepareGivesDeviceMetadata(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			e := newEnv(t, sysfstest.Standard())
			cfg := e.config()
			cfg.DeviceMetadata = on
			d, err := New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			ib, eth, plain, vfio := vfName(e, 0, 1), vfName(e, 1, 0), vfName(e, 1, 1), vfName(e, 1, 12)
			c := newClaim("u1", "p1",
				[]resourceapi.DeviceRequestAllocationResult{result("ib", ib), result("eth", eth), result("plain", plain), result("dpdk", vfio)},
				opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"auto"}`, "ib"),
				opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":100,"mac":"02:11:22:33:44:55","ipam":{"type":"host-local"}}`, "eth"),
				opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","driver":"vfio-pci"}`, "dpdk"),
			)
			res := prepare(t, d, c)["u1"]
			if res.Err != nil {
				t.Fatalf("prepare: %v", res.Err)
			}
			if !on {
				for _, dev := range res.Devices {
					if dev.Metadata != nil {
						t.Errorf("device %s has metadata %+v with device metadata off", dev.DeviceName, dev.Metadata)
					}
				}
				return
			}
			byName := map[string]*kubeletserver.DeviceMetadata{}
			for _, dev := range res.Devices {
				if dev.Metadata == nil {
					t.Fatalf("device %s has no metadata", dev.DeviceName)
				}
				byName[dev.DeviceName] = dev.Metadata
			}
			attrStr := func(dev, name string) string {
				a, ok := byName[dev].Attributes[inventory.AttributeDomain+"/"+name]
				if !ok {
					return "<none>"
				}
				if a.StringValue != nil {
					return *a.StringValue
				}
				return attrString(a)
			}
			rec, _ := d.state.Claim("u1")
			guid := *rec.Devices[0].GUID
			if got := attrStr(ib, "guid"); got != guid {
				t.Errorf("ib guid = %s, want the claim's %s", got, guid)
			}
			if got := attrStr(ib, "rdmaCharDevices"); got != `{"strings":["/dev/infiniband/uverbs0","/dev/infiniband/rdma_cm"]}` {
				t.Errorf("ib rdmaCharDevices = %s", got)
			}
			if got := byName[eth].NetworkData; got == nil || got.InterfaceName != "net2" || !slices.Equal(got.IPs, []string{"10.0.0.1/24"}) || got.HardwareAddress != "02:11:22:33:44:55" {
				t.Errorf("eth networkData = %+v", got)
			}
			// No MAC configured: the netdev's own, read from the host.
			if want := mustFind(t, e, plain).MAC; byName[plain].NetworkData == nil || byName[plain].NetworkData.HardwareAddress != want || attrStr(plain, "mac") != want {
				t.Errorf("plain networkData = %+v, mac attribute %s; want MAC %s", byName[plain].NetworkData, attrStr(plain, "mac"), want)
			}
			if want := mustFind(t, e, vfio).IOMMUGroup; attrStr(vfio, "vfioGroup") != want || attrStr(vfio, "vfioDevice") != "/dev/vfio/"+want || attrStr(vfio, "vfio") != `{"bool":true}` {
				t.Errorf("vfio device: vfioGroup %s, vfioDevice %s, vfio %s; want group %s", attrStr(vfio, "vfioGroup"), attrStr(vfio, "vfioDevice"), attrStr(vfio, "vfio"), want)
			}
			if got := attrStr(eth, "pciAddress"); got != pci(eth) {
				t.Errorf("eth pciAddress = %s, want %s", got, pci(eth))
			}

			// kubelet asks again (it restarted): the same answer, from the record.
			again := prepare(t, d, c)["u1"]
			if again.Err != nil {
				t.Fatal(again.Err)
			}
			for i := range res.Devices {
				if !reflect.DeepEqual(again.Devices[i].Metadata, res.Devices[i].Metadata) {
					t.Errorf("retried prepare: %s metadata %+v, first answer %+v", res.Devices[i].DeviceName, again.Devices[i].Metadata, res.Devices[i].Metadata)
				}
			}

			// The claim status, once the NRI side attached the devices, has
			// the networkData the containers read.
			for _, dev := range []string{eth, plain} {
				mac := mustFind(t, e, dev).MAC
				if err := d.State().Attaching("u1", dev, "/proc/42/ns/net", netattach.Original{IfName: mustFind(t, e, dev).IfName, MAC: mac, MTU: 1500}); err != nil {
					t.Fatal(err)
				}
				if err := d.State().Attached("u1", dev, false); err != nil {
					t.Fatal(err)
				}
			}
			for _, st := range e.status.get("u1") {
				want, ok := byName[st.Device]
				if !ok || st.Device == ib {
					continue
				}
				nd, err := claimstatus.NetworkData(st)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(nd, want.NetworkData) {
					t.Errorf("device %s: claim status networkData %+v, metadata %+v", st.Device, nd, want.NetworkData)
				}
			}
		})
	}
}

// TestPodMAC: without a configured MAC the metadata reports the MAC the
// attach recorded, else the netdev's MAC on the host now (an IPoIB address
// changes with the GUID), else the snapshot's; a vfio-pci device has none.
func TestPodMAC(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	cfg := e.config()
	cfg.DeviceMetadata = true
	d, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev := mustFind(t, e, vfName(e, 1, 0))
	rec := func(mod func(dr *DeviceRecord)) *DeviceRecord {
		dr := &DeviceRecord{Device: dev.Name, Snapshot: vfconfig.Snapshot{MAC: "02:00:00:00:00:99"},
			Pod: nri.PodDevice{Spec: netattach.Spec{HostIfName: dev.IfName}}}
		mod(dr)
		return dr
	}
	for _, tt := range []struct {
		name string
		dr   *DeviceRecord
		want string
	}{
		{"on the host: its MAC now", rec(func(*DeviceRecord) {}), dev.MAC},
		{"attached: the recorded one", rec(func(dr *DeviceRecord) {
			dr.Pod.NetnsPath = "/proc/1/ns/net"
			dr.Pod.Original = &netattach.Original{MAC: "02:00:00:00:00:42"}
		}), "02:00:00:00:00:42"},
		{"moving: the snapshot's", rec(func(dr *DeviceRecord) { dr.Pod.NetnsPath = "/proc/1/ns/net" }), "02:00:00:00:00:99"},
		{"netdev gone from the host: the snapshot's", rec(func(dr *DeviceRecord) { dr.Pod.Spec.HostIfName = "nosuchlink0" }), "02:00:00:00:00:99"},
		{"vfio-pci: none", rec(func(dr *DeviceRecord) { dr.Pod.VFIO = true }), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := d.podMAC(tt.dr); got != tt.want {
				t.Errorf("podMAC = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWriteMetadataFile: the file is created or replaced whole with the
// mode asked for, and no temporary file stays, also when the write fails.
func TestWriteMetadataFile(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "metadata.json")
	for _, content := range []string{`{"a":1}`, `{"b":2}`} {
		if err := WriteMetadataFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != content {
			t.Fatalf("read back %q, %v; want %q", got, err, content)
		}
		if fi, _ := os.Stat(name); fi.Mode().Perm() != 0o644 {
			t.Errorf("mode %v, want 0644", fi.Mode().Perm())
		}
	}
	err := WriteMetadataFile(filepath.Join(dir, "nodir", "metadata.json"), []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "nodir/metadata.json") {
		t.Errorf("write into a missing dir: %v, want an error naming the file", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "isdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteMetadataFile(filepath.Join(dir, "isdir"), []byte("x"), 0o644); err == nil {
		t.Error("renaming over a directory succeeded")
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"isdir", "metadata.json"}) {
		t.Errorf("dir holds %v, want only isdir and metadata.json", names)
	}
}

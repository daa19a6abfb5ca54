//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/dynamic-resource-allocation/api/metadata"
	metadatav1beta1 "k8s.io/dynamic-resource-allocation/api/metadata/v1beta1"
	"k8s.io/dynamic-resource-allocation/devicemetadata"
)

// Device metadata (KEP-5304): the README's example pod
// (deployments/examples/ethernet-vf.yaml) reads, from the file the driver
// gives it at the path the README prints, its VF's interface name, IPs and MAC exactly as the
// claim's status reports them, and its PCI address as the ResourceSlice
// publishes it. The file carries the claim's identity and the pod's claim
// name, in v1beta1 first and v1alpha1 after, and passes the API's
// validation. Deleting the pod removes the file's CDI spec.
func TestDeviceMetadata(t *testing.T) {
	e := setup(t)
	const pod = "ethernet-vf"
	e.runExample(t, pod)
	e.waitRunning(t, pod, 90*time.Second)
	claim := e.claimOf(t, pod)
	device, _ := allocatedIfName(t, e.cs, claim)

	st := e.waitNetworkData(t, claim.Name, device)

	// The path the pod spec determines: the pod's claim name "net", request "vf".
	path := metadata.ResourceClaimTemplateFilePath(driverName, "net", "vf")
	if path != "/var/run/kubernetes.io/dra-device-attributes/resourceclaimtemplates/net/vf/sriov.dra.dev-metadata.json" {
		t.Fatalf("metadata path is %s; README.md and docs/config.md name another", path)
	}
	raw := e.exec(t, pod, "cat", path)
	t.Logf("%s in the container:\n%s", path, raw)

	// One object per API version, newest first.
	var versions []string
	dec := json.NewDecoder(strings.NewReader(raw))
	for dec.More() {
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := dec.Decode(&obj); err != nil {
			t.Fatalf("metadata file is no JSON stream: %v\n%s", err, raw)
		}
		versions = append(versions, obj.APIVersion+" "+obj.Kind)
	}
	if want := []string{"metadata.resource.k8s.io/v1beta1 DeviceMetadata", "metadata.resource.k8s.io/v1alpha1 DeviceMetadata"}; !reflect.DeepEqual(versions, want) {
		t.Errorf("metadata objects %v, want %v", versions, want)
	}

	var md metadata.DeviceMetadata
	var invalid error
	var gvk schema.GroupVersionKind
	if err := devicemetadata.DecodeMetadataFromStream(json.NewDecoder(strings.NewReader(raw)), &md,
		devicemetadata.DecodeMetadataWithValidationResult(&invalid), devicemetadata.DecodeMetadataStoreGVKResult(&gvk)); err != nil {
		t.Fatalf("decode %s: %v\n%s", path, err, raw)
	}
	if invalid != nil {
		t.Errorf("metadata fails the API's validation: %v", invalid)
	}
	if gvk.GroupVersion() != metadatav1beta1.SchemeGroupVersion {
		t.Errorf("first readable version %s, want %s", gvk.GroupVersion(), metadatav1beta1.SchemeGroupVersion)
	}
	if md.Name != claim.Name || md.Namespace != claim.Namespace || md.UID != claim.UID || md.PodClaimName == nil || *md.PodClaimName != "net" {
		t.Errorf("metadata names claim %s/%s (%s) pod claim %v; want %s/%s (%s) pod claim net",
			md.Namespace, md.Name, md.UID, md.PodClaimName, claim.Namespace, claim.Name, claim.UID)
	}
	if len(md.Requests) != 1 || md.Requests[0].Name != "vf" || len(md.Requests[0].Devices) != 1 {
		t.Fatalf("metadata requests = %+v, want request vf with one device", md.Requests)
	}
	got := md.Requests[0].Devices[0]
	if got.Driver != driverName || got.Pool != nodeName || got.Name != device {
		t.Errorf("metadata device %s/%s/%s, want %s/%s/%s", got.Driver, got.Pool, got.Name, driverName, nodeName, device)
	}

	// networkData: the claim status's, and what the pod sees.
	nd, want := got.NetworkData, st.NetworkData
	if nd == nil || nd.InterfaceName != want.InterfaceName || !reflect.DeepEqual(nd.IPs, want.IPs) || nd.HardwareAddress != want.HardwareAddress {
		t.Errorf("metadata networkData %+v, claim status networkData %+v", nd, *want)
	}
	if nd != nil {
		mac := strings.TrimSpace(e.exec(t, pod, "cat", "/sys/class/net/"+nd.InterfaceName+"/address"))
		if !strings.EqualFold(nd.HardwareAddress, mac) || nd.InterfaceName != "net1" {
			t.Errorf("metadata says %s with MAC %s; the pod's net1 has %s", nd.InterfaceName, nd.HardwareAddress, mac)
		}
		if ips := podIPv4(e.exec(t, pod, "ip", "-o", "-4", "addr", "show"), "net1"); !reflect.DeepEqual(ips, nd.IPs) {
			t.Errorf("metadata IPs %v, the pod's net1 has %v", nd.IPs, ips)
		}
	}

	// Attributes: the PCI address as published, and the container's view.
	attr := func(name resourceapi.QualifiedName) string {
		a, ok := got.Attributes[name]
		switch {
		case !ok:
			return "<none>"
		case a.StringValue != nil:
			return *a.StringValue
		case a.BoolValue != nil:
			if *a.BoolValue {
				return "true"
			}
			return "false"
		}
		b, _ := json.Marshal(a)
		return string(b)
	}
	pci := strAttr(publishedDevices(t, e.cs)[device], "pciAddress")
	if pci == "" {
		t.Fatalf("device %s publishes no pciAddress", device)
	}
	for name, want := range map[resourceapi.QualifiedName]string{
		"resource.kubernetes.io/pciBusID": pci,
		driverName + "/pciAddress":        pci,
		driverName + "/pfName":            simPF,
		driverName + "/ifName":            "net1",
		driverName + "/mac":               strings.ToLower(want.HardwareAddress),
		driverName + "/vfio":              "false",
	} {
		if got := attr(name); got != want {
			t.Errorf("metadata attribute %s = %s, want %s", name, got, want)
		}
	}
	// The shell reading docs/config.md shows, for images without jq.
	sedRead := `pci=$(sed -n '/"resource.kubernetes.io\/pciBusID"/{n;s/.*"string": "\(.*\)".*/\1/p;q}' "$f"); echo "$pci"`
	if got := strings.TrimSpace(e.exec(t, pod, "sh", "-c", "f="+path+"; "+sedRead)); got != pci {
		t.Errorf("the documented sed reading gives %q, want %q", got, pci)
	}
	if env := strings.TrimSpace(e.exec(t, pod, "sh", "-c", `echo "$SRIOV_DRA_VF_PCI_ADDRESS"`)); env != pci {
		t.Errorf("SRIOV_DRA_VF_PCI_ADDRESS = %q, the metadata says %q", env, pci)
	}

	// The helper's CDI spec for the file goes with the claim.
	spec := filepath.Join(e.cdiDir, driverName+"_metadata_"+string(claim.UID)+"_vf.json")
	if e.cdiDir != "" {
		if _, err := os.Stat(spec); err != nil {
			t.Errorf("metadata CDI spec: %v", err)
		}
	}
	e.deletePod(t, pod)
	if e.cdiDir != "" {
		waitFor(t, 30*time.Second, "metadata CDI spec removed", func() (bool, error) {
			_, err := os.Stat(spec)
			return os.IsNotExist(err), nil
		})
	}
}

package v1alpha1

import (
	"testing"

	resourceapi "k8s.io/api/resource/v1"
)

// BenchmarkDecode: one full VfConfig as the API server stores it (JSON).
func BenchmarkDecode(b *testing.B) {
	raw := []byte(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","ifName":"data0","mtu":9000,"mac":"02:aa:bb:cc:dd:ee",` +
		`"vlan":100,"vlanQoS":5,"vlanProto":"802.1ad","spoofChk":true,"trust":false,"linkState":"enable","minTxRate":100,"maxTxRate":1000,` +
		`"guid":"auto","pkey":"0x8001","rdmaIsolation":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24"}]]},` +
		`"routes":[{"dst":"10.20.0.0/16","gw":"10.1.0.1"}],"irqAffinity":"container"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := Decode(testRoot, raw); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

// BenchmarkResolve: a class config and two claim configs merged for one
// request, the claim's checked against the class's policy.
func BenchmarkResolve(b *testing.B) {
	configs := []resourceapi.DeviceAllocationConfiguration{
		conf(fromClass, nil, KindVfConfig, `"vlan":100,"spoofChk":true,"trust":false,"policy":{"claimMaySet":["vlanQoS"]}`),
		conf(fromClaim, nil, KindVfConfig, `"mtu":9000,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24"}]]}`),
		conf(fromClaim, []string{"net"}, KindVfConfig, `"ifName":"data0","vlanQoS":3`),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := Resolve(allocPath, configs, DriverName, "net", "", DeviceVF); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

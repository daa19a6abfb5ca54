package v1alpha1

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// FuzzDecode: the decoder never panics, every rejection names a path at
// or below the root it was given, and an accepted config survives a
// JSON round trip unchanged. The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(vfHead + "vlan: 100\nvlanQoS: 3\n"))
	f.Add([]byte(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"PfConfig","routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, errs := Decode(testRoot, data)
		root := testRoot.String()
		for _, e := range errs {
			if e.Field == "" || !strings.HasPrefix(e.Field, root) {
				t.Fatalf("error without a path under %s: %#v", root, e)
			}
			if e.ErrorBody() == "" {
				t.Fatalf("error without a message: %#v", e)
			}
		}
		if (cfg == nil) == (len(errs) == 0) {
			t.Fatalf("Decode returned config %v and %d errors", cfg, len(errs))
		}
		// The same blob as an allocation config: Resolve never panics and
		// reports under its own path.
		configs := []resourceapi.DeviceAllocationConfiguration{{
			Source: resourceapi.AllocationConfigSourceClaim,
			DeviceConfiguration: resourceapi.DeviceConfiguration{Opaque: &resourceapi.OpaqueDeviceConfiguration{
				Driver: DriverName, Parameters: runtime.RawExtension{Raw: data}}},
		}}
		r, rerrs := Resolve(allocPath, configs, DriverName, "req", "", "")
		for _, e := range rerrs {
			if !strings.HasPrefix(e.Field, allocPath.String()+"[0]") {
				t.Fatalf("Resolve error without a path under the config: %#v", e)
			}
		}
		if cfg == nil {
			if r != nil {
				t.Fatalf("Resolve accepted what Decode refused: %v", errs)
			}
			return
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		again, errs := Decode(testRoot, b)
		if len(errs) > 0 {
			t.Fatalf("round trip of %s refused: %v", b, errs)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("round trip changed the config:\n%#v\n%#v", cfg, again)
		}
	})
}

// FuzzParseAddrs: MAC, GUID, pkey and ifName parsing never panic; accepted
// values are canonical and parse again to themselves; the decoder and
// ParsePKey agree on pkey strings.
func FuzzParseAddrs(f *testing.F) {
	for _, s := range []string{"02:00:00:00:00:01", "00:11:22:33:44:55:66:77", "0x8001", "net1", "auto", "ff:ff:ff:ff:ff:ff:ff:ff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if mac, err := ParseMAC(s); err == nil {
			if len(mac) != 17 || mac != strings.ToLower(mac) {
				t.Fatalf("ParseMAC(%q) = %q, not canonical", s, mac)
			}
			if again, err := ParseMAC(mac); err != nil || again != mac {
				t.Fatalf("ParseMAC(%q) = %q, %v", mac, again, err)
			}
		}
		if guid, err := ParseGUID(s); err == nil {
			if len(guid) != 23 || guid != strings.ToLower(guid) || guid == "00:00:00:00:00:00:00:00" || guid == "ff:ff:ff:ff:ff:ff:ff:ff" {
				t.Fatalf("ParseGUID(%q) = %q", s, guid)
			}
			if again, err := ParseGUID(guid); err != nil || again != guid {
				t.Fatalf("ParseGUID(%q) = %q, %v", guid, again, err)
			}
		}
		pk, perr := ParsePKey(s)
		if perr == nil {
			if pk < MinPKey || pk > MaxPKey || pk&0x7fff == 0 {
				t.Fatalf("ParsePKey(%q) = %v out of range", s, pk)
			}
			if again, err := ParsePKey(pk.String()); err != nil || again != pk {
				t.Fatalf("ParsePKey(%q) = %v, %v", pk.String(), again, err)
			}
		}
		cfg, errs := Decode(testRoot, []byte(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","pkey":`+string(mustMarshal(s))+`}`))
		if (perr == nil) != (len(errs) == 0) {
			t.Fatalf("pkey %q: ParsePKey error %v, Decode errors %v", s, perr, errs)
		}
		if perr == nil && *cfg.(*VfConfig).PKey != pk {
			t.Fatalf("pkey %q: Decode %v, ParsePKey %v", s, *cfg.(*VfConfig).PKey, pk)
		}
		if err := CheckIfName(s); err == nil {
			if len(s) == 0 || len(s) > 15 || strings.ContainsAny(s, "/: \t\n%") || s == "." || s == ".." || s == "lo" || s == "eth0" {
				t.Fatalf("CheckIfName accepted %q", s)
			}
		}
		if err := CheckIPAMType(s); err == nil {
			if s == "" || s == "dhcp" || strings.Contains(s, "..") || strings.ContainsAny(s, `/\`) {
				t.Fatalf("CheckIPAMType accepted %q", s)
			}
		}
	})
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

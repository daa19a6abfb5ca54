package reliability

import (
	"encoding/json"
	"strings"
	"testing"

	cpv1 "github.com/sriov-dra/sriov-dra/api/checkpoint/v1"
	"github.com/sriov-dra/sriov-dra/api/v1alpha1"
	"github.com/sriov-dra/sriov-dra/driver"
)

// Fuzz targets the other packages did not have (those exist:
// api/v1alpha1 FuzzDecode and FuzzParseAddrs, pkg/inventory
// FuzzParseSysfsValue, pkg/checkpoint FuzzLoad). A short run in CI:
//
//	go test -run '^$' -fuzz FuzzParseIdentifiers -fuzztime 20s ./test/reliability/
//	go test -run '^$' -fuzz FuzzDriverCheckpoint -fuzztime 20s ./test/reliability/

// FuzzParseIdentifiers: MAC, GUID and pkey parsing never panic, accept
// only what they can print canonically, and are idempotent on their own
// output.
func FuzzParseIdentifiers(f *testing.F) {
	for _, s := range []string{"02:00:00:00:00:01", "02-00-00-00-00-01", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "00:00:00:00:00:00",
		"0e:42:a1:ab:cd:00:00:03", "ff:ff:ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00:00:00", "0x8001", "0x7fff", "0xffff", "0x0000", "0x10000", "", ":", "0x", "auto"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := v1alpha1.ParseMAC(s); err == nil {
			if m2, err := v1alpha1.ParseMAC(m); err != nil || m2 != m {
				t.Errorf("ParseMAC(%q) = %q, which parses to %q, %v", s, m, m2, err)
			}
			if len(m) != 17 || strings.ToLower(m) != m {
				t.Errorf("ParseMAC(%q) = %q: not canonical", s, m)
			}
		}
		if g, err := v1alpha1.ParseGUID(s); err == nil {
			if g2, err := v1alpha1.ParseGUID(g); err != nil || g2 != g {
				t.Errorf("ParseGUID(%q) = %q, which parses to %q, %v", s, g, g2, err)
			}
			if g == "ff:ff:ff:ff:ff:ff:ff:ff" || g == "00:00:00:00:00:00:00:00" {
				t.Errorf("ParseGUID(%q) accepted the reserved GUID %s", s, g)
			}
		}
		if p, err := v1alpha1.ParsePKey(s); err == nil {
			if p2, err := v1alpha1.ParsePKey(p.String()); err != nil || p2 != p {
				t.Errorf("ParsePKey(%q) = %v, which parses to %v, %v", s, p, p2, err)
			}
			if p&0x7fff == 0 || p < 0 || p > 0xffff {
				t.Errorf("ParsePKey(%q) = %v: out of range", s, p)
			}
		}
	})
}

// memStore hands the driver a checkpoint as the file store would after
// its checksum matched.
type memStore struct{ cp *driver.Checkpoint }

func (m *memStore) Load() (*driver.Checkpoint, error) { return m.cp, nil }
func (m *memStore) Save(cp *driver.Checkpoint) error  { m.cp = cp; return nil }

// FuzzDriverCheckpoint: the driver's checkpoint schema over whatever a
// checksummed file may hold (an older or hand-edited one): the v1
// conversion and NewState refuse or accept without panicking, and an accepted state answers
// every query the NRI side and Prepare make.
func FuzzDriverCheckpoint(f *testing.F) {
	f.Add([]byte(`{"version":"sriov.dra.dev/checkpoint/v1","bootID":"b","claims":{}}`))
	f.Add([]byte(`{"version":"sriov.dra.dev/checkpoint/v1","bootID":"b","claims":{"u1":null}}`))
	f.Add([]byte(`{"version":"sriov.dra.dev/checkpoint/v1","bootID":"b","claims":{"u1":{"uid":"u2"}}}`))
	f.Add([]byte(`{"version":"sriov.dra.dev/checkpoint/v1","bootID":"b","claims":{"u1":{"uid":"u1","podUID":"p","phase":"PrepareStarted","devices":[null,{"device":"d","pod":{"netnsPath":"/x"}}]}}}`))
	f.Add([]byte(`{"version":"v0"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var doc cpv1.Checkpoint
		if json.Unmarshal(b, &doc) != nil {
			return
		}
		cp, err := driver.CheckpointFromV1(&doc)
		if err != nil {
			return
		}
		s, err := driver.NewState(&memStore{cp: cp}, "b")
		if err != nil {
			return
		}
		for _, rec := range s.Claims() {
			_, _ = s.Claim(rec.UID)
			for _, d := range s.ForPod(rec.PodUID) {
				_ = s.Owner(d.Device)
			}
		}
		_ = s.Pods()
	})
}

package driver

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	cpv1 "github.com/sriov-dra/sriov-dra/api/checkpoint/v1"
	"github.com/sriov-dra/sriov-dra/pkg/checkpoint"
)

// goldenCase is one golden file and what undoing it must do.
type goldenCase struct {
	name string
	// boot is the node's boot ID when the daemon starts on the file.
	boot string
	// claims are the records the daemon must find (UID -> phase), stale
	// ones (released at start) not included.
	claims map[string]Phase
	// steps must appear in this order in the journal of the start and the
	// Unprepare of every claim; none of forbid may appear.
	steps  []string
	forbid []string
}

// netdevUndo is the undo of the netdev VF claim 1111... of the golden
// files, whether its Prepare finished or not: the address back, the IRQs
// and the VF settings restored, the CDI spec gone, the record dropped.
var netdevUndo = []string{
	"ipam.Release 11111111-1111-4111-8111-111111111111-pci-0000-5e-00-1",
	"host.RestoreIRQs 0000:5e:00.1",
	"host.RestoreVF 0000:5e:00.1",
	"cdi.Remove 11111111-1111-4111-8111-111111111111",
	"store.Save empty",
}

var goldenCases = []goldenCase{
	{name: "empty", boot: "boot-1", forbid: []string{"host.", "ipam.", "cdi.", "status."}},
	{name: "netdev-prepare-started", boot: "boot-1",
		claims: map[string]Phase{"11111111-1111-4111-8111-111111111111": PhasePrepareStarted},
		steps:  netdevUndo,
		forbid: []string{"host.Detach", "host.RestoreGUID", "host.RestoreDriver"}},
	{name: "netdev-prepared", boot: "boot-1",
		claims: map[string]Phase{"11111111-1111-4111-8111-111111111111": PhasePrepareCompleted},
		steps:  netdevUndo,
		forbid: []string{"host.Detach", "host.RestoreGUID", "host.RestoreDriver"}},
	{name: "attached", boot: "boot-1",
		claims: map[string]Phase{"11111111-1111-4111-8111-111111111111": PhasePrepareCompleted},
		// Attached: the netdev comes out of the pod first.
		steps: slices.Concat([]string{"host.Detach /var/run/netns/cni-7f3a data0->ens2f0v0"}, netdevUndo)},
	// The admin's drop request is served at start: the record goes,
	// nothing is undone.
	{name: "drop-request", boot: "boot-1",
		steps:  []string{"store.Save empty"},
		forbid: []string{"host.", "ipam.", "cdi."}},
	{name: "vfio", boot: "boot-1",
		claims: map[string]Phase{"33333333-3333-4333-8333-333333333333": PhasePrepareCompleted},
		steps: []string{
			"host.RestoreDriver 0000:5e:00.5 iavf",
			"cdi.Remove 33333333-3333-4333-8333-333333333333",
			"store.Save empty",
		},
		forbid: []string{"host.Detach", "host.RestoreVF", "ipam."}},
	{name: "ib-guid", boot: "boot-1",
		claims: map[string]Phase{"44444444-4444-4444-8444-444444444444": PhasePrepareCompleted},
		steps: []string{
			"ipam.Release 44444444-4444-4444-8444-444444444444-pci-0000-3b-00-4",
			"host.RestoreGUID 0000:3b:00.4",
			"cdi.Remove 44444444-4444-4444-8444-444444444444",
			"store.Save empty",
		},
		forbid: []string{"host.Detach", "host.RestoreDriver"}},
	// The release that recorded the link flags and alias in the attach
	// original: the netdev, never attached, is put back as recorded.
	{name: "attach-intent-flags", boot: "boot-1",
		claims: map[string]Phase{"66666666-6666-4666-8666-666666666666": PhasePrepareCompleted},
		steps: []string{
			"host.Detach  data0->ens2f0v2",
			"ipam.Release 66666666-6666-4666-8666-666666666666-pci-0000-5e-00-3",
			"host.RestoreIRQs 0000:5e:00.3",
			"host.RestoreVF 0000:5e:00.3",
			"cdi.Remove 66666666-6666-4666-8666-666666666666",
			"store.Save empty",
		},
		forbid: []string{"host.RestoreGUID", "host.RestoreDriver"}},
	// A stale record (boot-1's, the file is of boot-2) is released at
	// start and never restored onto the device.
	{name: "stale", boot: "boot-2",
		steps: []string{
			"ipam.Release 55555555-5555-4555-8555-555555555555-pci-0000-5e-00-2",
			"cdi.Remove 55555555-5555-4555-8555-555555555555",
			"store.Save empty",
		},
		forbid: []string{"host."}},
}

func goldenFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "checkpoint-v1-"+name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenData is the document (the envelope's data) of a checkpoint file.
func goldenData(t *testing.T, file []byte) json.RawMessage {
	t.Helper()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(file, &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

// writeCheckpointDoc writes doc as the checkpoint in dir with
// pkg/checkpoint's own encoder (envelope, checksum), as boot bootID.
func writeCheckpointDoc(t testing.TB, dir, bootID string, doc json.RawMessage) {
	t.Helper()
	s, err := checkpoint.Open[json.RawMessage](dir, CheckpointFile, checkpoint.Options{Root: bootRoot(t, bootID), DataVersion: envelopeDataVersion})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(doc); err != nil {
		t.Fatal(err)
	}
}

// journalSave makes the journal show every save of the file store, with
// the phase of each claim, as memStore does.
type journalSave struct {
	Store
	j *journal
}

func (s journalSave) Save(cp *Checkpoint) error {
	var phases []string
	for uid, rec := range cp.Claims {
		phases = append(phases, uid+"="+string(rec.Phase))
	}
	if len(phases) == 0 {
		phases = []string{"empty"}
	}
	if err := s.Store.Save(cp); err != nil {
		return err
	}
	return s.j.add("store.Save %s", strings.Join(sortStrings(phases), ","))
}

func (s journalSave) DropRequests() ([]DropRequest, error) {
	return s.Store.(dropRequester).DropRequests()
}

// restoreFrom starts a daemon (owned file store, fakes) on the checkpoint
// file content in a fresh state dir, checks the records it found against
// c, unprepares every claim and returns the journal of all of it. The
// checkpoint must end with no record.
func restoreFrom(t *testing.T, c goldenCase, file []byte) []string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CheckpointFile), file, 0o600); err != nil {
		t.Fatal(err)
	}
	e := goldenEnv(t, dir, c.boot)
	e.store = journalSave{Store: e.store, j: e.j}
	e.start(e.config())
	got := map[string]Phase{}
	var claims []*resourceapi.ResourceClaim
	for _, rec := range e.d.State().Claims() {
		if rec.Stale != nil {
			t.Errorf("%s: stale record %s kept although its release succeeded", c.name, rec.UID)
			continue
		}
		got[rec.UID] = rec.Phase
		claims = append(claims, &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: rec.Namespace, Name: rec.Name, UID: types.UID(rec.UID)}})
	}
	if len(got) != len(c.claims) || (len(got) > 0 && !reflect.DeepEqual(got, c.claims)) {
		t.Errorf("%s: records %v, want %v", c.name, got, c.claims)
	}
	if len(claims) > 0 {
		for uid, err := range unprepare(t, e.d, claims...) {
			if err != nil {
				t.Errorf("%s: unprepare %s: %v", c.name, uid, err)
			}
		}
	}
	cp, _, err := ReadCheckpoint(dir, bootRoot(t, c.boot))
	if err != nil {
		t.Fatal(err)
	}
	if len(cp.Claims) != 0 || len(cp.DropRequests) != 0 {
		t.Errorf("%s: checkpoint after undo has %d records and %d drop requests, want none", c.name, len(cp.Claims), len(cp.DropRequests))
	}
	return e.j.take()
}

// checkSteps checks that want appears in got in order and no entry of
// got starts with a forbidden prefix.
func checkSteps(t *testing.T, name string, got, want, forbid []string) {
	t.Helper()
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
		for _, f := range forbid {
			if strings.HasPrefix(g, f) {
				t.Errorf("%s: step %q must not happen", name, g)
			}
		}
	}
	if i < len(want) {
		t.Errorf("%s: step %q missing or out of order in:\n  %s", name, want[i], strings.Join(got, "\n  "))
	}
}

// Every golden file the first v1 release wrote is read by this release,
// and every record in it is undone from the file alone, in reverse.
func TestGoldenCheckpointsRestore(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := restoreFrom(t, c, goldenFile(t, c.name))
			checkSteps(t, c.name, got, c.steps, c.forbid)
		})
	}
}

// addUnknownFields adds a field no release knows to every object of a v1
// document that has named fields (not to maps keyed by data, nor inside
// the raw JSON it carries verbatim), as a newer release adding optional
// fields would write it.
func addUnknownFields(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		opaque := key == "config" || key == "ipamConfig" || key == "netConf" || key == "raw"
		for k, child := range x {
			x[k] = addUnknownFields(child, k)
		}
		if !opaque && key != "claims" && key != "irqAffinity" {
			x["fieldOfANewerRelease"] = map[string]any{"nested": []any{1, "two"}}
		}
		return x
	case []any:
		for i, child := range x {
			x[i] = addUnknownFields(child, key)
		}
	}
	return v
}

// The downgrade case: a file written by a newer release that added
// optional fields at every level is read by this release's v1 rules
// (unknown fields ignored) and undone exactly as the file without them.
func TestCheckpointOfANewerV1ReleaseIsRestoredTheSame(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			file := goldenFile(t, c.name)
			var doc any
			if err := json.Unmarshal(goldenData(t, file), &doc); err != nil {
				t.Fatal(err)
			}
			newer, err := json.Marshal(addUnknownFields(doc, ""))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(newer), "fieldOfANewerRelease") {
				t.Fatal("no unknown field added")
			}
			var env struct {
				BootID string `json:"bootID"`
			}
			if err := json.Unmarshal(file, &env); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "newer")
			writeCheckpointDoc(t, dir, env.BootID, newer)
			newerFile, err := os.ReadFile(filepath.Join(dir, CheckpointFile))
			if err != nil {
				t.Fatal(err)
			}
			want := restoreFrom(t, c, file)
			got := restoreFrom(t, c, newerFile)
			if !slices.Equal(got, want) {
				t.Errorf("undo of the newer file differs:\n got  %s\n want %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
			}
		})
	}
}

// podFieldsNotKept are the keys the first v1 release wrote in a device's
// "pod" object, always empty: the NRI view gets them from the records.
var podFieldsNotKept = []string{"claimUID", "claimNamespace", "claimName", "request", "device", "pciAddress"}

// Old -> new -> old: each golden document read by this release and
// written again is the same document for every field the first v1
// release reads (the always-empty pod fields aside), so a downgrade by
// one release reads what this one wrote exactly as it read its own file.
func TestGoldenCheckpointsRoundTrip(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			data := goldenData(t, goldenFile(t, c.name))
			var doc cpv1.Checkpoint
			if err := json.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			cp, err := CheckpointFromV1(&doc)
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(CheckpointToV1(cp))
			if err != nil {
				t.Fatal(err)
			}
			var want, got map[string]any
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			// A first start writes "claims": null; both mean no record.
			if want["claims"] == nil {
				want["claims"] = map[string]any{}
			}
			claims, _ := want["claims"].(map[string]any)
			for _, rec := range claims {
				for _, d := range rec.(map[string]any)["devices"].([]any) {
					pod := d.(map[string]any)["pod"].(map[string]any)
					for _, k := range podFieldsNotKept {
						if v, ok := pod[k]; ok && v != "" {
							t.Fatalf("golden pod field %s = %v, expected always empty", k, v)
						}
						delete(pod, k)
					}
				}
			}
			if !reflect.DeepEqual(got, want) {
				wb, _ := json.MarshalIndent(want, "", " ")
				gb, _ := json.MarshalIndent(got, "", " ")
				t.Errorf("written again:\n%s\nwant:\n%s", gb, wb)
			}
			// And read back by the v1 rules, the same runtime state.
			var again cpv1.Checkpoint
			if err := json.Unmarshal(out, &again); err != nil {
				t.Fatal(err)
			}
			cp2, err := CheckpointFromV1(&again)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cp2, cp) {
				t.Errorf("old -> new -> old changed the state:\n got  %+v\n want %+v", cp2, cp)
			}
		})
	}
}

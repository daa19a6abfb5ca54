package driver

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

func ownedStoreAt(t *testing.T, dir, root, owner string, onSuperseded func(error)) OwnedStore {
	t.Helper()
	s, _, err := NewOwnedFileStore(dir, root, owner, onSuperseded)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bootRoot is a host root whose only file is the boot ID.
func bootRoot(t testing.TB, bootID string) string {
	t.Helper()
	return sysfstest.New(t, sysfstest.Topology{BootID: bootID}).Root
}

// A rolling update: the new daemon takes the checkpoint over with
// everything the old one wrote, and the old one can no longer write its
// stale copy over the new one's records.
func TestOwnedStoreRollingUpdate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	root := bootRoot(t, "boot-1")
	var oldSuperseded []error
	old := ownedStoreAt(t, dir, root, "pod-old", func(err error) { oldSuperseded = append(oldSuperseded, err) })

	cp, err := old.Load()
	if err != nil {
		t.Fatal(err)
	}
	if cp.BootID != "boot-1" || cp.Owner != "pod-old" {
		t.Fatalf("fresh take-over %+v: want boot ID and owner set", cp)
	}
	cp.Claims = map[string]*ClaimRecord{"c1": {UID: "c1", Phase: PhasePrepareCompleted}}
	if err := old.Save(cp); err != nil {
		t.Fatal(err)
	}

	// The new daemon starts and loads: it sees c1 and owns the file.
	nw := ownedStoreAt(t, dir, root, "pod-new", nil)
	ncp, err := nw.Load()
	if err != nil {
		t.Fatal(err)
	}
	if ncp.Claims["c1"] == nil || ncp.Owner != "pod-new" {
		t.Fatalf("new daemon loaded %+v, want c1 and owner pod-new", ncp)
	}
	ncp.Claims["c2"] = &ClaimRecord{UID: "c2", Phase: PhasePrepareStarted}
	if err := nw.Save(ncp); err != nil {
		t.Fatal(err)
	}

	// The old daemon finds out without writing, too.
	if err := old.CheckOwner(); err == nil {
		t.Error("CheckOwner of the old daemon after the take-over: nil, want a SupersededError")
	}
	if err := nw.CheckOwner(); err != nil {
		t.Errorf("CheckOwner of the owner: %v", err)
	}

	// The old daemon's next save (its stale copy without c2) is refused,
	// twice, with one callback.
	for range 2 {
		cp.Claims["c3"] = &ClaimRecord{UID: "c3"}
		err := old.Save(cp)
		var sup *SupersededError
		if !errors.As(err, &sup) || sup.By != "pod-new" || sup.Owner != "pod-old" {
			t.Fatalf("old daemon's save after the take-over: %v, want a SupersededError naming both", err)
		}
	}
	if len(oldSuperseded) != 1 {
		t.Errorf("onSuperseded called %d times, want once", len(oldSuperseded))
	}
	// On disk: the new daemon's records.
	check := ownedStoreAt(t, dir, root, "pod-new", nil)
	got, err := check.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Claims["c2"] == nil || got.Claims["c3"] != nil || got.Owner != "pod-new" {
		t.Errorf("on disk after the refused save: %+v", got)
	}
}

// Without an owner nothing is enforced, and a missing file loads as nil.
func TestUnownedStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	root := bootRoot(t, "boot-1")
	s, _, err := NewFileStore(dir, root)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Load()
	if err != nil || cp != nil {
		t.Fatalf("missing checkpoint: %+v, %v; want nil, nil", cp, err)
	}
	owned := ownedStoreAt(t, dir, root, "pod-a", nil)
	if _, err := owned.Load(); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(&Checkpoint{BootID: "boot-1", Claims: map[string]*ClaimRecord{}}); err != nil {
		t.Errorf("a store without owner writes regardless: %v", err)
	}
}

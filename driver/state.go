package driver

// This file is the store side of State: the in-memory checkpoint and its
// write-through to the Store, every change durable (group commit) before
// it is acknowledged and reverted when its save fails.

import (
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// Store persists a Checkpoint atomically. Load returns (nil, nil) when
// there is no checkpoint yet and an error naming the file when it cannot be
// read or parsed.
type Store interface {
	Load() (*Checkpoint, error)
	Save(*Checkpoint) error
}

// State is the driver's prepared state: an in-memory copy of the checkpoint
// that is written through to the Store on every change, before the change
// is acknowledged. It implements nri.Devices for the NRI plugin.
//
// Records in the map are never changed in place (a change stores a new
// copy), so a save takes a shallow copy of the map and writes it without
// holding the lock. Concurrent changes share saves (group commit): a
// caller whose change was already written by another caller's save
// returns at once, so prepares of different claims do not queue behind
// one fsync each.
type State struct {
	mu    sync.Mutex
	store Store
	cp    *Checkpoint
	gen   uint64 // counts changes, guarded by mu
	// onAttached is called (outside the lock, after the record is
	// durable) when a device finished attaching; the driver queues the
	// claim status update there. It must not block.
	onAttached func(claimUID string)

	saveMu sync.Mutex // one save at a time
	saved  uint64     // the last change on disk, guarded by saveMu
}

// NewState loads the checkpoint from store. bootID is the current boot ID;
// a missing checkpoint starts empty with it. The caller compares
// Checkpoint().BootID with bootID to find stale entries.
func NewState(store Store, bootID string) (*State, error) {
	cp, err := store.Load()
	if err != nil {
		return nil, err
	}
	if cp == nil {
		cp = &Checkpoint{BootID: bootID}
	}
	if cp.Claims == nil {
		cp.Claims = map[string]*ClaimRecord{}
	}
	for uid, rec := range cp.Claims {
		if rec == nil || rec.UID != uid {
			return nil, fmt.Errorf("checkpoint entry %q is malformed (missing or mismatched uid)", uid)
		}
	}
	return &State{store: store, cp: cp}, nil
}

// BootID returns the boot ID the checkpoint's entries belong to.
func (s *State) BootID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cp.BootID
}

// SetBootID records a new boot ID (after stale entries were released).
func (s *State) SetBootID(bootID string) error {
	s.mu.Lock()
	old := s.cp.BootID
	s.cp.BootID = bootID
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() { s.cp.BootID = old }, func(err error) error {
		return fmt.Errorf("record boot ID %s: %w", bootID, err)
	})
}

// markStale marks every record of boot old as stale (see StaleRelease)
// and records bootID as the checkpoint's boot, in one durable change:
// from then on a restart, a kubelet call or the NRI plugin can never take
// such a record for one of this boot.
func (s *State) markStale(old, bootID string) error {
	s.mu.Lock()
	prev := s.cp.Claims
	next := make(map[string]*ClaimRecord, len(prev))
	for uid, rec := range prev {
		if rec.Stale == nil {
			rec = rec.clone()
			rec.Stale = &StaleRelease{BootID: old}
		}
		next[uid] = rec
	}
	prevBoot := s.cp.BootID
	s.cp.Claims, s.cp.BootID = next, bootID
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		// Records changed since (a drop) are kept as they are now.
		for uid, rec := range s.cp.Claims {
			if old, ok := prev[uid]; ok && rec == next[uid] {
				s.cp.Claims[uid] = old
			}
		}
		s.cp.BootID = prevBoot
	}, func(err error) error {
		return fmt.Errorf("mark the claims of boot %s as stale: %w", old, err)
	})
}

// staleFailed records a failed release of a stale record.
func (s *State) staleFailed(uid string, cause error) error {
	s.mu.Lock()
	rec, ok := s.cp.Claims[uid]
	if !ok || rec.Stale == nil {
		s.mu.Unlock()
		return nil
	}
	next := rec.clone()
	next.Stale.Attempts++
	next.Stale.LastError = cause.Error()
	s.cp.Claims[uid] = next
	return s.commitSwap(uid, rec, next, func(err error) error {
		return fmt.Errorf("record the failed release of claim %s: %w", uid, err)
	})
}

// save writes the state as it is (a store may have more to write, e.g.
// clearing served drop requests).
func (s *State) save() error {
	s.mu.Lock()
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {}, func(err error) error {
		return fmt.Errorf("save checkpoint: %w", err)
	})
}

// bump counts a change; call with s.mu held.
func (s *State) bump() uint64 {
	s.gen++
	return s.gen
}

// commit makes change gen durable. If the save fails, revert runs (under
// s.mu) before any other save can start, and the error is wrapped by wrap.
func (s *State) commit(gen uint64, revert func(), wrap func(error) error) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if s.saved >= gen {
		return nil // written by a save that started after our change
	}
	s.mu.Lock()
	snap := &Checkpoint{BootID: s.cp.BootID, Claims: make(map[string]*ClaimRecord, len(s.cp.Claims)), Lost: s.cp.Lost}
	for k, v := range s.cp.Claims {
		snap.Claims[k] = v
	}
	upTo := s.gen
	s.mu.Unlock()
	if err := s.store.Save(snap); err != nil {
		s.mu.Lock()
		revert()
		s.gen++ // the memory changed again: the next save must write it
		s.mu.Unlock()
		return wrap(err)
	}
	s.saved = upTo
	return nil
}

// Claim returns a copy of the record for uid.
func (s *State) Claim(uid string) (*ClaimRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.cp.Claims[uid]
	if !ok {
		return nil, false
	}
	return rec.clone(), true
}

// Claims returns copies of all records, sorted by UID.
func (s *State) Claims() []*ClaimRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*ClaimRecord, 0, len(s.cp.Claims))
	for _, rec := range s.cp.Claims {
		out = append(out, rec.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// Put records rec (replacing any record of the same UID), durably.
func (s *State) Put(rec *ClaimRecord) error {
	s.mu.Lock()
	old, had := s.cp.Claims[rec.UID]
	mine := rec.clone()
	s.cp.Claims[rec.UID] = mine
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		if s.cp.Claims[rec.UID] != mine {
			return // changed again since
		}
		if had {
			s.cp.Claims[rec.UID] = old
		} else {
			delete(s.cp.Claims, rec.UID)
		}
	}, func(err error) error {
		return fmt.Errorf("checkpoint claim %s/%s (%s): %w", rec.Namespace, rec.Name, rec.UID, err)
	})
}

// reserve records rec in memory only, so that other claims see its
// devices taken. The caller writes it (Put) or drops it (Delete) next; a
// save of another change may write it meanwhile, so it must be safe to
// undo from disk as it is: no step intents, no snapshots.
func (s *State) reserve(rec *ClaimRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cp.Claims[rec.UID] = rec.clone()
	s.bump()
}

// Delete drops the record for uid, durably. Deleting an unknown UID is a no-op.
func (s *State) Delete(uid string) error {
	s.mu.Lock()
	old, had := s.cp.Claims[uid]
	if !had {
		s.mu.Unlock()
		return nil
	}
	delete(s.cp.Claims, uid)
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		if _, back := s.cp.Claims[uid]; !back {
			s.cp.Claims[uid] = old
		}
	}, func(err error) error {
		return fmt.Errorf("drop claim %s from the checkpoint: %w", uid, err)
	})
}

// updateDevice changes one device record durably; on a failed save the
// memory is put back as it was. A change to a device whose attach state
// is derived from the kernel (AttachStateFromKernel: the NRI attach
// records) that keeps its original is made in memory only.
func (s *State) updateDevice(claimUID, device string, fn func(*DeviceRecord)) error {
	s.mu.Lock()
	rec, ok := s.cp.Claims[claimUID]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("claim %s is not prepared on this node", claimUID)
	}
	i := slices.IndexFunc(rec.Devices, func(d *DeviceRecord) bool { return d.Device == device })
	if i < 0 {
		s.mu.Unlock()
		return fmt.Errorf("device %s is not prepared for claim %s", device, claimUID)
	}
	next := rec.clone()
	fn(next.Devices[i])
	s.cp.Claims[claimUID] = next
	if p := next.Devices[i].Pod; p.AttachStateFromKernel && sameOriginal(p.Original, rec.Devices[i].Pod.Original) {
		// The attach state of such a device is derived from the kernel
		// after a restart: it is not written here (a later save of
		// another change may carry it, as a hint only). A new original
		// (the netdev changed since Prepare) is written.
		s.mu.Unlock()
		return nil
	}
	return s.commitSwap(claimUID, rec, next, func(err error) error {
		return fmt.Errorf("checkpoint device %s of claim %s: %w", device, claimUID, err)
	})
}

// commitSwap makes the change of uid's record from prev to next (already
// made in memory) durable. Call it with s.mu held; it unlocks. A failed
// save puts prev back unless the record changed again since.
func (s *State) commitSwap(uid string, prev, next *ClaimRecord, wrap func(error) error) error {
	gen := s.bump()
	s.mu.Unlock()
	return s.commit(gen, func() {
		if s.cp.Claims[uid] == next {
			s.cp.Claims[uid] = prev
		}
	}, wrap)
}

// sameOriginal reports whether a and b record the same original.
func sameOriginal(a, b *netattach.Original) bool {
	return a != nil && b != nil && *a == *b
}

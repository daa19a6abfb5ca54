package driver

import (
	"fmt"
	"os"
	"sync"

	cpv1 "github.com/sriov-dra/sriov-dra/api/checkpoint/v1"
	"github.com/sriov-dra/sriov-dra/pkg/checkpoint"
)

// CheckpointFile is the checkpoint's file name in the state dir.
const CheckpointFile = "checkpoint.json"

// envelopeDataVersion is the data version of pkg/checkpoint's envelope.
// It stays 1 for every schema version: the document's own version
// (api/checkpoint/v1) is the one the driver decides by.
const envelopeDataVersion = 1

// fileStore keeps the Checkpoint with pkg/checkpoint as the v1 document
// (api/checkpoint/v1): mode 0600, temp file + fsync + rename + dir fsync,
// checksummed.
//
// With an owner (NewOwnedFileStore) it also keeps two daemons from
// overwriting each other's records. A rolling update runs the new daemon
// next to the old one for a while, each with the checkpoint in memory:
// the new one takes the file over when it loads it (read and marked with
// its owner under the file lock, so nothing the old one wrote before is
// missed), and from then on every save of the old one is refused with a
// *SupersededError instead of writing its stale copy over the new one's.
type fileStore struct {
	s     *checkpoint.Store[cpv1.Checkpoint]
	owner string

	mu           sync.Mutex
	onSuperseded func(error)
	superseded   bool
}

// SupersededError is returned by Save once another daemon took the
// checkpoint over.
type SupersededError struct {
	Path, Owner, By string
}

func (e *SupersededError) Error() string {
	return fmt.Sprintf("checkpoint %s was taken over by daemon %q (this is %q, replaced by a rolling update): refusing to write this daemon's copy over it", e.Path, e.By, e.Owner)
}

// NewFileStore opens the checkpoint in stateDir (created 0700), with no
// owner enforced. root is the host root the boot ID is read under.
func NewFileStore(stateDir, root string) (Store, string, error) {
	return NewOwnedFileStore(stateDir, root, "", nil)
}

// OwnedStore is a Store that knows which daemon owns the checkpoint.
type OwnedStore interface {
	Store
	CheckOwner() error
}

// NewOwnedFileStore opens the checkpoint in stateDir for the daemon named
// owner (unique per daemon instance, e.g. its pod UID). Load takes the
// file over; a Save after another daemon took it over fails with a
// *SupersededError, and onSuperseded (if set) is called once then.
func NewOwnedFileStore(stateDir, root, owner string, onSuperseded func(error)) (OwnedStore, string, error) {
	s, err := checkpoint.Open[cpv1.Checkpoint](stateDir, CheckpointFile, checkpoint.Options{Root: root, DataVersion: envelopeDataVersion})
	if err != nil {
		return nil, "", err
	}
	return &fileStore{s: s, owner: owner, onSuperseded: onSuperseded}, s.BootID(), nil
}

// Load implements Store. A corrupt file is a *checkpoint.CorruptError that
// names the file and how to recover.
func (f *fileStore) Load() (*Checkpoint, error) {
	doc, info, err := f.s.Load()
	if err != nil {
		return nil, err
	}
	if f.owner == "" {
		if !info.Exists {
			return nil, nil
		}
		return f.fromV1(&doc)
	}
	// Take over: what is read under the exclusive lock is the state, and
	// the owner mark goes in with the same write.
	var taken *Checkpoint
	err = f.s.Update(func(cur *cpv1.Checkpoint) error {
		if cur.Version == "" && cur.Claims == nil {
			// No checkpoint yet.
			cur.Version = cpv1.Version
			cur.BootID = f.s.BootID()
		}
		cur.Owner = f.owner
		var err error
		taken, err = CheckpointFromV1(cur)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("take over checkpoint %s: %w", f.s.Path(), err)
	}
	return taken, nil
}

// fromV1 converts the document read from the file; the error for a
// document the driver cannot account for names the file, which is left
// as it is.
func (f *fileStore) fromV1(doc *cpv1.Checkpoint) (*Checkpoint, error) {
	cp, err := CheckpointFromV1(doc)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", f.s.Path(), err)
	}
	return cp, nil
}

// CheckOwner reads who owns the checkpoint now; when another daemon took
// it over it returns the *SupersededError (calling onSuperseded the first
// time) without waiting for this daemon's next save to find out.
func (f *fileStore) CheckOwner() error {
	if f.owner == "" {
		return nil
	}
	cp, _, err := f.s.Load()
	if err != nil {
		return err
	}
	if cp.Owner == "" || cp.Owner == f.owner {
		return nil
	}
	sup := &SupersededError{Path: f.s.Path(), Owner: f.owner, By: cp.Owner}
	f.supersede(sup)
	return sup
}

func (f *fileStore) supersede(sup *SupersededError) {
	f.mu.Lock()
	first := !f.superseded
	f.superseded = true
	f.mu.Unlock()
	if first && f.onSuperseded != nil {
		f.onSuperseded(sup)
	}
}

// Save implements Store. The admin's drop requests in the file stay
// until a save no longer has their claim.
func (f *fileStore) Save(cp *Checkpoint) error {
	var sup *SupersededError
	err := f.s.Update(func(cur *cpv1.Checkpoint) error {
		if f.owner != "" && cur.Owner != "" && cur.Owner != f.owner {
			sup = &SupersededError{Path: f.s.Path(), Owner: f.owner, By: cur.Owner}
			return sup
		}
		requests := cur.DropRequests
		*cur = *CheckpointToV1(cp)
		cur.DropRequests = nil
		for _, r := range requests {
			if _, held := cp.Claims[r.ClaimUID]; held {
				cur.DropRequests = append(cur.DropRequests, r)
			}
		}
		if f.owner != "" {
			cur.Owner = f.owner
		}
		return nil
	})
	if sup != nil {
		f.supersede(sup)
	}
	return err
}

// DropRequests reads the admin's pending drop requests from the file.
// A daemon that no longer owns the file (replaced in a rolling update)
// gets none: its owner applies them.
func (f *fileStore) DropRequests() ([]DropRequest, error) {
	doc, _, err := f.s.Load()
	if err != nil {
		return nil, err
	}
	if f.owner != "" && doc.Owner != "" && doc.Owner != f.owner {
		return nil, nil
	}
	var out []DropRequest
	for _, r := range doc.DropRequests {
		out = append(out, DropRequest{ClaimUID: r.ClaimUID, By: r.By, At: r.At})
	}
	return out, nil
}

// dropRequester is a Store that carries the admin's drop requests.
type dropRequester interface {
	DropRequests() ([]DropRequest, error)
}

// openCheckpoint opens the checkpoint of an existing state dir for the
// admin tools; it never creates the dir.
func openCheckpoint(stateDir, root string) (*checkpoint.Store[cpv1.Checkpoint], error) {
	fi, err := os.Stat(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("state dir %s is not a directory", stateDir)
	}
	return checkpoint.Open[cpv1.Checkpoint](stateDir, CheckpointFile, checkpoint.Options{Root: root, DataVersion: envelopeDataVersion})
}

// ReadCheckpoint reads the checkpoint in stateDir (under its lock, shared
// with a running daemon) for the admin tools, without taking it over. A
// missing file is an empty checkpoint. It returns the file's path too.
func ReadCheckpoint(stateDir, root string) (*Checkpoint, string, error) {
	s, err := openCheckpoint(stateDir, root)
	if err != nil {
		return nil, "", err
	}
	doc, info, err := s.Load()
	if err != nil {
		return nil, s.Path(), err
	}
	if !info.Exists {
		return &Checkpoint{Claims: map[string]*ClaimRecord{}}, s.Path(), nil
	}
	cp, err := CheckpointFromV1(&doc)
	if err != nil {
		return nil, s.Path(), fmt.Errorf("checkpoint %s: %w", s.Path(), err)
	}
	return cp, s.Path(), nil
}

// RequestDrop adds the admin's request to forget claimUID's record to the
// checkpoint in stateDir, under the file's exclusive lock and keeping the
// owner: the daemon that owns the file drops the record itself within
// seconds (or when it starts). The record must be there.
func RequestDrop(stateDir, root string, req DropRequest) error {
	s, err := openCheckpoint(stateDir, root)
	if err != nil {
		return err
	}
	return s.Update(func(cp *cpv1.Checkpoint) error {
		if _, err := CheckpointFromV1(cp); err != nil {
			// Never rewrite a document this release cannot read.
			return fmt.Errorf("checkpoint %s: %w", s.Path(), err)
		}
		if _, ok := cp.Claims[req.ClaimUID]; !ok {
			return fmt.Errorf("claim %s has no record in %s", req.ClaimUID, s.Path())
		}
		for _, r := range cp.DropRequests {
			if r.ClaimUID == req.ClaimUID {
				return nil // asked before; the daemon has not got to it yet
			}
		}
		cp.DropRequests = append(cp.DropRequests, cpv1.DropRequest{ClaimUID: req.ClaimUID, By: req.By, At: req.At})
		return nil
	})
}

package driver

import (
	"github.com/sriov-dra/sriov-dra/pkg/checkpoint"
)

// CheckpointFile is the checkpoint's file name in the state dir.
const CheckpointFile = "checkpoint.json"

// fileStore keeps the Checkpoint with pkg/checkpoint: versioned JSON,
// mode 0600, temp file + fsync + rename + dir fsync, checksummed, with
// the boot ID.
type fileStore struct {
	s *checkpoint.Store[Checkpoint]
}

// NewFileStore opens the checkpoint in stateDir (created 0700). root is
// the host root the boot ID is read under.
func NewFileStore(stateDir, root string) (Store, string, error) {
	s, err := checkpoint.Open[Checkpoint](stateDir, CheckpointFile, checkpoint.Options{Root: root, DataVersion: 1})
	if err != nil {
		return nil, "", err
	}
	return &fileStore{s: s}, s.BootID(), nil
}

// Load implements Store. A corrupt file is a *checkpoint.CorruptError that
// names the file and how to recover.
func (f *fileStore) Load() (*Checkpoint, error) {
	cp, info, err := f.s.Load()
	if err != nil {
		return nil, err
	}
	if !info.Exists {
		return nil, nil
	}
	if cp.BootID == "" {
		cp.BootID = info.SavedBootID
	}
	return &cp, nil
}

// Save implements Store.
func (f *fileStore) Save(cp *Checkpoint) error { return f.s.Save(*cp) }

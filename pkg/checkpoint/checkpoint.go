// Package checkpoint keeps a value of any JSON-encodable type in a file that
// survives crashes and restarts: a versioned envelope with the node's boot
// ID and a checksum, written atomically (temp file, fsync, rename, fsync of
// the directory), mode 0600 in a 0700 directory.
//
// A missing file is an empty state. A corrupt or truncated file is an error
// (*CorruptError) that names the file and how to recover; it is never
// overwritten and never silently dropped.
//
// Every Load and Update reads the file under an advisory lock (flock on
// "<name>.lock"), so two processes sharing the state dir (the old and new
// driver pod during a rolling update) never lose each other's updates.
package checkpoint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/sriov-dra/sriov-dra/internal/atomicfile"
)

// FormatVersion is the version of the envelope this package writes.
const FormatVersion = 1

// BootIDPath is where the node's boot ID is read, below the host root.
const BootIDPath = "proc/sys/kernel/random/boot_id"

// Options configure a Store.
type Options struct {
	// Root is the host filesystem root the boot ID is read under; "" is "/".
	Root string
	// DataVersion is the caller's schema version of T, recorded in the
	// file; 0 means 1. A file with a newer DataVersion is refused.
	DataVersion int
	// Migrate, when set, converts data written with an older DataVersion
	// to the current one. Without it an older version is refused.
	Migrate func(from int, data json.RawMessage) (json.RawMessage, error)
}

// Info describes the file a Load found.
type Info struct {
	Path string
	// Exists is false when there was no file (an empty state).
	Exists bool
	// BootID is the node's current boot ID; SavedBootID the one recorded
	// with the file.
	BootID      string
	SavedBootID string
	// Rebooted is true when the file was written during an earlier boot:
	// kernel state it describes is gone. It stays true until the next
	// successful Save/Update, so handle stale entries before changing
	// anything else.
	Rebooted bool
	// DataVersion is the version the data was written with (before any
	// migration).
	DataVersion int
}

// envelope is the file format.
type envelope struct {
	Version     int             `json:"version"`
	DataVersion int             `json:"dataVersion"`
	BootID      string          `json:"bootID"`
	Checksum    string          `json:"checksum"` // "sha256:<hex of data bytes>"
	Data        json.RawMessage `json:"data"`
}

// CorruptError is returned for a file that exists but cannot be trusted.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("checkpoint %s is corrupt: %v. It is left untouched. To recover: check which devices are still "+
		"configured on the node (VF settings, netdevs in pod namespaces, CDI specs, IPAM allocations) and undo or note "+
		"them, then move the file aside (mv %s %s.corrupt) and restart; the driver then starts from an empty state",
		e.Path, e.Err, e.Path, e.Path)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Store keeps one value of type T in one file. Safe for concurrent use by
// goroutines and processes.
type Store[T any] struct {
	dir, path, lockPath string
	bootID              string
	dataVersion         int
	migrate             func(int, json.RawMessage) (json.RawMessage, error)
	mu                  sync.Mutex
}

// Open prepares a store for file name in dir, creating dir with mode 0700
// when missing, and removes temp files a crash left behind. It reads the
// boot ID now; a missing boot ID file is an error.
func Open[T any](dir, name string, opts Options) (*Store[T], error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("checkpoint file name %q: must be a bare file name", name)
	}
	if dir == "" {
		return nil, errors.New("checkpoint state dir: empty")
	}
	root := opts.Root
	if root == "" {
		root = "/"
	}
	bootPath := filepath.Join(root, BootIDPath)
	b, err := os.ReadFile(bootPath)
	if err != nil {
		return nil, fmt.Errorf("read node boot ID: %w", err)
	}
	bootID := strings.TrimSpace(string(b))
	if bootID == "" {
		return nil, fmt.Errorf("read node boot ID: %s is empty", bootPath)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create checkpoint state dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint state dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("checkpoint state dir %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("checkpoint state dir %s has mode %v: group or others can write it; use a dir with mode 0700", dir, fi.Mode().Perm())
	}
	dv := opts.DataVersion
	if dv == 0 {
		dv = 1
	}
	s := &Store[T]{
		dir:         dir,
		path:        filepath.Join(dir, name),
		lockPath:    filepath.Join(dir, name+".lock"),
		bootID:      bootID,
		dataVersion: dv,
		migrate:     opts.Migrate,
	}
	if err := s.withLock(syscall.LOCK_EX, func() error {
		left, _ := filepath.Glob(filepath.Join(dir, name+".tmp-*"))
		for _, p := range left {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove leftover temp file: %w", err)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the checkpoint file.
func (s *Store[T]) Path() string { return s.path }

// BootID is the node's boot ID read at Open.
func (s *Store[T]) BootID() string { return s.bootID }

// Load reads the state. A missing file is the zero T with Info.Exists false.
func (s *Store[T]) Load() (T, Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		v    T
		info Info
	)
	err := s.withLock(syscall.LOCK_SH, func() error {
		var err error
		v, info, err = s.read()
		return err
	})
	return v, info, err
}

// Save replaces the state with v.
func (s *Store[T]) Save(v T) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withLock(syscall.LOCK_EX, func() error { return s.write(v) })
}

// Update reads the state, calls fn on it and saves the result only if fn
// returns nil. fn's error is returned as is (unwrapped), and neither the
// file nor any later Load sees fn's changes. fn runs with the store locked:
// it must not call the store.
func (s *Store[T]) Update(fn func(*T) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withLock(syscall.LOCK_EX, func() error {
		v, _, err := s.read()
		if err != nil {
			return err
		}
		if err := fn(&v); err != nil {
			return err
		}
		return s.write(v)
	})
}

func (s *Store[T]) withLock(how int, fn func() error) error {
	f, err := os.OpenFile(s.lockPath, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open checkpoint lock: %w", err)
	}
	defer f.Close()
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", s.lockPath, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks too
	return fn()
}

func (s *Store[T]) read() (T, Info, error) {
	var zero T
	info := Info{Path: s.path, BootID: s.bootID}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return zero, info, nil
	}
	if err != nil {
		return zero, info, fmt.Errorf("read checkpoint %s: %w", s.path, err)
	}
	info.Exists = true
	v, env, err := decode[T](b, s.dataVersion, s.migrate)
	if err != nil {
		return zero, info, &CorruptError{Path: s.path, Err: err}
	}
	info.SavedBootID = env.BootID
	info.Rebooted = env.BootID != s.bootID
	info.DataVersion = env.DataVersion
	return v, info, nil
}

// decode checks and decodes a file's bytes.
func decode[T any](b []byte, dataVersion int, migrate func(int, json.RawMessage) (json.RawMessage, error)) (T, envelope, error) {
	var (
		v   T
		env envelope
	)
	if len(bytes.TrimSpace(b)) == 0 {
		return v, env, errors.New("file is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&env); err != nil {
		return v, env, fmt.Errorf("decode envelope (truncated or not JSON?): %w", err)
	}
	if dec.More() {
		return v, env, errors.New("trailing data after the envelope")
	}
	switch {
	case env.Version == 0:
		return v, env, errors.New("no format version")
	case env.Version > FormatVersion:
		return v, env, fmt.Errorf("format version %d is newer than this driver's %d (written by a newer release?)", env.Version, FormatVersion)
	}
	if env.BootID == "" {
		return v, env, errors.New("no boot ID")
	}
	if len(env.Data) == 0 {
		return v, env, errors.New("no data")
	}
	sum := sha256.Sum256(env.Data)
	if want := "sha256:" + hex.EncodeToString(sum[:]); env.Checksum != want {
		return v, env, fmt.Errorf("checksum mismatch: recorded %q, data has %q", env.Checksum, want)
	}
	data := env.Data
	switch {
	case env.DataVersion > dataVersion:
		return v, env, fmt.Errorf("data version %d is newer than this driver's %d (written by a newer release?)", env.DataVersion, dataVersion)
	case env.DataVersion < dataVersion:
		if migrate == nil {
			return v, env, fmt.Errorf("data version %d is older than %d and there is no migration", env.DataVersion, dataVersion)
		}
		var err error
		if data, err = migrate(env.DataVersion, data); err != nil {
			return v, env, fmt.Errorf("migrate data from version %d to %d: %w", env.DataVersion, dataVersion, err)
		}
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, env, fmt.Errorf("decode data: %w", err)
	}
	return v, env, nil
}

func encode[T any](v T, dataVersion int, bootID string) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	b, err := json.Marshal(envelope{
		Version:     FormatVersion,
		DataVersion: dataVersion,
		BootID:      bootID,
		Checksum:    "sha256:" + hex.EncodeToString(sum[:]),
		Data:        data,
	})
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// write replaces the file atomically and durably. If only the final fsync
// of the directory fails, the new content is already in place but may not
// survive a power loss; the error is still returned so the caller does not
// act as if it were durable.
func (s *Store[T]) write(v T) (err error) {
	b, err := encode(v, s.dataVersion, s.bootID)
	if err != nil {
		return fmt.Errorf("encode checkpoint %s: %w", s.path, err)
	}
	err = atomicfile.Write(s.path, b, atomicfile.Options{TempPattern: filepath.Base(s.path) + ".tmp-*", Mode: 0o600})
	return atomicfile.Explain(err, "checkpoint", "checkpoint dir")
}

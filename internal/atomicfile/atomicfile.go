// Package atomicfile replaces a file so that a reader of its name sees
// either the old content or the new one in full, never a part, and the
// new content survives a power loss once Write returns nil: a temp file in
// the same directory is written, fsynced, renamed over the name, and the
// directory is fsynced.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Options says how Write names and checks the temp file.
type Options struct {
	// TempPattern is the os.CreateTemp pattern of the temp file, created
	// in the target's directory. It must not match what readers of the
	// directory pick up (a ".json" suffix for CDI specs, say).
	TempPattern string
	// Mode is the file's permission bits.
	Mode os.FileMode
	// Check, when set, is called with the temp file's path after it was
	// written and fsynced and before the rename: an error leaves the
	// target as it was.
	Check func(tmp string) error
	// NoSync skips both fsyncs, for a file that need not outlive the
	// page cache (one written again after a reboot): a reader still sees
	// the old content or the new one in full.
	NoSync bool
}

// Step names where Write failed.
type Step string

const (
	StepCreate  Step = "create"  // creating the temp file
	StepWrite   Step = "write"   // chmod, write or close of the temp file
	StepSync    Step = "fsync"   // fsync of the temp file
	StepCheck   Step = "check"   // Options.Check refused the temp file
	StepRename  Step = "rename"  // renaming the temp file over the target
	StepSyncDir Step = "syncdir" // opening or fsyncing the directory
)

// Error is a failed Write: Step says where, Path is the target, Temp the
// temp file's path (removed again unless Step is StepSyncDir, when the new
// content is in place but may not be durable), Err the cause. Callers word
// it for their own file with Explain.
type Error struct {
	Step Step
	Path string
	Temp string
	Dir  string
	Err  error
}

func (e *Error) Error() string {
	switch e.Step {
	case StepSyncDir:
		return fmt.Sprintf("fsync dir %s: %v", e.Dir, e.Err)
	case StepCheck:
		return fmt.Sprintf("check %s: %v", e.Temp, e.Err)
	case StepCreate:
		return fmt.Sprintf("create a temp file for %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Step, e.Temp, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Explain words an error of Write for the caller's kind of file: file
// names the file ("checkpoint"), dir its directory ("checkpoint dir").
// The cause stays wrapped; nil and errors that are no *Error pass through.
func Explain(err error, file, dir string) error {
	var ae *Error
	if err == nil || !errors.As(err, &ae) {
		return err
	}
	switch ae.Step {
	case StepSync:
		return fmt.Errorf("fsync %s %s: %w", file, ae.Temp, ae.Err)
	case StepCheck:
		return fmt.Errorf("invalid %s: %w", file, ae.Err)
	case StepRename:
		return fmt.Errorf("replace %s %s: %w", file, ae.Path, ae.Err)
	case StepSyncDir:
		return fmt.Errorf("fsync %s %s: %w", dir, ae.Dir, ae.Err)
	default:
		return fmt.Errorf("write %s %s: %w", file, ae.Path, ae.Err)
	}
}

// Write replaces path with data as the package comment says. On an error
// before the rename the target is unchanged and the temp file removed;
// the error is an *Error.
func Write(path string, data []byte, opts Options) (err error) {
	dir := filepath.Dir(path)
	fail := func(step Step, tmp string, cause error) error {
		return &Error{Step: step, Path: path, Temp: tmp, Dir: dir, Err: cause}
	}
	f, err := os.CreateTemp(dir, opts.TempPattern)
	if err != nil {
		return fail(StepCreate, "", err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if err != nil && !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(opts.Mode); err != nil {
		return fail(StepWrite, tmp, err)
	}
	if _, err = f.Write(data); err != nil {
		return fail(StepWrite, tmp, err)
	}
	if !opts.NoSync {
		if err = f.Sync(); err != nil {
			return fail(StepSync, tmp, err)
		}
	}
	if err = f.Close(); err != nil {
		return fail(StepWrite, tmp, err)
	}
	if opts.Check != nil {
		if err = opts.Check(tmp); err != nil {
			return fail(StepCheck, tmp, err)
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return fail(StepRename, tmp, err)
	}
	renamed = true
	if opts.NoSync {
		return nil
	}
	if err = SyncDir(dir); err != nil {
		return fail(StepSyncDir, tmp, err)
	}
	return nil
}

// SyncDir fsyncs a directory, so a rename or create in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

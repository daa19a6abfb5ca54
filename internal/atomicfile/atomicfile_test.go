package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	errRefused := errors.New("refused")
	tests := []struct {
		name     string
		old      []byte // nil: no file before
		mode     os.FileMode
		check    func(tmp string) error
		wantStep Step // "" for success
	}{
		{name: "new file", mode: 0o600},
		{name: "replace", old: []byte("old content\n"), mode: 0o644},
		{name: "check refuses, old kept", old: []byte("old content\n"), mode: 0o600,
			check: func(string) error { return errRefused }, wantStep: StepCheck},
		{name: "check refuses, nothing created", mode: 0o600,
			check: func(string) error { return errRefused }, wantStep: StepCheck},
		{name: "check sees the full new content", mode: 0o600, check: func(tmp string) error {
			b, err := os.ReadFile(tmp)
			if err != nil {
				return err
			}
			if string(b) != "new content\n" {
				return fmt.Errorf("temp has %q", b)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.json")
			if tt.old != nil {
				if err := os.WriteFile(path, tt.old, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := Write(path, []byte("new content\n"), Options{TempPattern: ".f.json.tmp-*", Mode: tt.mode, Check: tt.check})
			if tt.wantStep != "" {
				var ae *Error
				if !errors.As(err, &ae) || ae.Step != tt.wantStep || ae.Path != path {
					t.Fatalf("Write err = %v, want an *Error at step %q", err, tt.wantStep)
				}
				if !errors.Is(err, errRefused) {
					t.Errorf("Write err = %v does not wrap the cause", err)
				}
				b, rerr := os.ReadFile(path)
				switch {
				case tt.old == nil && !errors.Is(rerr, os.ErrNotExist):
					t.Errorf("target after failed Write: %q, %v; want none", b, rerr)
				case tt.old != nil && !bytes.Equal(b, tt.old):
					t.Errorf("target after failed Write = %q, want the old %q", b, tt.old)
				}
			} else {
				if err != nil {
					t.Fatalf("Write: %v", err)
				}
				b, err := os.ReadFile(path)
				if err != nil || string(b) != "new content\n" {
					t.Fatalf("target = %q, %v; want the new content", b, err)
				}
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != tt.mode {
					t.Errorf("mode = %v, want %v", st.Mode().Perm(), tt.mode)
				}
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if e.Name() != "f.json" {
					t.Errorf("left behind in the dir: %s", e.Name())
				}
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		path     string
		wantStep Step
	}{
		{name: "no such dir", path: filepath.Join(dir, "missing", "f"), wantStep: StepCreate},
		{name: "target is a non-empty dir", path: mkdirWithFile(t, dir, "d"), wantStep: StepRename},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(tt.path, []byte("x"), Options{TempPattern: "tmp-*", Mode: 0o600})
			var ae *Error
			if !errors.As(err, &ae) || ae.Step != tt.wantStep || ae.Path != tt.path {
				t.Fatalf("Write err = %v, want an *Error at step %q", err, tt.wantStep)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(tt.path), "tmp-*")); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

func mkdirWithFile(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadersSeeWholeFiles is the visibility property: while one writer
// replaces the file over and over with contents of different lengths, a
// reader of the final name only ever sees one of the complete contents.
func TestReadersSeeWholeFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	contents := [][]byte{
		bytes.Repeat([]byte("a"), 1<<16),
		bytes.Repeat([]byte("bc"), 1<<10),
		[]byte("d\n"),
	}
	if err := Write(path, contents[0], Options{TempPattern: "f.tmp-*", Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := Write(path, contents[i%len(contents)], Options{TempPattern: "f.tmp-*", Mode: 0o600}); err != nil {
				t.Errorf("Write: %v", err)
				return
			}
		}
	}()
	deadline := time.Now().Add(300 * time.Millisecond)
	reads := 0
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read during writes: %v", err)
		}
		whole := false
		for _, c := range contents {
			whole = whole || bytes.Equal(b, c)
		}
		if !whole {
			t.Fatalf("reader saw a partial file: %d bytes", len(b))
		}
		reads++
	}
	close(stop)
	wg.Wait()
	if reads == 0 {
		t.Fatal("no reads made")
	}
}

// crashHelperEnv makes the test binary the crashing writer of
// TestCrashLeavesOldContent.
const crashHelperEnv = "ATOMICFILE_CRASH_HELPER"

// TestCrashLeavesOldContent kills a writer process (SIGKILL) after it wrote
// and fsynced its temp file and before the rename: the final name still
// holds the old content in full, and what is left over is only a temp file
// under the temp pattern, never under the final name.
func TestCrashLeavesOldContent(t *testing.T) {
	if p := os.Getenv(crashHelperEnv); p != "" {
		_ = Write(p, bytes.Repeat([]byte("new"), 1<<12), Options{TempPattern: ".f.tmp-*", Mode: 0o600,
			Check: func(string) error {
				fmt.Println("ready")
				time.Sleep(time.Minute) // killed here
				return nil
			}})
		os.Exit(3)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	old := []byte("old content\n")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLeavesOldContent$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf[:5]) != "ready" {
		t.Fatalf("helper did not reach the rename: %q, %v", buf, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(b, old) {
		t.Fatalf("final name after the crash = %q, %v; want the old content", b, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".f.tmp-*"))
	if len(left) != 1 {
		t.Fatalf("temp files after the crash = %v, want the one the writer left", left)
	}
	if st, err := os.Stat(left[0]); err != nil || st.Size() != 3<<12 {
		t.Errorf("leftover temp %s: %v, %v; want the full new content", left[0], st, err)
	}
}

func TestExplain(t *testing.T) {
	cause := errors.New("cause")
	errAt := func(step Step) error {
		return &Error{Step: step, Path: "/d/f", Temp: "/d/f.tmp-1", Dir: "/d", Err: cause}
	}
	other := errors.New("not a Write error")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"other error", other, "not a Write error"},
		{"create", errAt(StepCreate), "write spec /d/f: cause"},
		{"write", errAt(StepWrite), "write spec /d/f: cause"},
		{"fsync", errAt(StepSync), "fsync spec /d/f.tmp-1: cause"},
		{"check", errAt(StepCheck), "invalid spec: cause"},
		{"rename", errAt(StepRename), "replace spec /d/f: cause"},
		{"syncdir", errAt(StepSyncDir), "fsync spec dir /d: cause"},
		{"wrapped", fmt.Errorf("outer: %w", errAt(StepRename)), "replace spec /d/f: cause"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Explain(tc.err, "spec", "spec dir")
			if tc.err == nil {
				if got != nil {
					t.Fatalf("Explain(nil) = %v, want nil", got)
				}
				return
			}
			if got.Error() != tc.want {
				t.Errorf("Explain = %q, want %q", got.Error(), tc.want)
			}
			if !errors.Is(tc.err, other) && !errors.Is(got, cause) {
				t.Errorf("Explain lost the cause: %v", got)
			}
		})
	}
}

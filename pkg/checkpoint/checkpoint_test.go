package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// claims is a state shaped like the driver's: entries keyed by claim UID.
type claims struct {
	Claims map[string]entry `json:"claims,omitempty"`
	Next   int              `json:"next,omitempty"`
}

type entry struct {
	Devices []string `json:"devices"`
	Done    bool     `json:"done"`
}

// fakeRoot makes a host root with a boot ID file.
func fakeRoot(t testing.TB, bootID string) string {
	t.Helper()
	root := t.TempDir()
	setBootID(t, root, bootID)
	return root
}

func setBootID(t testing.TB, root, bootID string) {
	t.Helper()
	p := filepath.Join(root, BootIDPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(bootID+"\n"), 0o444); err != nil && !os.IsPermission(err) {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(bootID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func open(t testing.TB, dir, root string) *Store[claims] {
	t.Helper()
	s, err := Open[claims](dir, "state.json", Options{Root: root})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestRoundTripModesAndMissingFile(t *testing.T) {
	root := fakeRoot(t, "boot-1")
	dir := filepath.Join(t.TempDir(), "state")
	s := open(t, dir, root)

	v, info, err := s.Load()
	if err != nil {
		t.Fatalf("Load of missing file: %v", err)
	}
	if info.Exists || info.Rebooted || v.Claims != nil || info.BootID != "boot-1" {
		t.Fatalf("missing file: got %+v %+v, want empty state", v, info)
	}

	want := claims{Claims: map[string]entry{"uid-1": {Devices: []string{"a", "b"}, Done: true}}, Next: 3}
	if err := s.Save(want); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got, info, err := s.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || !info.Exists || info.Rebooted || info.SavedBootID != "boot-1" || info.DataVersion != 1 {
		t.Fatalf("Load = %+v %+v, want %+v", got, info, want)
	}
	// A second store on the same dir (a restarted process) sees it too.
	got, _, err = open(t, dir, root).Load()
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reopened Load = %+v, %v", got, err)
	}

	for p, mode := range map[string]os.FileMode{dir: 0o700, s.Path(): 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), mode)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
	var env map[string]any
	b, _ := os.ReadFile(s.Path())
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	if env["version"] != float64(FormatVersion) || env["bootID"] != "boot-1" || !strings.HasPrefix(fmt.Sprint(env["checksum"]), "sha256:") {
		t.Errorf("envelope = %v", env)
	}
}

func TestReboot(t *testing.T) {
	root := fakeRoot(t, "boot-1")
	dir := t.TempDir()
	s := open(t, dir, root)
	if err := s.Save(claims{Next: 1}); err != nil {
		t.Fatal(err)
	}
	setBootID(t, root, "boot-2")
	s2 := open(t, dir, root)
	v, info, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !info.Rebooted || info.SavedBootID != "boot-1" || info.BootID != "boot-2" || v.Next != 1 {
		t.Fatalf("after reboot Load = %+v %+v, want Rebooted with the old state", v, info)
	}
	if err := s2.Update(func(c *claims) error { c.Next = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, info, _ := s2.Load(); info.Rebooted || info.SavedBootID != "boot-2" {
		t.Fatalf("after Update Info = %+v, want the new boot recorded", info)
	}
}

func TestUpdateSavesOnlyOnSuccess(t *testing.T) {
	root := fakeRoot(t, "b")
	s := open(t, t.TempDir(), root)
	if err := s.Update(func(c *claims) error {
		c.Claims = map[string]entry{"u1": {Devices: []string{"d1"}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(s.Path())
	boom := errors.New("boom")
	err := s.Update(func(c *claims) error {
		c.Claims["u1"] = entry{Devices: []string{"changed"}}
		c.Claims["u2"] = entry{}
		return boom
	})
	if err != boom { //nolint:errorlint // the very error fn returned, not one wrapping it
		t.Fatalf("Update error = %v, want fn's error as is", err)
	}
	after, _ := os.ReadFile(s.Path())
	if string(before) != string(after) {
		t.Fatalf("failed Update changed the file")
	}
	v, _, _ := s.Load()
	if len(v.Claims) != 1 || v.Claims["u1"].Devices[0] != "d1" {
		t.Fatalf("failed Update leaked into state: %+v", v)
	}
}

func TestCorruptFiles(t *testing.T) {
	root := fakeRoot(t, "boot-1")
	good, err := encode(claims{Claims: map[string]entry{"u": {Devices: []string{"x"}}}}, 1, "boot-1")
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(good)
	i := strings.Index(string(flipped), `"x"`)
	flipped[i+1] = 'y'
	newer, _ := encode(claims{}, 1, "boot-1")
	newer = []byte(strings.Replace(string(newer), `"version":1`, `"version":99`, 1))
	newerData, _ := encode(claims{}, 7, "boot-1")
	tests := map[string][]byte{
		"empty":              {},
		"blank":              []byte("  \n"),
		"garbage":            []byte("\x00\x01garbage"),
		"truncated":          good[:len(good)/2],
		"truncated at end":   good[:len(good)-3],
		"bit flip":           flipped,
		"no checksum":        []byte(`{"version":1,"dataVersion":1,"bootID":"b","data":{}}`),
		"no version":         []byte(`{"bootID":"b","data":{}}`),
		"newer format":       newer,
		"newer data version": newerData,
		"trailing data":      append(slices.Clone(good), []byte(`{}`)...),
		"data wrong type":    mustEncodeRaw(t, `{"claims":[1,2]}`),
		"json array":         []byte(`[]`),
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, dir, root)
			if err := os.WriteFile(s.Path(), content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, info, err := s.Load()
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Load = %v, want a *CorruptError", err)
			}
			if !info.Exists || ce.Path != s.Path() {
				t.Errorf("info %+v / error path %q", info, ce.Path)
			}
			for _, want := range []string{s.Path(), "corrupt", "move the file aside", "mv "} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			called := false
			if err := s.Update(func(*claims) error { called = true; return nil }); !errors.As(err, &ce) {
				t.Errorf("Update over a corrupt file = %v, want *CorruptError", err)
			}
			if called {
				t.Error("Update called fn over a corrupt file")
			}
			if err := s.Save(claims{}); err != nil {
				t.Fatalf("Save: %v", err)
			}
			// Save is an explicit replace; the corrupt content is gone only then.
			if _, _, err := s.Load(); err != nil {
				t.Fatalf("Load after Save: %v", err)
			}
		})
	}
}

func mustEncodeRaw(t *testing.T, data string) []byte {
	t.Helper()
	b, err := encode(json.RawMessage(data), 1, "boot-1")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCorruptFileUntouchedByUpdate(t *testing.T) {
	root := fakeRoot(t, "b")
	s := open(t, t.TempDir(), root)
	if err := os.WriteFile(s.Path(), []byte(`{"version":1,"da`), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = s.Update(func(c *claims) error { c.Next = 5; return nil })
	b, _ := os.ReadFile(s.Path())
	if string(b) != `{"version":1,"da` {
		t.Fatalf("Update overwrote a corrupt file: %q", b)
	}
}

func TestMigrate(t *testing.T) {
	root := fakeRoot(t, "b")
	dir := t.TempDir()
	old, err := Open[map[string]int](dir, "s.json", Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Save(map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := Open[map[string]int](dir, "s.json", Options{Root: root, DataVersion: 2}); err != nil {
		t.Fatal(err)
	}
	noMig, _ := Open[map[string]int](dir, "s.json", Options{Root: root, DataVersion: 2})
	if _, _, err := noMig.Load(); err == nil || !strings.Contains(err.Error(), "no migration") {
		t.Fatalf("Load of older data without Migrate = %v", err)
	}
	mig, _ := Open[map[string]int](dir, "s.json", Options{Root: root, DataVersion: 2,
		Migrate: func(from int, data json.RawMessage) (json.RawMessage, error) {
			if from != 1 {
				return nil, fmt.Errorf("unexpected version %d", from)
			}
			return json.RawMessage(strings.ReplaceAll(string(data), `"a"`, `"b"`)), nil
		}})
	v, info, err := mig.Load()
	if err != nil || v["b"] != 1 || info.DataVersion != 1 {
		t.Fatalf("migrated Load = %v %+v %v", v, info, err)
	}
	if err := mig.Update(func(*map[string]int) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, info, _ := mig.Load(); info.DataVersion != 2 {
		t.Fatalf("after Update data version = %d, want 2", info.DataVersion)
	}
}

func TestOpenErrors(t *testing.T) {
	root := fakeRoot(t, "b")
	wide := t.TempDir()
	if err := os.Chmod(wide, 0o777); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, file, root, want string
	}{
		{"no boot id", t.TempDir(), "s.json", t.TempDir(), "boot ID"},
		{"empty name", t.TempDir(), "", root, "file name"},
		{"name with slash", t.TempDir(), "a/b", root, "file name"},
		{"dotdot", t.TempDir(), "..", root, "file name"},
		{"no dir", "", "s.json", root, "state dir"},
		{"world writable dir", wide, "s.json", root, "0700"},
		{"dir is a file", file, "s.json", root, "state dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open[claims](tc.dir, tc.file, Options{Root: tc.root})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestLeftoverTempFilesRemoved(t *testing.T) {
	root := fakeRoot(t, "b")
	dir := t.TempDir()
	left := filepath.Join(dir, "state.json.tmp-12345")
	other := filepath.Join(dir, "other.json.tmp-1")
	for _, f := range []string{left, other} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	open(t, dir, root)
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("leftover temp file still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another store's file was removed: %v", err)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	root := fakeRoot(t, "b")
	dir := t.TempDir()
	// Two stores on one file stand for two processes (flock is per open
	// file, so they exclude each other like processes do).
	stores := []*Store[claims]{open(t, dir, root), open(t, dir, root)}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- stores[i%2].Update(func(c *claims) error {
				if c.Claims == nil {
					c.Claims = map[string]entry{}
				}
				c.Claims[fmt.Sprintf("uid-%02d", i)] = entry{Devices: []string{"d"}}
				c.Next++
				return nil
			})
			_, _, err := stores[(i+1)%2].Load()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	v, _, err := stores[0].Load()
	if err != nil {
		t.Fatal(err)
	}
	if v.Next != n || len(v.Claims) != n {
		keys := make([]string, 0, len(v.Claims))
		for k := range v.Claims {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Fatalf("after %d concurrent updates: Next=%d, claims=%v (lost updates)", n, v.Next, keys)
	}
}

// BenchmarkUpdate measures one durable Update (read, change one claim,
// write, fsync, rename, fsync dir) of a 100-claim state on the disk under
// the test temp dir.
func BenchmarkUpdate(b *testing.B) {
	root := fakeRoot(b, "b")
	s, err := Open[claims](b.TempDir(), "state.json", Options{Root: root})
	if err != nil {
		b.Fatal(err)
	}
	st := claims{Claims: map[string]entry{}}
	for i := range 100 {
		st.Claims[fmt.Sprintf("claim-%03d", i)] = entry{Devices: []string{"0000-3b-00-2", "0000-3b-00-3"}, Done: true}
	}
	if err := s.Save(st); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		if err := s.Update(func(c *claims) error {
			e := c.Claims[fmt.Sprintf("claim-%03d", i%100)]
			e.Done = !e.Done
			c.Claims[fmt.Sprintf("claim-%03d", i%100)] = e
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
	}
}

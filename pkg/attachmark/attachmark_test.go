package attachmark

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		name, dir, hostDir string
		wantHost, wantErr  string
	}{
		{name: "host dir defaults to dir", dir: filepath.Join(tmp, "a"), wantHost: filepath.Join(tmp, "a")},
		{name: "own host dir", dir: filepath.Join(tmp, "b"), hostDir: "/cluster/node/attached/", wantHost: "/cluster/node/attached"},
		{name: "relative dir", dir: "attached", wantErr: `attach marker dir "attached": not an absolute path`},
		{name: "relative host dir", dir: filepath.Join(tmp, "c"), hostDir: "x/y", wantErr: `attach marker host dir "x/y": not an absolute path`},
		{name: "dir below a file", dir: filepath.Join(tmp, "file", "sub"), wantErr: "create attach marker dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(tmp, "file"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := New(tc.dir, tc.hostDir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New(%q, %q) error = %v, want %q", tc.dir, tc.hostDir, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.HostDir() != tc.wantHost {
				t.Errorf("HostDir() = %q, want %q", m.HostDir(), tc.wantHost)
			}
			fi, err := os.Stat(tc.dir)
			if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
				t.Errorf("dir %s: %v, %v; want a 0755 dir", tc.dir, fi, err)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	m, err := New(filepath.Join(t.TempDir(), "attached"), "/host/attached")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, claim, device                  string
		wantName, wantHost, wantCtr, wantErr string
	}{
		{name: "plain", claim: "3f2a-11", device: "pci-0000-3b-02-1",
			wantName: "3f2a-11-pci-0000-3b-02-1", wantHost: "/host/attached/3f2a-11-pci-0000-3b-02-1",
			wantCtr: "/run/sriov.dra.dev/attached/pci-0000-3b-02-1"},
		{name: "empty claim", claim: "", device: "d", wantErr: "claim UID is empty"},
		{name: "empty device", claim: "c", device: "", wantErr: "device is empty"},
		{name: "slash in device", claim: "c", device: "a/b", wantErr: `device "a/b" is not usable`},
		{name: "dot-dot claim", claim: "..", device: "d", wantErr: `claim UID ".." is not usable`},
		{name: "NUL in claim", claim: "a\x00", device: "d", wantErr: "claim UID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := Name(tc.claim, tc.device)
			_, perr := m.Path(tc.claim, tc.device)
			h, herr := m.HostPath(tc.claim, tc.device)
			if tc.wantErr != "" {
				for _, e := range []error{err, perr, herr, m.Create(tc.claim, tc.device), m.Remove(tc.claim, tc.device)} {
					if e == nil || !strings.Contains(e.Error(), tc.wantErr) {
						t.Errorf("error = %v, want %q", e, tc.wantErr)
					}
				}
				return
			}
			if err != nil || perr != nil || herr != nil {
				t.Fatal(err, perr, herr)
			}
			if n != tc.wantName || h != tc.wantHost {
				t.Errorf("Name, HostPath = %q, %q; want %q, %q", n, h, tc.wantName, tc.wantHost)
			}
			c, err := ContainerPath(tc.device)
			if err != nil || c != tc.wantCtr {
				t.Errorf("ContainerPath = %q, %v; want %q", c, err, tc.wantCtr)
			}
		})
	}
	if _, err := ContainerPath(".."); err == nil {
		t.Error(`ContainerPath("..") succeeded`)
	}
}

func TestCreateRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "attached")
	m, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	exists := func(want bool) {
		t.Helper()
		got, err := m.Exists("claim", "dev")
		if err != nil || got != want {
			t.Fatalf("Exists = %v, %v; want %v", got, err, want)
		}
	}
	steps := []struct {
		name string
		op   func(claim, dev string) error
		want bool
	}{
		{"remove missing is fine", m.Remove, false},
		{"create", m.Create, true},
		{"create again keeps it", m.Create, true},
		{"remove", m.Remove, false},
		{"remove again", m.Remove, false},
	}
	for _, s := range steps {
		if err := s.op("claim", "dev"); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		exists(s.want)
	}
	if err := m.Create("claim", "dev"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "claim-dev"))
	if err != nil || fi.Size() != 0 || fi.Mode() != 0o644 {
		t.Errorf("marker: %v, %v; want an empty 0644 file", fi, err)
	}
	// Another device's marker is independent.
	if ok, _ := m.Exists("claim", "dev2"); ok {
		t.Error("marker of dev2 exists")
	}

	// The marker dir removed under the daemon: Create fails with a clear
	// error, Remove still succeeds.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := m.Create("claim", "dev"); err == nil || !strings.Contains(err.Error(), "create attach marker of device dev (claim claim)") {
		t.Errorf("Create without the dir: %v", err)
	}
	if err := m.Remove("claim", "dev"); err != nil {
		t.Errorf("Remove without the dir: %v", err)
	}
	// A file where the dir should be: no marker can be there.
	if err := os.WriteFile(dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("claim", "dev"); err != nil {
		t.Errorf("Remove with a file as dir: %v", err)
	}
	exists(false)
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	// A marker that cannot be removed (a non-empty dir in its place) is an
	// error naming the device.
	if err := os.MkdirAll(filepath.Join(dir, "claim-dev", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("claim", "dev"); err == nil || !strings.Contains(err.Error(), "remove attach marker of device dev (claim claim)") {
		t.Errorf("Remove of a non-empty dir: %v", err)
	}
}

func TestMountOptions(t *testing.T) {
	o := MountOptions()
	want := "bind,ro,nosuid,nodev,noexec"
	if strings.Join(o, ",") != want {
		t.Fatalf("MountOptions = %v, want %s", o, want)
	}
	o[0] = "x"
	if MountOptions()[0] != "bind" {
		t.Error("MountOptions shares its slice")
	}
}

// List finds only this package's markers: empty regular files named
// "<claim UID (UUID)>-<device>"; everything else in the dir is left out.
func TestListOnlyOurs(t *testing.T) {
	dir := t.TempDir()
	m, err := New(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	const uid = "c0ffee00-0000-4000-8000-000000000001"
	if err := m.Create(uid, "pci-0000-5e-00-1"); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"README":                  "",
		uid + "-pci-0000-5e-00-2": "not empty",
		"u1-pci-0000-5e-00-1":     "", // claim UID not a UUID
		"C0FFEE00-0000-4000-8000-000000000001-dev0": "", // upper case: not the API server's form
		"c0ffee00x0000-4000-8000-000000000001-dev0": "",
		uid + "-":        "",
		uid + "-.hidden": "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, uid+"-pci-0000-5e-00-3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, uid+"-pci-0000-5e-00-4")); err != nil {
		t.Fatal(err)
	}
	got, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Marker{{ClaimUID: uid, Device: "pci-0000-5e-00-1", Path: filepath.Join(dir, uid+"-pci-0000-5e-00-1")}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("List = %+v, want %+v", got, want)
	}
	if got, err := (&Marks{dir: filepath.Join(dir, "missing")}).List(); err != nil || got != nil {
		t.Errorf("List of a missing dir = %v, %v", got, err)
	}
}

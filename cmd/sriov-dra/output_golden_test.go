package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/devicesview"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/*.golden from the commands' output")

// checkGolden compares out with testdata/name byte for byte (or rewrites
// the file with -update-golden).
func checkGolden(t *testing.T, name, out string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run with -update-golden to create it)", err)
	}
	if out != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", path, out, want)
	}
}

// The table, JSON and YAML output of `inventory` and `devices` stay byte
// for byte as the golden files say: scripts parse them.
func TestOutputGolden(t *testing.T) {
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB(), sysfstest.SRIOVDisabled()}})
	for _, format := range []string{"table", "json", "yaml"} {
		t.Run("inventory-"+format, func(t *testing.T) {
			out, log, code := runCLI(t, context.Background(), "inventory", "--host-root", h.Root, "-o", format)
			if code != 0 {
				t.Fatalf("exit code %d\n%s", code, log)
			}
			checkGolden(t, "inventory."+format+".golden", strings.ReplaceAll(out, h.Root, "<root>"))
		})
		t.Run("devices-"+format, func(t *testing.T) {
			out, err := runDevices(t, []string{"sriov-dra", "devices", "-o", format}, func(string, string) (devicesview.API, error) { return devicesFixture(t), nil })
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "devices."+format+".golden", out)
		})
	}
}

package netattach

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPodNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "empty")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pod := newNetns(t, "chk")
	for _, tc := range []struct {
		name, path string
		want       []string // in the error; none: accepted
	}{
		{"a pod netns", pod, nil},
		{"the host netns", HostNetnsPath, []string{"host network namespace"}},
		{"the host netns by another path", "/proc/self/ns/net", []string{"host network namespace"}},
		{"an empty file (mount not propagated)", file, []string{"not a network namespace", "HostToContainer"}},
		{"a folder", dir, []string{"not a network namespace", "file mode"}},
		{"missing", filepath.Join(dir, "gone"), []string{"not a network namespace", "does not exist"}},
		{"another namespace type", "/proc/self/ns/mnt", []string{"not a network namespace"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPodNetns(tc.path, HostNetnsPath)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tc.want, tc.path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

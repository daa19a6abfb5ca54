// Package attachmark names and manages the "attached" marker files that make
// a container's creation depend on its netdevs being in the pod's network
// namespace, whether or not the NRI plugin is connected.
//
// At Prepare, the CDI spec of every device that is moved into the pod netns
// (netdevice-mode VFs and PFs; never vfio-pci) gets a read-only bind mount
// of the marker file <host dir>/<claim UID>-<device> at
// /run/sriov.dra.dev/attached/<device> in the container. The marker does
// not exist yet, so the runtime cannot create the container ("no such file
// or directory", CreateContainerError) and kubelet retries with backoff.
// The NRI plugin creates the marker right after it recorded the attach and
// removes it before it moves the netdev out again; Unprepare removes any
// left. So a container only starts while its device is attached.
//
// The marker dir may be seen under different paths by the daemon (Dir:
// where it creates and removes markers) and by the container runtime on
// the host (HostDir: the CDI mount's source). In production both are the
// same host path, mounted at the same place in the daemon's pod.
package attachmark

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	// DefaultDir is the default marker dir, as the daemon and the host see
	// it.
	DefaultDir = "/var/run/sriov-dra/attached"
	// ContainerDir is where a container sees its devices' markers: one
	// file per device, named after the ResourceSlice device. Device names
	// are unique within the driver's pool on a node, so the devices of all
	// the pod's claims never collide there.
	ContainerDir = "/run/sriov.dra.dev/attached"

	dirMode    = 0o755
	markerMode = 0o644
)

// mountOptions are the options of the marker's bind mount in a container.
var mountOptions = []string{"bind", "ro", "nosuid", "nodev", "noexec"}

// MountOptions returns the options of the marker's bind mount (a fresh
// slice each time).
func MountOptions() []string { return append([]string(nil), mountOptions...) }

// Marks manages the marker files in one dir.
type Marks struct {
	dir     string
	hostDir string
}

// New returns the markers in dir (as this process sees it) whose path on
// the host, for the container runtime, is hostDir ("" means dir). Both
// must be absolute. It creates dir (0755) when missing.
func New(dir, hostDir string) (*Marks, error) {
	if hostDir == "" {
		hostDir = dir
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("attach marker dir %q: not an absolute path", dir)
	}
	if !path.IsAbs(hostDir) {
		return nil, fmt.Errorf("attach marker host dir %q: not an absolute path", hostDir)
	}
	m := &Marks{dir: filepath.Clean(dir), hostDir: path.Clean(hostDir)}
	if err := os.MkdirAll(m.dir, dirMode); err != nil {
		return nil, fmt.Errorf("create attach marker dir: %w", err)
	}
	return m, nil
}

// Dir is the marker dir as this process sees it.
func (m *Marks) Dir() string { return m.dir }

// HostDir is the marker dir as the container runtime sees it.
func (m *Marks) HostDir() string { return m.hostDir }

// Name is the marker's file name for a claim's device.
func Name(claimUID, device string) (string, error) {
	if err := checkPart("claim UID", claimUID); err != nil {
		return "", err
	}
	if err := checkPart("device", device); err != nil {
		return "", err
	}
	return claimUID + "-" + device, nil
}

func checkPart(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("attach marker: %s is empty", what)
	case s == "." || s == ".." || strings.ContainsAny(s, "/\x00"):
		return fmt.Errorf("attach marker: %s %q is not usable in a file name", what, s)
	}
	return nil
}

// Path is the marker of a claim's device as this process sees it.
func (m *Marks) Path(claimUID, device string) (string, error) {
	n, err := Name(claimUID, device)
	if err != nil {
		return "", err
	}
	return filepath.Join(m.dir, n), nil
}

// HostPath is the marker of a claim's device as the container runtime
// sees it: the source of the CDI bind mount.
func (m *Marks) HostPath(claimUID, device string) (string, error) {
	n, err := Name(claimUID, device)
	if err != nil {
		return "", err
	}
	return path.Join(m.hostDir, n), nil
}

// ContainerPath is where a container sees the marker of its device.
func ContainerPath(device string) (string, error) {
	if err := checkPart("device", device); err != nil {
		return "", err
	}
	return path.Join(ContainerDir, device), nil
}

// Create creates the (empty, 0644) marker of a claim's device; an existing
// one is left as it is.
func (m *Marks) Create(claimUID, device string) error {
	p, err := m.Path(claimUID, device)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, markerMode)
	if err != nil {
		return fmt.Errorf("create attach marker of device %s (claim %s): %w", device, claimUID, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create attach marker of device %s (claim %s): %w", device, claimUID, err)
	}
	return nil
}

// Remove removes the marker of a claim's device; a missing one (or a
// marker dir that is not a directory) is fine.
func (m *Marks) Remove(claimUID, device string) error {
	p, err := m.Path(claimUID, device)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !absent(err) {
		return fmt.Errorf("remove attach marker of device %s (claim %s): %w", device, claimUID, err)
	}
	return nil
}

// absent tells whether err means the marker cannot be there: missing, or
// a component of its dir is not a directory.
func absent(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// Exists reports whether the marker of a claim's device is there.
func (m *Marks) Exists(claimUID, device string) (bool, error) {
	p, err := m.Path(claimUID, device)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	switch {
	case err == nil:
		return true, nil
	case absent(err):
		return false, nil
	default:
		return false, fmt.Errorf("attach marker of device %s (claim %s): %w", device, claimUID, err)
	}
}

// Marker is a marker file found in the dir.
type Marker struct {
	ClaimUID, Device string
	// Path is the file as this process sees it.
	Path string
}

// uuidLen is the length of a claim UID as the API server makes them
// (a UUID in its 8-4-4-4-12 form).
const uuidLen = 36

// List returns the markers this package made in the dir: empty regular
// files named "<claim UID>-<device>", the claim UID a lowercase UUID as
// the API server assigns, the device a non-empty name. Anything else in
// the dir is not listed, so a caller removing what is listed never
// touches it. A missing dir has none.
func (m *Marks) List() ([]Marker, error) {
	ents, err := os.ReadDir(m.dir)
	if absent(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list attach markers in %s: %w", m.dir, err)
	}
	var out []Marker
	for _, e := range ents {
		uid, dev, ok := parseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() != 0 {
			continue
		}
		out = append(out, Marker{ClaimUID: uid, Device: dev, Path: filepath.Join(m.dir, e.Name())})
	}
	return out, nil
}

// parseName splits a marker's file name into claim UID and device.
func parseName(name string) (claimUID, device string, ok bool) {
	if len(name) < uuidLen+2 || name[uuidLen] != '-' {
		return "", "", false
	}
	claimUID, device = name[:uuidLen], name[uuidLen+1:]
	for i, c := range claimUID {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", "", false
			}
		case (c < '0' || c > '9') && (c < 'a' || c > 'f'):
			return "", "", false
		}
	}
	if checkPart("device", device) != nil || strings.HasPrefix(device, ".") {
		return "", "", false
	}
	return claimUID, device, true
}

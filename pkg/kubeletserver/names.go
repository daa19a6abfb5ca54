package kubeletserver

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
)

// Kubelet's default directories (below its --root-dir /var/lib/kubelet).
const (
	// DefaultRegistryDir is where kubelet's plugin watcher looks for
	// registration sockets.
	DefaultRegistryDir = "/var/lib/kubelet/plugins_registry"
	// DefaultPluginsDir holds one directory per driver (DefaultPluginDir).
	DefaultPluginsDir = "/var/lib/kubelet/plugins"
	// DefaultCDIDir is where the runtime reads CDI specs.
	DefaultCDIDir = "/var/run/cdi"
)

// DefaultPluginDir is the driver's directory for its DRA socket, the
// metadata files and the rolling update lock.
func DefaultPluginDir(driverName string) string {
	return filepath.Join(DefaultPluginsDir, driverName)
}

// maxSocketPath is the length of sun_path, the terminating NUL included:
// kubelet and the upstream helper compare the joined path with it.
const maxSocketPath = 108

// RegistrarSocketFile is the registration socket's file name in
// registryDir. Without a pod UID it is "<driver>-reg.sock". With one
// (rolling updates: old and new daemon pods register side by side) it is
// the first of these whose full path fits a unix socket:
// "<driver>-<pod UID>-reg.sock", "<driver>-<b64(sha256(uid))[:8 bytes]>-reg.sock",
// "dra-<b64(sha256(driver NUL uid))[:16 bytes]>-reg.sock" (unpadded
// URL-safe base64), the names daemons on the upstream helper use.
func RegistrarSocketFile(registryDir, driverName string, podUID types.UID) string {
	if podUID == "" {
		return driverName + "-reg.sock"
	}
	uid := string(podUID)
	enc := base64.RawURLEncoding
	uidSum := sha256.Sum256([]byte(uid))
	bothSum := sha256.Sum256([]byte(driverName + "\x00" + uid))
	names := [...]string{
		driverName + "-" + uid + "-reg.sock",
		driverName + "-" + enc.EncodeToString(uidSum[:8]) + "-reg.sock",
		"dra-" + enc.EncodeToString(bothSum[:16]) + "-reg.sock",
	}
	for _, n := range names[:len(names)-1] {
		if len(filepath.Join(registryDir, n)) <= maxSocketPath {
			return n
		}
	}
	return names[len(names)-1]
}

// PluginSocketFile is the DRA socket's file name in the driver's plugin
// dir: "dra.sock", or "dra-<pod UID>.sock" with rolling updates.
func PluginSocketFile(podUID types.UID) string {
	if podUID == "" {
		return "dra.sock"
	}
	return "dra-" + string(podUID) + ".sock"
}

// LockFile is the file that serializes kubelet's calls across the daemons
// of a rolling update: "serialize.lock" in the plugin dir.
func LockFile(pluginDir string) string {
	return filepath.Join(pluginDir, "serialize.lock")
}

// callSerializer lets one kubelet call at a time into the plugin: within the
// process with a mutex, across processes (rolling updates) with a lock on
// LockFile. The lock is an open file description lock (F_OFD_SETLKW, a
// write lock on the whole file), the kind the upstream helper takes, so
// an old daemon on it and a new one on this package exclude each other;
// flock(2) locks would not.
type callSerializer struct {
	on   bool
	path string // "" for the in-process mutex
	mu   sync.Mutex
}

// lock waits for the turn and returns its release.
func (s *callSerializer) lock() (func(), error) {
	if !s.on {
		return func() {}, nil
	}
	if s.path == "" {
		s.mu.Lock()
		return s.mu.Unlock, nil
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open the rolling update lock file: %w", err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	for {
		err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLKW, &lk)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", s.path, err)
	}
	// Closing the only descriptor of the open file description releases
	// the lock.
	return func() { _ = f.Close() }, nil
}

package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSysfsValue bounds what one read of a sysfs attribute returns; sysfs
// attributes are at most a page.
const maxSysfsValue = 4096

// ref names a file for the *at syscalls: rel is relative to the open
// directory fd (its path is base), or an ordinary path with fd =
// unix.AT_FDCWD. A scan opens each PF's parent folder once and reaches
// the PF and its VFs (siblings there) with short relative lookups: on
// sysfs most of a syscall's cost is walking the long path.
type ref struct {
	fd   int
	base string
	rel  string
}

// pathRef refers to p the ordinary way.
func pathRef(p string) ref { return ref{fd: unix.AT_FDCWD, rel: p} }

// openDir opens dir (O_PATH) to look things up below it; when that fails
// it falls back to ordinary paths. Call the returned func to close it.
func openDir(dir string) (ref, func()) {
	fd, err := openRetry(unix.AT_FDCWD, dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return pathRef(dir), func() {}
	}
	return ref{fd: fd, base: dir, rel: "."}, func() { unix.Close(fd) }
}

func (r ref) join(elem ...string) ref {
	r.rel = filepath.Join(append([]string{r.rel}, elem...)...)
	return r
}

// String is the full path, for messages.
func (r ref) String() string {
	if r.fd == unix.AT_FDCWD {
		return r.rel
	}
	return filepath.Join(r.base, r.rel)
}

// readValue reads a small sysfs file and returns its content without
// surrounding white space. It uses one open, one read and one close: a
// sysfs attribute is produced whole by the first read, so a read shorter
// than the buffer is the end of the file (ext4 and tmpfs fixtures behave
// the same). It skips os.File, which adds an fstat and poller set-up per
// file; a full scan reads thousands of these and syscalls dominate.
func readValue(r ref) (string, error) {
	var buf [maxSysfsValue]byte
	n, err := readInto(r, buf[:])
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

func readInto(r ref, buf []byte) (int, error) {
	fd, err := openRetry(r.fd, r.rel, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: r.String(), Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &fs.PathError{Op: "read", Path: r.String(), Err: err}
		}
		n += m
		if m == 0 || n < len(buf) {
			break
		}
	}
	return n, nil
}

func openRetry(dirfd int, path string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, path, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// readLink returns a symlink's target.
func readLink(r ref) (string, error) {
	var buf [4096]byte
	for {
		n, err := unix.Readlinkat(r.fd, r.rel, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: r.String(), Err: err}
		}
		if n >= len(buf) {
			return "", &fs.PathError{Op: "readlink", Path: r.String(), Err: unix.ENAMETOOLONG}
		}
		return string(buf[:n]), nil
	}
}

// readLinkBase returns the last element of a symlink's target.
func readLinkBase(r ref) (string, error) {
	t, err := readLink(r)
	if err != nil {
		return "", err
	}
	return filepath.Base(t), nil
}

// exists reports whether r (following symlinks) is there.
func exists(r ref) error {
	var st unix.Stat_t
	if err := unix.Fstatat(r.fd, r.rel, &st, 0); err != nil {
		return &fs.PathError{Op: "stat", Path: r.String(), Err: err}
	}
	return nil
}

// listDir returns the sorted entry names of a directory (without "." and
// ".."). Like readValue it saves syscalls: when the first getdents leaves
// more room in the buffer than the largest possible entry, the directory
// has been read whole.
func listDir(r ref) ([]string, error) {
	fd, err := openRetry(r.fd, r.rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: r.String(), Err: err}
	}
	defer unix.Close(fd)
	var buf [8192]byte
	var names []string
	for {
		n, err := unix.Getdents(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "getdents", Path: r.String(), Err: err}
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		if n < len(buf)-maxDirent {
			break
		}
	}
	sort.Strings(names)
	return names, nil
}

// maxDirent is the largest linux_dirent64: header plus a 255-byte name, aligned.
const maxDirent = 19 + 256 + 8

// isNotExist reports whether err means the file (or the device) is gone.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV)
}

// parseInt parses a decimal sysfs integer such as "8" or "-1".
func parseInt(s string) (int, error) {
	s = strings.TrimSpace(s)
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("not a decimal integer: %q", clip(s))
	}
	return int(v), nil
}

// parseHexID parses a PCI ID as sysfs prints it ("0x15b3") into four
// lower-case hex digits without 0x ("15b3").
func parseHexID(s string) (string, error) {
	s = strings.TrimSpace(s)
	h := s
	if len(h) >= 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X') {
		h = h[2:]
	}
	if h == "" || len(h) > 4 {
		return "", fmt.Errorf("not a 16-bit hex PCI ID: %q", clip(s))
	}
	v, err := strconv.ParseUint(h, 16, 16)
	if err != nil {
		return "", fmt.Errorf("not a 16-bit hex PCI ID: %q", clip(s))
	}
	return fmt.Sprintf("%04x", v), nil
}

// parseMAC parses a netdev address (6 bytes Ethernet, 20 bytes IPoIB)
// into lower-case colon form.
func parseMAC(s string) (string, error) {
	s = strings.TrimSpace(s)
	hw, err := net.ParseMAC(s)
	if err != nil {
		return "", fmt.Errorf("not a hardware address: %q", clip(s))
	}
	return hw.String(), nil
}

// parseLinkType maps /sys/class/net/<if>/type (ARPHRD_*) to a LinkType.
func parseLinkType(s string) (LinkType, error) {
	v, err := parseInt(s)
	if err != nil {
		return LinkTypeUnknown, err
	}
	switch v {
	case unix.ARPHRD_ETHER:
		return LinkTypeEthernet, nil
	case unix.ARPHRD_INFINIBAND:
		return LinkTypeInfiniBand, nil
	}
	return LinkTypeUnknown, nil
}

// parseNUMA parses numa_node; -1 (and any negative value) is NUMAUnknown.
func parseNUMA(s string) (int, error) {
	v, err := parseInt(s)
	if err != nil {
		return NUMAUnknown, err
	}
	if v < 0 {
		return NUMAUnknown, nil
	}
	return v, nil
}

// clip shortens garbage read from a file for error messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

package netattach

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// nsGetNsType is NS_GET_NSTYPE (_IO(0xb7, 0x3)): the CLONE_NEW* type of
// the namespace an nsfs file descriptor refers to.
const nsGetNsType = 0xb703

// NetnsGone reports whether the path no longer names a network namespace,
// so that nothing can still be in it and a physical netdev that was there
// is back in the host netns (the kernel returns it when the netns dies).
// Gone means exactly one of:
//
//   - the path does not exist (ENOENT, or ENOTDIR for a parent that is
//     not a folder): the runtime removed the bind mount;
//   - the path exists but is not on nsfs (a plain file or folder left
//     after the bind mount was undone, a FIFO, a wrong path): setns on
//     it would fail with EINVAL, which is why EINVAL is not an error to
//     retry but this answer;
//   - the path is an nsfs file of another namespace type.
//
// Every other failure (EACCES, EMFILE, ...) is an error and not gone: a
// caller must retry rather than look for the device elsewhere.
func NetnsGone(path string) (bool, string, error) {
	var fst unix.Stat_t
	err := unix.Stat(path, &fst)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return true, "the path does not exist", nil
	case err != nil:
		return false, "", &os.PathError{Op: "stat netns", Path: path, Err: err}
	case fst.Mode&unix.S_IFMT != unix.S_IFREG:
		// An nsfs file shows as a regular file; a folder, FIFO, socket
		// or device node is not a namespace.
		return true, fmt.Sprintf("the path is not a namespace (file mode %#o)", fst.Mode), nil
	}
	// O_NONBLOCK: should the path have become a FIFO since, do not wait.
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return true, "the path does not exist", nil
	case err != nil:
		return false, "", &os.PathError{Op: "open netns", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return false, "", &os.PathError{Op: "statfs netns", Path: path, Err: err}
	}
	if st.Type != unix.NSFS_MAGIC {
		return true, fmt.Sprintf("the path is not a namespace (filesystem type %#x, not nsfs)", st.Type), nil
	}
	typ, err := unix.IoctlRetInt(fd, nsGetNsType)
	if err != nil {
		return false, "", &os.PathError{Op: "namespace type of", Path: path, Err: err}
	}
	if typ != unix.CLONE_NEWNET {
		return true, fmt.Sprintf("the path is a namespace of another type (%#x), not a network namespace", typ), nil
	}
	return false, "", nil
}

// checkPodNetns refuses, before anything moves, a pod netns path that is
// not a network namespace (see NetnsGone) or that is the host's own
// network namespace (hostPath): moving a device "into" the host netns
// would rename and address it on the node itself.
func checkPodNetns(path, hostPath string) error {
	gone, why, err := NetnsGone(path)
	if err != nil {
		return err
	}
	if gone {
		err := fmt.Errorf("netns %s is not a network namespace: %s", path, why)
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			// An empty file where the runtime bind-mounted the netns: the
			// mount did not reach the driver's mount namespace.
			err = fmt.Errorf("%w (is the runtime's netns directory mounted into the driver with HostToContainer propagation?)", err)
		}
		return err
	}
	var pod, host unix.Stat_t
	if err := unix.Stat(path, &pod); err != nil {
		return &os.PathError{Op: "stat netns", Path: path, Err: err}
	}
	if err := unix.Stat(hostPath, &host); err != nil {
		return &os.PathError{Op: "stat host netns", Path: hostPath, Err: err}
	}
	if pod.Dev == host.Dev && pod.Ino == host.Ino {
		return fmt.Errorf("netns %s is the host network namespace (the driver's own): a device is never moved there", path)
	}
	return nil
}

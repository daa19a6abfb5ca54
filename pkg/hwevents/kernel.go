package hwevents

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Kernel is the host's Source: kernel uevents and rtnetlink link events
// of the calling process's network namespace (the daemon runs with host
// networking; uevents reach listeners in the initial network namespace
// only).
type Kernel struct {
	// Links adds rtnetlink link events (a PF's link going down, a VF's
	// netdev leaving for a pod or coming back).
	Links bool
}

var _ Source = Kernel{}

// uventGroup is the multicast group the kernel sends uevents to (udev
// re-broadcasts on group 2, which is not joined).
const ueventGroup = 1

// ueventRcvBuf is the socket buffer asked for: enabling 128 VFs sends
// several hundred uevents in a burst.
const ueventRcvBuf = 4 << 20

// Subscribe implements Source.
func (k Kernel) Subscribe(ctx context.Context) (<-chan Event, error) {
	logger := klog.FromContext(ctx)
	fd, err := openUevents()
	if err != nil {
		return nil, err
	}
	out := make(chan Event, 256)
	var links <-chan netlink.LinkUpdate
	linkDone := make(chan struct{})
	linkErrs := make(chan error, 1)
	if k.Links {
		ch := make(chan netlink.LinkUpdate, 256)
		err := netlink.LinkSubscribeWithOptions(ch, linkDone, netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) {
				select {
				case linkErrs <- err:
				default:
				}
			},
		})
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("subscribe to rtnetlink link events: %w", err)
		}
		links = ch
	}
	uevents := make(chan Event, 256)
	go readUevents(ctx, fd, uevents, ParseUevent)
	go func() {
		defer close(out)
		defer close(linkDone)
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-uevents:
				if !ok {
					return
				}
				if !send(ev) {
					return
				}
			case err := <-linkErrs:
				logger.Error(err, "Link event subscription failed; uevents and the safety-net scan go on")
				links = nil
				// A lost link event may hide a change: rescan everything once.
				if !send(Event{Origin: OriginLink, Resync: true}) {
					return
				}
			case u, ok := <-links:
				if !ok {
					links = nil
					continue
				}
				ev := Event{Origin: OriginLink, Action: "newlink", Subsystem: "net"}
				if u.Header.Type == unix.RTM_DELLINK {
					ev.Action = "dellink"
				}
				if u.Link != nil {
					ev.IfName = u.Link.Attrs().Name
				}
				if !send(ev) {
					return
				}
			}
		}
	}()
	return out, nil
}

// openUevents opens and binds the uevent socket.
func openUevents() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return -1, fmt.Errorf("open uevent socket: %w", err)
	}
	// A bigger buffer than the default makes an overflow in a burst
	// unlikely; FORCE works with CAP_NET_ADMIN (the daemon has it), the
	// plain option up to the system's rmem_max otherwise.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ueventRcvBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, ueventRcvBuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: ueventGroup}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind uevent socket to the kernel's group: %w", err)
	}
	return fd, nil
}

// readUevents reads datagrams until ctx ends, then closes the socket and
// out. The socket is non-blocking and waits in Go's poller: an idle
// daemon is not woken up, and closing the file at ctx's end releases the
// reader.
func readUevents(ctx context.Context, fd int, out chan<- Event, parse func([]byte) (Event, bool)) {
	logger := klog.FromContext(ctx)
	defer close(out)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		logger.Error(err, "Uevent socket unusable; relying on the safety-net scan")
		return
	}
	f := os.NewFile(uintptr(fd), "uevent")
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		if stop() {
			f.Close()
		}
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		logger.Error(err, "Uevent socket unusable; relying on the safety-net scan")
		return
	}
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			if ctx.Err() == nil {
				logger.Error(err, "Reading uevents failed; relying on the safety-net scan")
			}
			return
		}
		var ev Event
		var ok bool
		switch {
		case errors.Is(rerr, unix.EINTR):
			continue
		case errors.Is(rerr, unix.ENOBUFS):
			// The kernel dropped uevents: rescan everything.
			logger.Info("Uevents lost (socket buffer overflow); rescanning every PF")
			ev, ok = Event{Origin: OriginUevent, Resync: true}, true
		case rerr != nil:
			logger.Error(os.NewSyscallError("recvfrom", rerr), "Reading uevents failed; relying on the safety-net scan")
			return
		default:
			// Only the kernel (port 0) sends uevents; anything else is
			// ignored.
			if sa, isNL := from.(*unix.SockaddrNetlink); !isNL || sa.Pid != 0 {
				continue
			}
			ev, ok = parse(buf[:n])
		}
		if !ok {
			continue
		}
		logger.V(5).Info("Device event", "action", ev.Action, "subsystem", ev.Subsystem, "pci", ev.PCIAddress, "ifName", ev.IfName)
		select {
		case out <- ev:
		case <-ctx.Done():
			return
		}
	}
}

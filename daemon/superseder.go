package daemon

// This file holds what a daemon whose checkpoint another one took over
// does when that other daemon goes away first.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/driver"
)

// supersederCheck is how often a superseded daemon checks that the daemon
// that took its checkpoint over still serves; supersederMisses checks in
// a row without an answer mean it is gone.
const (
	supersederCheck  = 2 * time.Second
	supersederMisses = 3
)

// watchSuperseder runs in a daemon whose checkpoint another daemon took
// over (a rolling update). Normally that other daemon is the new pod and
// this one is deleted soon. But when the old pod's container restarts
// after the new pod started, the old one takes the checkpoint back and
// may then be deleted, leaving this daemon refusing every checkpoint
// write, and so every Unprepare, for good. So once the owner's DRA socket
// has not answered supersederMisses times in a row, watchSuperseder
// returns an error: the daemon ends, kubelet restarts its container, and
// the new process takes the checkpoint over with the owner's records.
// Owners without a pod UID (no rolling updates) are not watched.
func (d *Daemon) watchSuperseder(ctx context.Context, every time.Duration) error {
	logger := klog.FromContext(ctx)
	t := time.NewTicker(every)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var sup *driver.SupersededError
		if err := d.store.CheckOwner(); !errors.As(err, &sup) || strings.HasPrefix(sup.By, "pid-") {
			misses = 0
			continue
		}
		sock := driver.PluginSockets(d.cfg.KubeletRegistryDir, d.cfg.KubeletPluginsDir, d.cfg.DriverName, types.UID(sup.By)).Plugin
		err := answers(sock, every)
		if err == nil {
			misses = 0
			continue
		}
		misses++
		logger.V(2).Info("The daemon that took the checkpoint over does not answer", "owner", sup.By, "socket", sock, "misses", misses, "err", err)
		if misses >= supersederMisses {
			return fmt.Errorf("the daemon that took the checkpoint over (pod %s) is gone: its DRA socket %s did not answer %d times in a row; exiting, so that this daemon restarts and takes the checkpoint back", sup.By, sock, misses)
		}
	}
}

// answers reports whether something listens on the unix socket at path.
func answers(path string, timeout time.Duration) error {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

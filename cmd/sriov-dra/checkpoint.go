package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/pkg/attachmark"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
)

// checkpointOptions locate the daemon's files; the flags and their
// environment variables are the daemon's own, so in the daemon's pod
// `sriov-dra checkpoint ...` finds them without flags.
type checkpointOptions struct {
	stateDir, hostRoot, cdiDir, markerDir string
}

func newCheckpointCmd() *cobra.Command {
	var o checkpointOptions
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "List the node daemon's claim records, or drop one",
		Long: `The node daemon records every claim it prepared in a checkpoint file in its
state dir. "checkpoint list" prints the records; "checkpoint drop" makes the
daemon forget one record without undoing anything, for the record whose
release can never succeed (its IPAM plugin is gone for good).

Run it on the node, in the daemon's pod (kubectl exec): it reads the same
STATE_DIR, HOST_ROOT, CDI_DIR and ATTACH_MARKER_DIR as the daemon. The
file is read and changed only under its lock; a drop is a request the
running daemon applies itself (so it never writes its copy of the record
back), within seconds, or when it next starts.`,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.stateDir, "state-dir", "/var/lib/sriov-dra", "the daemon's state dir (holds "+driver.CheckpointFile+")")
	f.StringVar(&o.hostRoot, "host-root", "/", "host filesystem root (the boot ID is read below it)")
	f.StringVar(&o.cdiDir, "cdi-dir", cdi.DefaultDir, "the daemon's CDI spec dir")
	f.StringVar(&o.markerDir, "attach-marker-dir", attachmark.DefaultDir, "the daemon's attach marker dir")
	f.VisitAll(func(fl *pflag.Flag) {
		if env, ok := envOf[fl.Name]; ok {
			fl.Usage += " [$" + env + "]"
		}
	})
	cmd.AddCommand(newCheckpointListCmd(&o), newCheckpointDropCmd(&o))
	return cmd
}

func newCheckpointListCmd(o *checkpointOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Print the claim records of the checkpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cp, path, err := driver.ReadCheckpoint(o.stateDir, o.hostRoot)
			if err != nil {
				return err
			}
			printRecords(cmd.OutOrStdout(), cp, path)
			return nil
		},
	}
}

func printRecords(w io.Writer, cp *driver.Checkpoint, path string) {
	if len(cp.Claims) == 0 {
		fmt.Fprintf(w, "No claim records in %s.\n", path)
		return
	}
	requested := map[string]bool{}
	for _, r := range cp.DropRequests {
		requested[r.ClaimUID] = true
	}
	uids := make([]string, 0, len(cp.Claims))
	for uid := range cp.Claims {
		uids = append(uids, uid)
	}
	sort.Strings(uids)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLAIM UID\tCLAIM\tPOD\tPHASE\tDEVICES\tSTATE")
	for _, uid := range uids {
		rec := cp.Claims[uid]
		var devs []string
		for _, dr := range rec.Devices {
			devs = append(devs, dr.Device)
		}
		state := "prepared"
		if s := rec.Stale; s != nil {
			state = fmt.Sprintf("stale (boot %s), release pending, %d failed", s.BootID, s.Attempts)
			if s.LastError != "" {
				state += ": " + s.LastError
			}
		}
		if requested[uid] {
			state += "; drop requested"
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s/%s\t%s\t%s\t%s\n", uid, rec.Namespace, rec.Name, rec.PodNamespace, rec.PodName, rec.Phase, strings.Join(devs, ","), state)
	}
	tw.Flush()
}

func newCheckpointDropCmd(o *checkpointOptions) *cobra.Command {
	var (
		yes     bool
		waitFor time.Duration
	)
	cmd := &cobra.Command{
		Use:   "drop <claim UID>",
		Short: "Make the daemon forget one claim record, undoing nothing",
		Long: `drop prints what the record still holds on the node, which stays as it is
after the drop: IPAM allocations that are not released (with the plugin and
the CNI container ID to release them by hand), VF settings, GUIDs, driver
bindings and IRQ affinities that are not restored, a netdev left in a pod's
network namespace, the CDI spec and attach markers (removed as orphans when
the daemon next starts). The claim's devices are offered to new claims
again once the record is gone.

Without --yes it only prints (and exits 2). With --yes it records a drop
request in the checkpoint, under its lock, and waits for the daemon to
apply it.`,
		Example: `  kubectl -n sriov-dra exec <driver pod on the node> -- sriov-dra checkpoint list
  kubectl -n sriov-dra exec <driver pod on the node> -- sriov-dra checkpoint drop <claim UID>
  kubectl -n sriov-dra exec <driver pod on the node> -- sriov-dra checkpoint drop <claim UID> --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDrop(cmd.OutOrStdout(), *o, args[0], yes, waitFor)
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "drop the record (without it, only print what would be left behind)")
	cmd.Flags().DurationVar(&waitFor, "wait", 30*time.Second, "how long to wait for the daemon to apply the drop (0: do not wait)")
	return cmd
}

func runDrop(w io.Writer, o checkpointOptions, uid string, yes bool, waitFor time.Duration) error {
	cp, path, err := driver.ReadCheckpoint(o.stateDir, o.hostRoot)
	if err != nil {
		return err
	}
	rec, ok := cp.Claims[uid]
	if !ok {
		return fmt.Errorf("claim %s has no record in %s (see sriov-dra checkpoint list)", uid, path)
	}
	fmt.Fprint(w, dropReport(rec, o))
	if !yes {
		return exitError{code: 2, err: errors.New("nothing changed: run again with --yes to drop the record")}
	}
	host, _ := os.Hostname()
	req := driver.DropRequest{ClaimUID: uid, By: fmt.Sprintf("sriov-dra checkpoint drop (host %s, pid %d)", host, os.Getpid()), At: time.Now().UTC().Format(time.RFC3339)}
	if err := driver.RequestDrop(o.stateDir, o.hostRoot, req); err != nil {
		return err
	}
	if waitFor <= 0 {
		fmt.Fprintf(w, "Drop requested in %s; the daemon applies it within seconds, or when it starts.\n", path)
		return nil
	}
	deadline := time.Now().Add(waitFor)
	for {
		cp, _, err := driver.ReadCheckpoint(o.stateDir, o.hostRoot)
		if err != nil {
			return err
		}
		if _, held := cp.Claims[uid]; !held {
			fmt.Fprintf(w, "Dropped: the daemon forgot claim %s.\n", uid)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the drop request is recorded in %s, but no daemon applied it within %s: is the sriov-dra daemon running on this node? It applies the request when it starts", path, waitFor)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dropReport says what the record still holds on the node: everything
// that stays when the record is dropped.
func dropReport(rec *driver.ClaimRecord, o checkpointOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Claim %s/%s (%s), pod %s/%s, phase %s", rec.Namespace, rec.Name, rec.UID, rec.PodNamespace, rec.PodName, rec.Phase)
	if s := rec.Stale; s != nil {
		fmt.Fprintf(&b, ", prepared before the node rebooted (boot %s), release failed %d times", s.BootID, s.Attempts)
		if s.LastError != "" {
			fmt.Fprintf(&b, ": %s", s.LastError)
		}
	}
	b.WriteString(".\nDropping the record undoes nothing. Left behind:\n")
	var left []string
	add := func(format string, args ...any) { left = append(left, fmt.Sprintf(format, args...)) }
	for _, dr := range rec.Devices {
		if r := dr.IPAM; r != nil {
			addrs := "addresses " + strings.Join(r.Addresses(), ",")
			if len(r.IPs) == 0 {
				addrs = "addresses not recorded (the ADD began but its result was not recorded; the plugin may hold one)"
			}
			add("IPAM allocation of device %s: plugin %q, network %q, container ID %s, interface %s, %s: not released (release it by hand: the plugin's DEL with CNI_CONTAINERID=%s CNI_IFNAME=%s and the network config %s)",
				dr.Device, r.Plugin, r.Network, r.ContainerID, r.IfName, addrs, r.ContainerID, r.IfName, compactJSON(r.NetConf))
		}
		if rec.Stale != nil {
			continue // the device came up fresh with the reboot
		}
		snap := dr.Snapshot
		if dr.Pod.NetnsPath != "" {
			orig := ""
			if dr.Pod.Original != nil {
				orig = fmt.Sprintf(" (host name %s, MAC %s, MTU %d)", dr.Pod.Original.IfName, dr.Pod.Original.MAC, dr.Pod.Original.MTU)
			}
			add("netdev of device %s: recorded in pod network namespace %s as %s: not returned to the host%s", dr.Device, dr.Pod.NetnsPath, dr.Pod.Spec.PodIfName, orig)
		} else if dr.Pod.AttachStateFromKernel && dr.Pod.Original != nil {
			o := dr.Pod.Original
			add("netdev of device %s: its attach is not recorded (derived from the kernel): if it is in a pod network namespace as %s, it is not returned to the host (host name %s, MAC %s, MTU %d)", dr.Device, dr.Pod.Spec.PodIfName, o.IfName, o.MAC, o.MTU)
		}
		if dr.Steps.VFSettings {
			s := dr.Settings
			add("VF settings of device %s (VF %d of PF %s): %s: not restored (before: MAC %s, VLAN %d, spoof check %v, trust %v)",
				dr.Device, snap.VFIndex, snap.PFName, compactJSON(mustMarshal(s)), snap.Admin.MAC, snap.Admin.VLAN, snap.Admin.SpoofChk, snap.Admin.Trust)
		}
		if dr.Steps.GUID && dr.GUID != nil {
			add("GUID of device %s: %s: not restored", dr.Device, *dr.GUID)
		}
		if dr.Steps.VFIO {
			add("driver of device %s: bound to vfio-pci: not rebound to %q", dr.Device, snap.Driver)
		}
		if dr.Pod.IRQAffinity && len(snap.IRQAffinity) > 0 {
			add("IRQ affinities of device %s (%d IRQs): not restored", dr.Device, len(snap.IRQAffinity))
		}
	}
	if rec.Stale != nil {
		add("VF settings, GUIDs, driver bindings: none to restore (the node rebooted since the claim was prepared)")
	}
	if rec.Steps.CDI {
		p := cdi.New(o.cdiDir, "").SpecPath(rec.UID)
		add("CDI spec %s (%s): left; the daemon removes it as an orphan when it next starts", p, presence(p))
	}
	for _, dr := range rec.Devices {
		if dr.Pod.VFIO {
			continue
		}
		name, err := attachmark.Name(rec.UID, dr.Device)
		if err != nil {
			continue
		}
		p := filepath.Join(o.markerDir, name)
		add("attach marker %s (%s): left; the daemon removes it as an orphan when it next starts", p, presence(p))
	}
	if rec.Phase == driver.PhasePrepareCompleted {
		add("status.devices entries of the claim in the API: left as they are")
	}
	for _, l := range left {
		b.WriteString("  - " + l + "\n")
	}
	var devs []string
	for _, dr := range rec.Devices {
		devs = append(devs, dr.Device)
	}
	fmt.Fprintf(&b, "Devices offered to new claims again once the record is gone: %s.\n", strings.Join(devs, ", "))
	return b.String()
}

func presence(p string) string {
	if _, err := os.Lstat(p); err != nil {
		return "not there now"
	}
	return "there now"
}

func compactJSON(b []byte) string {
	if len(b) == 0 {
		return "{}"
	}
	var out strings.Builder
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return string(b)
	}
	return strings.TrimSpace(out.String())
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// Command runcwrap is the OCI runtime the harness's CRI-O calls: it adapts
// the bundle's config.json (runc create) or the process file (runc exec
// --process) to what this machine allows, then runs runc (RUNCWRAP_RUNC)
// with the same arguments.
//
// This machine grants root no CAP_SYS_RESOURCE. CRI-O, unlike containerd,
// asks for it anyway in two places, and runc then fails the container:
//   - a privileged container gets every capability the kernel knows
//     (containerd gives the ones its own process has): the ones missing
//     from runcwrap's bounding set are dropped;
//   - kubelet's oom_score_adj for Guaranteed pods (-997) is below the
//     runtime's own, which needs CAP_SYS_RESOURCE (containerd's
//     restrict_oom_score_adj clamps it): it is raised to runcwrap's own.
//
// On a machine that grants both, the bundle is left as it is.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capNames are the capabilities by number (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

func main() {
	runc := os.Getenv("RUNCWRAP_RUNC")
	if runc == "" {
		fmt.Fprintln(os.Stderr, "runcwrap: RUNCWRAP_RUNC (the runc binary) is not set")
		os.Exit(2)
	}
	if bundle := optionArg(os.Args[1:], "bundle", "b"); bundle != "" {
		if err := fixFile(filepath.Join(bundle, "config.json"), true); err != nil {
			fmt.Fprintf(os.Stderr, "runcwrap: %v\n", err)
			os.Exit(1)
		}
	}
	if process := optionArg(os.Args[1:], "process", "p"); process != "" {
		if err := fixFile(process, false); err != nil {
			fmt.Fprintf(os.Stderr, "runcwrap: %v\n", err)
			os.Exit(1)
		}
	}
	err := syscall.Exec(runc, append([]string{runc}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "runcwrap: exec %s: %v\n", runc, err)
	os.Exit(1)
}

// optionArg returns the value of runc's option --long (-short), "" if
// none.
func optionArg(args []string, long, short string) string {
	for i, a := range args {
		switch {
		case (a == "--"+long || a == "-"+short) && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--"+long+"="):
			return strings.TrimPrefix(a, "--"+long+"=")
		}
	}
	return ""
}

// fixFile fixes an OCI config (bundle) or a process spec in place.
func fixFile(path string, bundle bool) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	own, err := ownOOMScoreAdj()
	if err != nil {
		return err
	}
	bounding, err := ownBoundingSet()
	if err != nil {
		return err
	}
	out, changed, err := fix(b, bundle, own, bounding)
	if err != nil || !changed {
		return err
	}
	tmp := path + ".runcwrap"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fix returns the OCI config (bundle) or process spec with oom_score_adj
// at least own and only the capabilities in bounding (by name), and
// whether it changed anything.
func fix(config []byte, bundle bool, own int, bounding map[string]bool) ([]byte, bool, error) {
	var spec map[string]any
	if err := json.Unmarshal(config, &spec); err != nil {
		return nil, false, fmt.Errorf("OCI spec: %w", err)
	}
	proc := spec
	if bundle {
		proc, _ = spec["process"].(map[string]any)
	}
	if proc == nil {
		return config, false, nil
	}
	changed := false
	if v, ok := proc["oomScoreAdj"].(float64); ok && int(v) < own {
		proc["oomScoreAdj"] = own
		changed = true
	}
	if caps, _ := proc["capabilities"].(map[string]any); caps != nil {
		for set, list := range caps {
			names, _ := list.([]any)
			kept := make([]any, 0, len(names))
			for _, n := range names {
				if s, _ := n.(string); bounding[s] {
					kept = append(kept, n)
				}
			}
			if len(kept) != len(names) {
				caps[set] = kept
				changed = true
			}
		}
	}
	if !changed {
		return config, false, nil
	}
	out, err := json.Marshal(spec)
	return out, true, err
}

func ownOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// ownBoundingSet returns the names of the capabilities in this process's
// bounding set (CapBnd in /proc/self/status).
func ownBoundingSet() (map[string]bool, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("CapBnd %q: %w", hex, err)
		}
		return capSet(mask), nil
	}
	return nil, fmt.Errorf("no CapBnd in /proc/self/status")
}

func capSet(mask uint64) map[string]bool {
	set := map[string]bool{}
	for i, name := range capNames {
		if mask&(1<<uint(i)) != 0 {
			set[name] = true
		}
	}
	return set
}

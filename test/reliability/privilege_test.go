package reliability

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/sriov-dra/sriov-dra/driver"
)

// TestLeastPrivilege runs a pod's whole life (plus a refused claim, for
// the Warning event) and checks file modes and that every API call the
// daemon made is allowed by the ClusterRole in deployments/base.
func TestLeastPrivilege(t *testing.T) {
	n := newNode(t, 2)
	ctx := logCtx(t)
	c := n.claim(0, "")
	bad := n.claim(1, vfConfig(`"vlan":4095`))
	bad.UID, bad.Name = "bad00000-0000-4000-8000-000000000099", "bad"
	cs := newAPI(c, bad)
	dm := startPrepared(t, ctx, n, cs, c)
	if msg, _, _ := dm.prepare(ctx, bad); msg == "" {
		t.Fatal("vlan 4095 accepted")
	}
	row := func(check string, err error) {
		res := "ok"
		if err != nil {
			t.Errorf("%s: %v", check, err)
			res = "FAIL: " + strings.ReplaceAll(err.Error(), n.Dir, "<dir>")
		}
		results.add("privilege", check, check, res)
	}
	mode := func(path string, want fs.FileMode) error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if got := fi.Mode().Perm(); got != want {
			return fmt.Errorf("%s has mode %#o, want %#o", path, got, want)
		}
		return nil
	}
	row("state dir is 0700", mode(n.stateDir(), 0o700))
	row("checkpoint file is 0600", mode(filepath.Join(n.stateDir(), driver.CheckpointFile), 0o600))
	specs, _ := os.ReadDir(n.cdiDir())
	row("CDI spec is 0644, one file, in the CDI dir", func() error {
		if len(specs) != 1 {
			return fmt.Errorf("%d files in the CDI dir, want 1", len(specs))
		}
		return mode(filepath.Join(n.cdiDir(), specs[0].Name()), 0o644)
	}())
	row("nothing written outside the state, CDI, attach marker and kubelet dirs", func() error {
		var odd []string
		_ = filepath.WalkDir(n.Dir, func(p string, d fs.DirEntry, err error) error {
			rel, _ := filepath.Rel(n.Dir, p)
			top, _, _ := strings.Cut(rel, string(filepath.Separator))
			switch top {
			case ".", "state", "cdi", "attached", "reg", "plug", "root", "pf.json":
				return nil
			}
			odd = append(odd, rel)
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		})
		if len(odd) > 0 {
			return fmt.Errorf("unexpected files: %v", odd)
		}
		return nil
	}())
	row("sockets writable by their owner only", func() error {
		for _, s := range []string{filepath.Join(n.Dir, "reg", driverName+"-reg.sock"), filepath.Join(n.Dir, "plug", "dra.sock")} {
			fi, err := os.Stat(s)
			if err != nil {
				return err
			}
			if fi.Mode().Perm()&0o022 != 0 {
				return fmt.Errorf("%s has mode %#o: group or others may write (connect)", s, fi.Mode().Perm())
			}
		}
		return nil
	}())

	pod := n.sandbox(0)
	if err := dm.plugin.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(n.markDir(), string(c.UID)+"-"+n.device(0))
	markerAttached := errors.Join(mode(n.markDir(), 0o755), mode(marker, 0o644))
	time.Sleep(500 * time.Millisecond) // status apply and events are asynchronous
	if err := dm.plugin.StopPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	dm.waitDetached(pod.Uid, 10*time.Second)
	row("attach marker is 0644 in a 0755 dir, there only while the device is attached", func() error {
		if markerAttached != nil {
			return markerAttached
		}
		if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("marker after the detach: %v", err)
		}
		return nil
	}())
	if err := unprepareOK(ctx, dm, c); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	dm.stop()

	role := clusterRole(t)
	calls := map[string]bool{}
	// Every request of the daemon (claims, ResourceSlices, the node,
	// claim status, Events) goes to its API server over HTTP.
	for _, r := range dm.api.Requests() {
		res := r.Resource
		if r.Subresource != "" {
			res += "/" + r.Subresource
		}
		calls[r.Group+"|"+res+"|"+r.Verb] = true
	}
	var list []string
	for k := range calls {
		list = append(list, k)
	}
	sort.Strings(list)
	for _, call := range list {
		f := strings.Split(call, "|")
		group, res, verb := f[0], f[1], f[2]
		var err error
		if !allowed(role, group, res, verb) {
			err = fmt.Errorf("not allowed by ClusterRole %s", role.Name)
		}
		g := group
		if g == "" {
			g = "core"
		}
		row(fmt.Sprintf("API call %s %s/%s is in deployments/base/rbac.yaml", verb, g, res), err)
	}
	if len(list) == 0 {
		t.Error("no API calls recorded")
	}
	results.complete("privilege")
}

func clusterRole(t *testing.T) *rbacv1.ClusterRole {
	b, err := os.ReadFile("../../deployments/base/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---") {
		var r rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &r); err == nil && r.Kind == "ClusterRole" {
			return &r
		}
	}
	t.Fatal("no ClusterRole in deployments/base/rbac.yaml")
	return nil
}

func allowed(r *rbacv1.ClusterRole, group, resource, verb string) bool {
	for _, rule := range r.Rules {
		if len(rule.ResourceNames) > 0 {
			continue // per-object rules do not cover a general call
		}
		if (slices.Contains(rule.APIGroups, group) || slices.Contains(rule.APIGroups, "*")) &&
			(slices.Contains(rule.Resources, resource) || slices.Contains(rule.Resources, "*")) &&
			(slices.Contains(rule.Verbs, verb) || slices.Contains(rule.Verbs, "*")) {
			return true
		}
	}
	return false
}

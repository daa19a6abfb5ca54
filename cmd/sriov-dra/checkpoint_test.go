package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/checkpoint"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/ipam"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/vfconfig"
)

const (
	liveUID  = "c0ffee00-0000-4000-8000-000000000001"
	staleUID = "c0ffee00-0000-4000-8000-000000000002"
	liveDev  = "pci-0000-5e-00-2"
	staleDev = "pci-0000-5e-00-3"
)

// checkpointFixture is a node's files as the daemon leaves them: a
// checkpoint with a prepared claim (VF settings, an address, its netdev
// in a pod) and a stale one whose release failed, the live claim's CDI
// spec and attach marker.
type checkpointFixture struct {
	o    checkpointOptions
	args []string // the flags that point at o
}

func newCheckpointFixture(t *testing.T) checkpointFixture {
	t.Helper()
	base := t.TempDir()
	o := checkpointOptions{
		stateDir: filepath.Join(base, "state"), hostRoot: filepath.Join(base, "root"),
		cdiDir: filepath.Join(base, "cdi"), markerDir: filepath.Join(base, "attached"),
	}
	bootFile := filepath.Join(o.hostRoot, checkpoint.BootIDPath)
	for _, d := range []string{filepath.Dir(bootFile), o.cdiDir, o.markerDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(bootFile, []byte("boot-2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vlan, trust := 100, true
	netconf := json.RawMessage(`{"cniVersion":"1.0.0","name":"sriov-dra","type":"host-local","ipam":{"type":"host-local","ranges":[[{"subnet":"10.77.0.0/16"}]]}}`)
	live := &driver.ClaimRecord{
		UID: liveUID, Namespace: "apps", Name: "net", PodUID: "pod-1", PodName: "web-0", PodNamespace: "apps",
		Phase: driver.PhasePrepareCompleted, Steps: driver.ClaimSteps{CDI: true, Status: true},
		Devices: []*driver.DeviceRecord{{
			Request: "nic", Pool: "node-a", Device: liveDev, PCIAddress: "0000:5e:00.2", Kind: inventory.KindVF,
			Settings: vfconfig.Settings{VLAN: &vlan, Trust: &trust},
			Snapshot: vfconfig.Snapshot{PCIAddress: "0000:5e:00.2", PFName: "ens2f0", VFIndex: 1, Driver: "iavf", Admin: inventory.VFAdminState{MAC: "00:00:00:00:00:00", SpoofChk: true}},
			Steps:    driver.DeviceSteps{VFSettings: true, IPAM: true},
			IPAM: &ipam.Result{Plugin: "host-local", Network: "sriov-dra", ContainerID: liveUID + "-" + liveDev, IfName: "net1",
				IPs: []ipam.IPConfig{{Address: "10.77.0.5/16"}}, NetConf: netconf},
			Pod: nri.PodDevice{Spec: netattach.Spec{HostIfName: "ens2f0v1", PodIfName: "net1"}, NetnsPath: "/var/run/netns/web-0", Attached: true,
				Original: &netattach.Original{IfName: "ens2f0v1", MAC: "52:54:00:00:00:02", MTU: 1500}},
		}},
	}
	stale := &driver.ClaimRecord{
		UID: staleUID, Namespace: "apps", Name: "old", PodUID: "pod-2", PodName: "db-0", PodNamespace: "apps",
		Phase: driver.PhasePrepareCompleted, Steps: driver.ClaimSteps{CDI: true},
		Devices: []*driver.DeviceRecord{{
			Request: "nic", Pool: "node-a", Device: staleDev, Kind: inventory.KindVF,
			Steps: driver.DeviceSteps{VFSettings: true, IPAM: true}, Settings: vfconfig.Settings{VLAN: &vlan},
			IPAM: &ipam.Result{Plugin: "whereabouts", Network: "sriov-dra", ContainerID: staleUID + "-" + staleDev, IfName: "net1",
				IPs: []ipam.IPConfig{{Address: "10.77.0.6/16"}}, NetConf: json.RawMessage(`{"type":"whereabouts"}`)},
		}},
		Stale: &driver.StaleRelease{BootID: "boot-1", Attempts: 3, LastError: "release IPAM allocation: plugin binary not found"},
	}
	store, _, err := driver.NewFileStore(o.stateDir, o.hostRoot)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(&driver.Checkpoint{BootID: "boot-2", Claims: map[string]*driver.ClaimRecord{liveUID: live, staleUID: stale}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(o.cdiDir, "sriov.dra.dev-vf_"+liveUID+".json"), filepath.Join(o.markerDir, liveUID+"-"+liveDev)} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return checkpointFixture{o: o, args: []string{"--state-dir", o.stateDir, "--host-root", o.hostRoot, "--cdi-dir", o.cdiDir, "--attach-marker-dir", o.markerDir}}
}

func (f checkpointFixture) requests(t *testing.T) []driver.DropRequest {
	t.Helper()
	cp, _, err := driver.ReadCheckpoint(f.o.stateDir, f.o.hostRoot)
	if err != nil {
		t.Fatal(err)
	}
	return cp.DropRequests
}

// The report names everything the record still holds, one line each.
func TestDropReport(t *testing.T) {
	f := newCheckpointFixture(t)
	cp, _, err := driver.ReadCheckpoint(f.o.stateDir, f.o.hostRoot)
	if err != nil {
		t.Fatal(err)
	}
	o := f.o
	for _, tc := range []struct {
		uid  string
		want string
	}{
		{liveUID, `Claim apps/net (` + liveUID + `), pod apps/web-0, phase PrepareCompleted.
Dropping the record undoes nothing. Left behind:
  - IPAM allocation of device ` + liveDev + `: plugin "host-local", network "sriov-dra", container ID ` + liveUID + `-` + liveDev + `, interface net1, addresses 10.77.0.5/16: not released (release it by hand: the plugin's DEL with CNI_CONTAINERID=` + liveUID + `-` + liveDev + ` CNI_IFNAME=net1 and the network config {"cniVersion":"1.0.0","ipam":{"ranges":[[{"subnet":"10.77.0.0/16"}]],"type":"host-local"},"name":"sriov-dra","type":"host-local"})
  - netdev of device ` + liveDev + `: recorded in pod network namespace /var/run/netns/web-0 as net1: not returned to the host (host name ens2f0v1, MAC 52:54:00:00:00:02, MTU 1500)
  - VF settings of device ` + liveDev + ` (VF 1 of PF ens2f0): {"trust":true,"vlan":100}: not restored (before: MAC 00:00:00:00:00:00, VLAN 0, spoof check true, trust false)
  - CDI spec ` + o.cdiDir + `/sriov.dra.dev-vf_` + liveUID + `.json (there now): left; the daemon removes it as an orphan when it next starts
  - attach marker ` + o.markerDir + `/` + liveUID + `-` + liveDev + ` (there now): left; the daemon removes it as an orphan when it next starts
  - status.devices entries of the claim in the API: left as they are
Devices offered to new claims again once the record is gone: ` + liveDev + `.
`},
		{staleUID, `Claim apps/old (` + staleUID + `), pod apps/db-0, phase PrepareCompleted, prepared before the node rebooted (boot boot-1), release failed 3 times: release IPAM allocation: plugin binary not found.
Dropping the record undoes nothing. Left behind:
  - IPAM allocation of device ` + staleDev + `: plugin "whereabouts", network "sriov-dra", container ID ` + staleUID + `-` + staleDev + `, interface net1, addresses 10.77.0.6/16: not released (release it by hand: the plugin's DEL with CNI_CONTAINERID=` + staleUID + `-` + staleDev + ` CNI_IFNAME=net1 and the network config {"type":"whereabouts"})
  - VF settings, GUIDs, driver bindings: none to restore (the node rebooted since the claim was prepared)
  - CDI spec ` + o.cdiDir + `/sriov.dra.dev-vf_` + staleUID + `.json (not there now): left; the daemon removes it as an orphan when it next starts
  - attach marker ` + o.markerDir + `/` + staleUID + `-` + staleDev + ` (not there now): left; the daemon removes it as an orphan when it next starts
  - status.devices entries of the claim in the API: left as they are
Devices offered to new claims again once the record is gone: ` + staleDev + `.
`},
	} {
		t.Run(tc.uid, func(t *testing.T) {
			if got := dropReport(cp.Claims[tc.uid], o); got != tc.want {
				t.Errorf("report:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestCheckpointCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		// daemon plays the daemon applying drop requests.
		daemon   bool
		code     int
		out, err []string
		// requested is the drop request left in the file afterwards.
		requested string
		dropped   bool
	}{
		{name: "list", args: []string{"checkpoint", "list"},
			out: []string{"CLAIM UID", liveUID + "  apps/net  apps/web-0  PrepareCompleted  " + liveDev + "  prepared",
				staleUID + "  apps/old  apps/db-0   PrepareCompleted  " + staleDev + "  stale (boot boot-1), release pending, 3 failed: release IPAM allocation: plugin binary not found"}},
		{name: "drop without --yes refuses and changes nothing", args: []string{"checkpoint", "drop", staleUID}, code: 2,
			out: []string{"Dropping the record undoes nothing", `plugin "whereabouts"`},
			err: []string{"nothing changed: run again with --yes"}},
		{name: "drop of an unknown claim", args: []string{"checkpoint", "drop", "nope", "--yes"}, code: 1,
			err: []string{"claim nope has no record in", "checkpoint list"}},
		{name: "drop without a claim UID", args: []string{"checkpoint", "drop"}, code: 1,
			err: []string{"accepts 1 arg"}},
		{name: "drop --yes, not waiting", args: []string{"checkpoint", "drop", staleUID, "--yes", "--wait", "0"},
			out: []string{"Left behind", "Drop requested in"}, requested: staleUID},
		{name: "drop --yes with no daemon running", args: []string{"checkpoint", "drop", staleUID, "--yes", "--wait", "300ms"}, code: 1,
			err: []string{"no daemon applied it within 300ms: is the sriov-dra daemon running on this node?"}, requested: staleUID},
		{name: "drop --yes applied by the daemon", args: []string{"checkpoint", "drop", staleUID, "--yes", "--wait", "10s"}, daemon: true,
			out: []string{"Dropped: the daemon forgot claim " + staleUID}, dropped: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newCheckpointFixture(t)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				if tc.daemon {
					fakeDaemon(t, f, stop)
				}
			}()
			code, out, errOut := runValidateCmd(t, "", append(tc.args, f.args...)...)
			close(stop)
			<-done
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.err {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			reqs := f.requests(t)
			switch {
			case tc.requested == "" && len(reqs) != 0:
				t.Errorf("drop requests %+v, want none", reqs)
			case tc.requested != "" && (len(reqs) != 1 || reqs[0].ClaimUID != tc.requested || !strings.Contains(reqs[0].By, "sriov-dra checkpoint drop") || reqs[0].At == ""):
				t.Errorf("drop requests %+v, want one for %s saying who and when", reqs, tc.requested)
			}
			cp, _, err := driver.ReadCheckpoint(f.o.stateDir, f.o.hostRoot)
			if err != nil {
				t.Fatal(err)
			}
			if _, held := cp.Claims[staleUID]; held == tc.dropped || cp.Claims[liveUID] == nil {
				t.Errorf("records after the command: %d (stale held %v), want the stale one dropped: %v", len(cp.Claims), held, tc.dropped)
			}
		})
	}
}

// fakeDaemon applies drop requests the way the daemon's store does: it
// saves its copy without the requested claims (a save clears a request
// whose claim is gone).
func fakeDaemon(t *testing.T, f checkpointFixture, stop <-chan struct{}) {
	store, _, err := driver.NewFileStore(f.o.stateDir, f.o.hostRoot)
	if err != nil {
		t.Error(err)
		return
	}
	for {
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		cp, err := store.Load()
		if err != nil {
			t.Error(err)
			return
		}
		if len(cp.DropRequests) == 0 {
			continue
		}
		for _, r := range cp.DropRequests {
			delete(cp.Claims, r.ClaimUID)
		}
		cp.DropRequests = nil
		if err := store.Save(cp); err != nil {
			t.Error(err)
			return
		}
	}
}

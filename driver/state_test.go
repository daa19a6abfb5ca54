package driver

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/checkpoint"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// fileStoreAt opens a real checkpoint in dir with a boot ID file under a
// fake root.
func fileStoreAt(t testing.TB, dir, bootID string) (Store, string) {
	t.Helper()
	s, id, err := NewFileStore(dir, bootRoot(t, bootID))
	if err != nil {
		t.Fatal(err)
	}
	return s, id
}

func TestCheckpointRoundTripOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	e := newEnv(t, sysfstest.Standard())
	e.store, e.bootID = fileStoreAt(t, dir, "boot-1")
	e.fix.Netlink.SetRdmaNetnsMode(rdma.ModeExclusive) // rdmaIsolation needs it
	e.restart()
	dev := vfName(e, 0, 3)
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("ib", dev)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","guid":"auto","ipam":{"type":"host-local"},"rdmaIsolation":true}`))
	if err := prepare(t, e.d, c)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	if err := e.d.State().Attaching("u1", dev, "/proc/7/ns/net", netattach.Original{IfName: "ibp59s0f0v3", MAC: "00:11", MTU: 2044}); err != nil {
		t.Fatal(err)
	}
	want, _ := e.d.State().Claim("u1")

	fi, err := os.Stat(filepath.Join(dir, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("checkpoint mode %v, want 0600", fi.Mode().Perm())
	}
	// A new process reads back exactly what was recorded.
	e.store, _ = fileStoreAt(t, dir, "boot-1")
	e.restart()
	got, ok := e.d.State().Claim("u1")
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got  %+v\n want %+v", got, want)
	}
	if pd := e.d.State().ForPod("pod-uid-p1"); len(pd) != 1 || pd[0].NetnsPath != "/proc/7/ns/net" || !pd[0].RDMAIsolation {
		t.Errorf("ForPod after restart = %+v", pd)
	} else if pd[0].LinkType != inventory.LinkTypeInfiniBand {
		// The NRI side moves an InfiniBand RDMA device before its netdev;
		// it can only do so when the link type is recorded.
		t.Errorf("ForPod LinkType = %q, want %q", pd[0].LinkType, inventory.LinkTypeInfiniBand)
	}
}

func TestCorruptCheckpointIsAnErrorNamingTheFile(t *testing.T) {
	for name, content := range map[string]string{
		"truncated": `{"version":1,"dataVersion":1,"bootID":"boot-1","checksum":"sha256:`,
		"garbage":   "\x00\x01not json",
		"bad sum":   `{"version":1,"dataVersion":1,"bootID":"boot-1","checksum":"sha256:00","data":{"version":"sriov.dra.dev/checkpoint/v1","claims":{}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			e := newEnv(t, sysfstest.Standard())
			e.store, e.bootID = fileStoreAt(t, dir, "boot-1")
			path := filepath.Join(dir, CheckpointFile)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			e.j.take()
			_, err := NewState(e.store, e.bootID)
			var ce *checkpoint.CorruptError
			if err == nil || !errors.As(err, &ce) || !strings.Contains(err.Error(), path) {
				t.Fatalf("NewState = %v, want a corrupt-checkpoint error naming %s", err, path)
			}
			if steps := e.j.take(); len(steps) != 0 {
				t.Errorf("touched devices it cannot account for: %v", steps)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Error("corrupt file was changed")
			}
		})
	}
}

// A document of a schema version this release does not read (a newer
// release's) stops the driver with an error naming the file and the
// version; the file stays as it is and no device is touched.
func TestCheckpointOfAnotherSchemaVersionIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, CheckpointFile)
	writeCheckpointDoc(t, dir, "boot-1", []byte(`{"version":"sriov.dra.dev/checkpoint/v9","bootID":"boot-1","claims":{}}`))
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, sysfstest.Standard())
	e.store, e.bootID = fileStoreAt(t, dir, "boot-1")
	// The daemon loads the state before it builds the driver (daemon.New).
	_, err = NewState(e.store, e.bootID)
	if err == nil || !strings.Contains(err.Error(), "v9") || !strings.Contains(err.Error(), path) {
		t.Fatalf("NewState = %v, want an error naming the version and %s", err, path)
	}
	if steps := e.j.take(); len(steps) != 0 {
		t.Errorf("touched devices it cannot account for: %v", steps)
	}
	// Nor do the admin tools read it or write into it.
	if _, _, err := ReadCheckpoint(dir, bootRoot(t, "boot-1")); err == nil || !strings.Contains(err.Error(), "v9") {
		t.Errorf("ReadCheckpoint = %v, want an error naming the version", err)
	}
	if err := RequestDrop(dir, bootRoot(t, "boot-1"), DropRequest{ClaimUID: "u1"}); err == nil || !strings.Contains(err.Error(), "v9") {
		t.Errorf("RequestDrop = %v, want an error naming the version", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("the file was changed")
	}
}

func TestNRIDevicesRecordsAndQueuesStatus(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	dev := vfName(e, 1, 0)
	c := newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)},
		opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","ifName":"data0","mac":"02:00:00:00:00:aa","ipam":{"type":"static"}}`))
	if err := prepare(t, e.d, c)["u1"].Err; err != nil {
		t.Fatal(err)
	}
	st := e.d.State()
	if pods := st.Pods(); len(pods) != 1 || pods[0] != "pod-uid-p1" {
		t.Fatalf("Pods = %v", pods)
	}
	if err := st.Attaching("nope", dev, "/x", netattach.Original{}); err == nil {
		t.Error("Attaching an unknown claim succeeded")
	}
	e.j.take()
	if err := st.Attaching("u1", dev, "/proc/9/ns/net", netattach.Original{IfName: "ens2f0v0", MAC: "02:00:5e:00:00:00", MTU: 1500}); err != nil {
		t.Fatal(err)
	}
	if got := e.status.get("u1"); got != nil {
		t.Errorf("status before attach finished: %+v", got)
	}
	if err := st.Attached("u1", dev, false); err != nil {
		t.Fatal(err)
	}
	got := e.status.get("u1")
	if len(got) != 1 || got[0].InterfaceName != "data0" || got[0].HardwareAddress != "02:00:00:00:00:aa" || len(got[0].IPs) != 1 || !got[0].Ready {
		t.Errorf("status = %+v", got)
	}
	pd := st.ForPod("pod-uid-p1")[0]
	if !pd.Attached || pd.NetnsPath != "/proc/9/ns/net" || pd.Original.IfName != "ens2f0v0" || pd.ClaimName != "claim-u1" {
		t.Errorf("recorded %+v", pd)
	}
	if err := st.Detached("u1", dev); err != nil {
		t.Fatal(err)
	}
	if pd := st.ForPod("pod-uid-p1")[0]; pd.Attached || pd.NetnsPath != "" {
		t.Errorf("after detach %+v", pd)
	}
	// Every record was durable before it returned: one save each.
	var saves int
	for _, s := range e.j.take() {
		if strings.HasPrefix(s, "store.Save") {
			saves++
		}
	}
	if saves != 3 {
		t.Errorf("%d saves for 3 records", saves)
	}
}

func TestNRIRecordNotDurableIsNotKept(t *testing.T) {
	e := newEnv(t, sysfstest.Standard())
	dev := vfName(e, 1, 0)
	if err := prepare(t, e.d, newClaim("u1", "p1", []resourceapi.DeviceRequestAllocationResult{result("eth", dev)}))["u1"].Err; err != nil {
		t.Fatal(err)
	}
	e.j.failOn("store.Save", errInjected)
	if err := e.d.State().Attaching("u1", dev, "/proc/9/ns/net", netattach.Original{IfName: "x"}); err == nil {
		t.Fatal("Attaching succeeded although the checkpoint was not written")
	}
	if pd := e.d.State().ForPod("pod-uid-p1")[0]; pd.NetnsPath != "" {
		t.Errorf("memory has a record the disk does not: %+v", pd)
	}
}

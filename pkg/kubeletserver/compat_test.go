package kubeletserver

// These tests hold this package to what daemons built on the upstream
// helper (k8s.io/dynamic-resource-allocation/kubeletplugin) do, which a
// rolling update from such a daemon and the containers reading the
// metadata files rely on. Only tests import the helper.

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metadatav1alpha1 "k8s.io/dynamic-resource-allocation/api/metadata/v1alpha1"
	metadatav1beta1 "k8s.io/dynamic-resource-allocation/api/metadata/v1beta1"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2/ktesting"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"

	"github.com/sriov-dra/sriov-dra/internal/kubelettest"
)

// TestSocketNamesMatchUpstream: the registration socket names, with and
// without rolling updates and for every length of the registry dir (all
// three name forms), are the helper's.
func TestSocketNamesMatchUpstream(t *testing.T) {
	uid := types.UID("0f6c3b8e-2a41-4d6b-9a53-7e2c1d9b4f10")
	for _, tc := range []struct {
		name string
		dir  string
		uid  types.UID
		want string // "" when only the helper's answer matters
	}{
		{name: "no rolling update", dir: DefaultRegistryDir, want: testDriver + "-reg.sock"},
		{name: "full uid", dir: DefaultRegistryDir, uid: uid, want: testDriver + "-" + string(uid) + "-reg.sock"},
		{name: "hashed uid", dir: "/" + strings.Repeat("d", 40), uid: uid},
		{name: "hashed driver and uid", dir: "/" + strings.Repeat("d", 70), uid: uid},
		{name: "nothing fits", dir: "/" + strings.Repeat("d", 120), uid: uid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RegistrarSocketFile(tc.dir, testDriver, tc.uid)
			if tc.want != "" && got != tc.want {
				t.Errorf("RegistrarSocketFile = %s, want %s", got, tc.want)
			}
			if tc.uid != "" {
				if up := kubeletplugin.RollingUpdateRegistrarSocketFile(tc.dir, testDriver, tc.uid); got != up {
					t.Errorf("RegistrarSocketFile = %s, upstream %s", got, up)
				}
			}
		})
	}
	if DefaultRegistryDir != kubeletplugin.KubeletRegistryDir || DefaultPluginsDir != kubeletplugin.KubeletPluginsDir || DefaultCDIDir != kubeletplugin.DefaultCDIDir {
		t.Error("default dirs differ from upstream's")
	}
}

// TestSocketsMatchUpstream: the helper, given the same dirs and pod UID,
// listens on the very sockets this package names (and advertises the same
// info to kubelet).
func TestSocketsMatchUpstream(t *testing.T) {
	for _, uid := range []types.UID{"", "3c9a7a50-5d1e-4b8e-8f11-0a2b3c4d5e6f"} {
		reg, plug := shortDirs(t)
		_, ctx := ktesting.NewTestContext(t)
		up, err := kubeletplugin.Start(ctx, &upstreamPlugin{&fakePlugin{}}, upstreamOptions(reg, plug, uid, fake.NewClientset())...)
		if err != nil {
			t.Fatal(err)
		}
		upInfo, _ := kubelettest.Register(ctx, t, filepath.Join(reg, RegistrarSocketFile(reg, testDriver, uid)))
		up.Stop()
		s := startServer(t, &fakePlugin{}, Config{RegistryDir: reg, PluginDir: plug, PodUID: uid, Claims: newFakeClaims()})
		info, _ := kubelettest.Register(ctx, t, s.RegistrarSocket())
		if info.Endpoint != upInfo.Endpoint || info.Name != upInfo.Name || info.Type != upInfo.Type || !slices.Equal(info.SupportedVersions, upInfo.SupportedVersions) {
			t.Errorf("uid %q: GetInfo = %v, upstream %v", uid, info, upInfo)
		}
	}
}

// TestLockExcludesUpstream: while a daemon on the helper holds the rolling
// update lock (its own lock call on the same file), this server's Prepare
// waits, and the other way round.
func TestLockExcludesUpstream(t *testing.T) {
	_, plug := shortDirs(t)
	held, err := fileutil.LockFile(LockFile(plug), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	ser := &callSerializer{on: true, path: LockFile(plug)}
	got := make(chan func())
	go func() {
		unlock, err := ser.lock()
		if err != nil {
			t.Error(err)
		}
		got <- unlock
	}()
	select {
	case <-got:
		t.Fatal("our lock taken while the helper's is held")
	case <-time.After(200 * time.Millisecond):
	}
	held.Close()
	unlock := <-got

	if _, err := fileutil.TryLockFile(LockFile(plug), os.O_RDWR|os.O_CREATE, 0o666); !errors.Is(err, fileutil.ErrLocked) {
		t.Errorf("helper's try-lock while ours is held: %v, want ErrLocked", err)
	}
	unlock()
	f, err := fileutil.TryLockFile(LockFile(plug), os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		t.Errorf("helper's try-lock after ours was released: %v", err)
	} else {
		f.Close()
	}
}

// TestMetadataMatchesUpstream: for the same prepared claims, the metadata
// files, their CDI specs (names, modes, bytes) and the CDI device IDs in
// the answer to kubelet are the helper's; unprepare removes them alike.
func TestMetadataMatchesUpstream(t *testing.T) {
	plain := testClaim("net", "11111111-2222-4333-8444-555555555555", "vf", "pf/sub")
	fromTemplate := testClaim("pod-net-x7k2q", "66666666-7777-4888-8999-000000000000", "vf")
	fromTemplate.Annotations = map[string]string{resourceapi.PodResourceClaimAnnotation: "net"}
	versions := [][]schema.GroupVersion{
		{metadatav1beta1.SchemeGroupVersion},
		{metadatav1beta1.SchemeGroupVersion, metadatav1alpha1.SchemeGroupVersion},
	}
	for _, vs := range versions {
		for _, claim := range []*resourceapi.ResourceClaim{plain, fromTemplate} {
			t.Run(claim.Name+"/"+vs[len(vs)-1].Version, func(t *testing.T) {
				reg, plug := shortDirs(t)
				cdiDir := filepath.Join(filepath.Dir(plug), "cdi")
				req := &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: claim.Namespace, Name: claim.Name, Uid: string(claim.UID)}}}
				unreq := &drapb.NodeUnprepareResourcesRequest{Claims: req.Claims}
				_, ctx := ktesting.NewTestContext(t)

				opts := append(upstreamOptions(reg, plug, "", fake.NewClientset(claim)),
					kubeletplugin.EnableDeviceMetadata(true, vs), kubeletplugin.CDIDirectory(cdiDir))
				up, err := kubeletplugin.Start(ctx, &upstreamPlugin{&fakePlugin{metadata: true}}, opts...)
				if err != nil {
					t.Fatal(err)
				}
				_, dra := kubelettest.Register(ctx, t, filepath.Join(reg, RegistrarSocketFile(reg, testDriver, "")))
				upResp, err := dra.NodePrepareResources(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				upFiles := readTree(t, filepath.Dir(plug), plug)
				if _, err := dra.NodeUnprepareResources(ctx, unreq); err != nil {
					t.Fatal(err)
				}
				upLeft := readTree(t, filepath.Dir(plug), plug)
				up.Stop()

				s := startServer(t, &fakePlugin{metadata: true}, Config{
					RegistryDir: reg, PluginDir: plug, Claims: newFakeClaims(claim),
					Metadata: &MetadataConfig{Versions: vs, CDIDir: cdiDir},
				})
				_, dra = kubelettest.Register(ctx, t, s.RegistrarSocket())
				resp, err := dra.NodePrepareResources(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				files := readTree(t, filepath.Dir(plug), plug)
				// A metadata file and a CDI spec per request.
				if len(files) != 2*len(claim.Status.Allocation.Devices.Results) {
					t.Errorf("only %d files written: %v", len(files), slices.Collect(maps.Keys(files)))
				}
				for name, want := range upFiles {
					if got, ok := files[name]; !ok || got != want {
						t.Errorf("%s:\n%s\nupstream:\n%s", name, got, want)
					}
				}
				for name := range files {
					if _, ok := upFiles[name]; !ok {
						t.Errorf("%s written, not by upstream", name)
					}
				}
				u := string(claim.UID)
				if got, want := resp.Claims[u].Devices, upResp.Claims[u].Devices; !slices.EqualFunc(got, want, devEqual) {
					t.Errorf("devices = %v, upstream %v", got, want)
				}
				if _, err := dra.NodeUnprepareResources(ctx, unreq); err != nil {
					t.Fatal(err)
				}
				if left := readTree(t, filepath.Dir(plug), plug); !maps.Equal(left, upLeft) {
					t.Errorf("after unprepare: %v, upstream left %v", slices.Collect(maps.Keys(left)), slices.Collect(maps.Keys(upLeft)))
				}
			})
		}
	}
}

// upstreamPlugin is a fakePlugin as the helper's DRAPlugin.
type upstreamPlugin struct{ p *fakePlugin }

func (u *upstreamPlugin) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	res, err := u.p.PrepareResourceClaims(ctx, claims)
	out := map[types.UID]kubeletplugin.PrepareResult{}
	for uid, r := range res {
		var devs []kubeletplugin.Device
		for _, d := range r.Devices {
			ud := kubeletplugin.Device{Requests: d.Requests, PoolName: d.PoolName, DeviceName: d.DeviceName, CDIDeviceIDs: d.CDIDeviceIDs, ShareID: d.ShareID}
			if d.Metadata != nil {
				ud.Metadata = &kubeletplugin.DeviceMetadata{Attributes: d.Metadata.Attributes, NetworkData: d.Metadata.NetworkData}
			}
			devs = append(devs, ud)
		}
		out[uid] = kubeletplugin.PrepareResult{Err: r.Err, Devices: devs}
	}
	return out, err
}

func (u *upstreamPlugin) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	var ours []NamespacedObject
	for _, c := range claims {
		ours = append(ours, NamespacedObject{NamespacedName: c.NamespacedName, UID: c.UID})
	}
	return u.p.UnprepareResourceClaims(ctx, ours)
}

func (u *upstreamPlugin) HandleError(context.Context, error, string) {}

func (u *upstreamPlugin) WatchHealthStatus(context.Context, chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}

func upstreamOptions(reg, plug string, uid types.UID, cs *fake.Clientset) []kubeletplugin.Option {
	opts := []kubeletplugin.Option{
		kubeletplugin.DriverName(testDriver), kubeletplugin.KubeClient(cs), kubeletplugin.NodeName("node-a"),
		kubeletplugin.RegistrarDirectoryPath(reg), kubeletplugin.PluginDataDirectoryPath(plug),
	}
	if uid != "" {
		opts = append(opts, kubeletplugin.RollingUpdate(uid))
	}
	return opts
}

// readTree is every regular file below root (but not sockets or the lock
// file), by path relative to root, as mode and content.
func readTree(t *testing.T, root, plug string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil || !fi.Mode().IsRegular() || p == LockFile(plug) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = fi.Mode().String() + "\n" + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

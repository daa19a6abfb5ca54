package nri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testRuntime is the runtime side of NRI, in process: the real
// adaptation on a temp socket, with the pod and container lists a runtime
// would keep for Synchronize.
type testRuntime struct {
	socket string // where plugins connect
	inner  string // the adaptation's socket when proxied
	dir    string
	// name and version the runtime gives plugins in Configure;
	// "" means test-runtime 0.0.1.
	name, version string

	// proxy, when set, stands between plugins and the adaptation so that
	// stop can cut the connections as the death of a runtime process
	// does (the adaptation's Stop leaves external plugins connected).
	proxy *connProxy

	mu   sync.Mutex
	pods map[string]*api.PodSandbox // by sandbox ID
	ctrs map[string]*api.Container  // by container ID
	r    *adaptation.Adaptation
}

func newTestRuntime(t testing.TB) *testRuntime {
	t.Helper()
	// Short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "nri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := &testRuntime{socket: filepath.Join(dir, "nri.sock"), dir: dir, pods: map[string]*api.PodSandbox{}, ctrs: map[string]*api.Container{}}
	rt.start(t)
	t.Cleanup(rt.stop)
	return rt
}

// newKillableRuntime is a runtime whose stop cuts the plugin connections.
func newKillableRuntime(t testing.TB) *testRuntime {
	t.Helper()
	dir, err := os.MkdirTemp("", "nri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := &testRuntime{socket: filepath.Join(dir, "nri.sock"), inner: filepath.Join(dir, "inner.sock"), dir: dir, pods: map[string]*api.PodSandbox{}, ctrs: map[string]*api.Container{}}
	rt.start(t)
	t.Cleanup(rt.stop)
	return rt
}

func (rt *testRuntime) start(t testing.TB) {
	t.Helper()
	socket := rt.socket
	if rt.inner != "" {
		socket = rt.inner
	}
	name, version := "test-runtime", "0.0.1"
	if rt.name != "" {
		name, version = rt.name, rt.version
	}
	r, err := adaptation.New(name, version, rt.sync, rt.update,
		adaptation.WithPluginPath(filepath.Join(rt.dir, "plugins")),
		adaptation.WithPluginConfigPath(filepath.Join(rt.dir, "conf.d")),
		adaptation.WithSocketPath(socket),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	var proxy *connProxy
	if rt.inner != "" {
		if proxy, err = newConnProxy(rt.socket, rt.inner); err != nil {
			r.Stop()
			t.Fatal(err)
		}
	}
	rt.mu.Lock()
	rt.r, rt.proxy = r, proxy
	rt.mu.Unlock()
}

func (rt *testRuntime) stop() {
	rt.mu.Lock()
	r, proxy := rt.r, rt.proxy
	rt.r, rt.proxy = nil, nil
	rt.mu.Unlock()
	if proxy != nil {
		proxy.close()
	}
	if r != nil {
		r.Stop()
	}
}

// connProxy forwards unix connections from listen to target and cuts them
// all on close.
type connProxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newConnProxy(listen, target string) (*connProxy, error) {
	_ = os.Remove(listen)
	l, err := net.Listen("unix", listen)
	if err != nil {
		return nil, err
	}
	p := &connProxy{l: l}
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(u, c); u.Close(); c.Close() })
			p.wg.Go(func() { _, _ = io.Copy(c, u); u.Close(); c.Close() })
		}
	})
	return p, nil
}

func (p *connProxy) close() {
	p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (rt *testRuntime) sync(ctx context.Context, cb adaptation.SyncCB) error {
	rt.mu.Lock()
	var pods []*api.PodSandbox
	var ctrs []*api.Container
	for _, p := range rt.pods {
		pods = append(pods, p)
	}
	for _, c := range rt.ctrs {
		ctrs = append(ctrs, c)
	}
	rt.mu.Unlock()
	sort.Slice(pods, func(i, j int) bool { return pods[i].Id < pods[j].Id })
	sort.Slice(ctrs, func(i, j int) bool { return ctrs[i].Id < ctrs[j].Id })
	_, err := cb(ctx, pods, ctrs)
	return err
}

func (rt *testRuntime) update(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return nil, nil
}

func (rt *testRuntime) adaptation() *adaptation.Adaptation {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.r
}

// The calls below are what a runtime does for CRI requests: relay to the
// plugins (waiting for a plugin being synchronised), then keep its lists.

func (rt *testRuntime) runPod(ctx context.Context, pod *api.PodSandbox) error {
	r := rt.adaptation()
	b := r.BlockPluginSync()
	defer b.Unblock()
	if err := r.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
		return err
	}
	rt.mu.Lock()
	rt.pods[pod.Id] = pod
	rt.mu.Unlock()
	return nil
}

func (rt *testRuntime) createContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	r := rt.adaptation()
	b := r.BlockPluginSync()
	defer b.Unblock()
	if _, err := r.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr}); err != nil {
		return err
	}
	rt.mu.Lock()
	ctr.State = api.ContainerState_CONTAINER_CREATED
	rt.ctrs[ctr.Id] = ctr
	rt.mu.Unlock()
	return nil
}

func (rt *testRuntime) stopPod(ctx context.Context, pod *api.PodSandbox) error {
	r := rt.adaptation()
	b := r.BlockPluginSync()
	defer b.Unblock()
	return r.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod})
}

func (rt *testRuntime) removePod(ctx context.Context, pod *api.PodSandbox) error {
	r := rt.adaptation()
	b := r.BlockPluginSync()
	defer b.Unblock()
	if err := r.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod}); err != nil {
		return err
	}
	rt.forget(pod)
	return nil
}

// forget drops the pod and its containers from the runtime's lists (as a
// runtime does after RemovePodSandbox).
func (rt *testRuntime) forget(pod *api.PodSandbox) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	delete(rt.pods, pod.Id)
	for id, c := range rt.ctrs {
		if c.PodSandboxId == pod.Id {
			delete(rt.ctrs, id)
		}
	}
}

// runPlugin runs p against the runtime until the returned stop function
// is called, and waits until the runtime has it registered and
// synchronised.
func runPlugin(t testing.TB, p *Plugin) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	syncs := p.syncs.Load()
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, "plugin synchronised", func() bool { return p.syncs.Load() > syncs })
	return stop
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and veth links")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a named network namespace (a pod's) and returns its
// path; it is deleted when the test ends.
func newNetns(t testing.TB, name string) string {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	path := "/run/netns/" + name
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return path
}

// newVF creates a veth pair standing in for a VF netdev on the host: name
// is the "VF", name+"p" its peer. Both are deleted when the test ends,
// wherever the VF is by then.
func newVF(t testing.TB, name, mac string, mtu int) {
	t.Helper()
	run(t, "ip", "link", "add", name, "mtu", fmt.Sprint(mtu), "address", mac, "type", "veth", "peer", "name", name+"p")
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", name+"p").Run()
		_ = exec.Command("ip", "link", "del", name).Run()
	})
}

// newMacvlanVF creates a macvlan link standing in for a VF netdev on the
// host, on a veth parent of its own (name+"p", peer name+"q"); deleting
// the parent at the end deletes the macvlan wherever it is.
func newMacvlanVF(t testing.TB, name, mac string, mtu int) {
	t.Helper()
	run(t, "ip", "link", "add", name+"p", "type", "veth", "peer", "name", name+"q")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name+"p").Run() })
	run(t, "ip", "link", "add", name, "link", name+"p", "mtu", fmt.Sprint(mtu), "address", mac, "type", "macvlan", "mode", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
}

// linkIn returns the link named name in the netns at path ("" = host).
func linkIn(t testing.TB, path, name string) (netlink.Link, []string) {
	t.Helper()
	var h *netlink.Handle
	var err error
	if path == "" {
		h, err = netlink.NewHandle()
	} else {
		var ns netns.NsHandle
		ns, err = netns.GetFromPath(path)
		if err != nil {
			t.Fatalf("open netns %s: %v", path, err)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, nil
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return l, out
}

package kubeapi_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

func newClient(t *testing.T) (*apitest.Server, *kubeapi.Client) {
	t.Helper()
	srv := apitest.New(t)
	c, err := kubeapi.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func slice(name, node, driver string) *resourceapi.ResourceSlice {
	return &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourceapi.ResourceSliceSpec{
			Driver: driver, NodeName: &node,
			Pool:    resourceapi.ResourcePool{Name: node, Generation: 1, ResourceSliceCount: 1},
			Devices: []resourceapi.Device{{Name: "dev-" + name}},
		},
	}
}

func claim(ns, name string, uid types.UID) *resourceapi.ResourceClaim {
	return &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uid, Labels: map[string]string{"app": name}}}
}

func TestGetAndList(t *testing.T) {
	srv, c := newClient(t)
	ctx := context.Background()
	class := "sriov.dra.dev/vf"
	srv.Add(
		claim("a", "c1", "u1"), claim("b", "c2", "u2"),
		slice("s1", "n1", "sriov.dra.dev"), slice("s2", "n2", "sriov.dra.dev"), slice("s3", "n1", "gpu.example.com"),
		&resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: "vf"}, Spec: resourceapi.DeviceClassSpec{ExtendedResourceName: &class}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "node-uid"}},
	)
	tests := []struct {
		name     string
		call     func() (any, error)
		check    func(t *testing.T, got any)
		wantErr  func(error) bool
		wantPath string // a substring of the recorded request's query or resource
	}{
		{name: "get claim", call: func() (any, error) { return c.GetClaim(ctx, "a", "c1") },
			check: func(t *testing.T, got any) {
				if cl := got.(*resourceapi.ResourceClaim); cl.UID != "u1" || cl.Namespace != "a" {
					t.Errorf("claim %+v", cl.ObjectMeta)
				}
			}},
		{name: "get claim: not found", call: func() (any, error) { return c.GetClaim(ctx, "a", "nope") }, wantErr: apierrors.IsNotFound},
		{name: "list claims of all namespaces by label", call: func() (any, error) {
			return c.ListClaims(ctx, metav1.NamespaceAll, metav1.ListOptions{LabelSelector: "app=c2"})
		}, check: func(t *testing.T, got any) {
			if l := got.(*resourceapi.ResourceClaimList); len(l.Items) != 1 || l.Items[0].Name != "c2" {
				t.Errorf("claims %+v", l.Items)
			}
		}, wantPath: "labelSelector=app%3Dc2"},
		{name: "list slices by node and driver", call: func() (any, error) {
			return c.ListSlices(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1,spec.driver=sriov.dra.dev"})
		}, check: func(t *testing.T, got any) {
			if l := got.(*resourceapi.ResourceSliceList); len(l.Items) != 1 || l.Items[0].Name != "s1" || l.ResourceVersion == "" {
				t.Errorf("slices %+v (rv %q)", l.Items, l.ResourceVersion)
			}
		}, wantPath: "fieldSelector=spec.nodeName%3Dn1%2Cspec.driver%3Dsriov.dra.dev"},
		{name: "list slices in pages", call: func() (any, error) {
			return c.ListSlices(ctx, metav1.ListOptions{Limit: 2})
		}, check: func(t *testing.T, got any) {
			l := got.(*resourceapi.ResourceSliceList)
			if len(l.Items) != 2 || l.Continue == "" {
				t.Fatalf("first page %d items, continue %q", len(l.Items), l.Continue)
			}
			rest, err := c.ListSlices(ctx, metav1.ListOptions{Limit: 2, Continue: l.Continue})
			if err != nil || len(rest.Items) != 1 || rest.Items[0].Name != "s3" || rest.Continue != "" {
				t.Errorf("second page %v %+v", err, rest)
			}
		}, wantPath: "limit=2"},
		{name: "bad field selector", call: func() (any, error) {
			return c.ListSlices(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName==="})
		}, wantErr: apierrors.IsBadRequest},
		{name: "device class", call: func() (any, error) { return c.GetDeviceClass(ctx, "vf") },
			check: func(t *testing.T, got any) {
				if dc := got.(*resourceapi.DeviceClass); dc.Spec.ExtendedResourceName == nil || *dc.Spec.ExtendedResourceName != class {
					t.Errorf("class %+v", dc.Spec)
				}
			}},
		{name: "node UID", call: func() (any, error) { return c.GetNodeUID(ctx, "n1") },
			check: func(t *testing.T, got any) {
				if got.(types.UID) != "node-uid" {
					t.Errorf("uid %v", got)
				}
			}},
		{name: "node UID: no node", call: func() (any, error) { return c.GetNodeUID(ctx, "n9") }, wantErr: apierrors.IsNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(srv.Requests())
			got, err := tc.call()
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("error %v (%T), want another", err, err)
				}
				// Not wrapped: the StatusError itself, as the generated
				// clients return it.
				if _, ok := err.(*apierrors.StatusError); !ok { //nolint:errorlint // the error itself, on purpose

					t.Errorf("error is a %T, want *apierrors.StatusError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, got)
			reqs := srv.Requests()[before:]
			if tc.wantPath != "" && !strings.Contains(reqs[0].Query.Encode(), tc.wantPath) {
				t.Errorf("query %q, want %q in it", reqs[0].Query.Encode(), tc.wantPath)
			}
			for _, r := range reqs {
				if r.UserAgent != "apitest-client" {
					t.Errorf("user agent %q", r.UserAgent)
				}
			}
		})
	}
}

// The node is read as metadata only.
func TestGetNodeUIDAsksForMetadata(t *testing.T) {
	srv, c := newClient(t)
	srv.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u"}, Status: corev1.NodeStatus{Images: make([]corev1.ContainerImage, 50)}})
	if uid, err := c.GetNodeUID(context.Background(), "n1"); err != nil || uid != "u" {
		t.Fatalf("GetNodeUID = %q, %v", uid, err)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].Resource != "nodes" || reqs[0].Group != "" || reqs[0].Version != "v1" ||
		!strings.Contains(reqs[0].Accept, "as=PartialObjectMetadata") {
		t.Errorf("requests %+v", reqs)
	}
}

func TestSliceWrites(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, srv *apitest.Server, c *kubeapi.Client)
	}{
		{"create with generateName", func(t *testing.T, srv *apitest.Server, c *kubeapi.Client) {
			s := slice("", "n1", "d")
			s.GenerateName = "n1-d-"
			got, err := c.CreateSlice(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got.Name, "n1-d-") || got.UID == "" || got.ResourceVersion == "" || len(got.Spec.Devices) != 1 {
				t.Errorf("created %+v", got)
			}
			var stored resourceapi.ResourceSlice
			if !srv.Get("resource.k8s.io", "resourceslices", "", got.Name, &stored) || stored.Spec.Driver != "d" {
				t.Errorf("stored %+v", stored)
			}
		}},
		{"create twice: already exists", func(t *testing.T, _ *apitest.Server, c *kubeapi.Client) {
			if _, err := c.CreateSlice(ctx, slice("s", "n1", "d")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.CreateSlice(ctx, slice("s", "n1", "d")); !apierrors.IsAlreadyExists(err) {
				t.Errorf("second create: %v, want AlreadyExists", err)
			}
		}},
		{"update, then update with a stale version: conflict", func(t *testing.T, _ *apitest.Server, c *kubeapi.Client) {
			s, err := c.CreateSlice(ctx, slice("s", "n1", "d"))
			if err != nil {
				t.Fatal(err)
			}
			s2 := s.DeepCopy()
			s2.Spec.Pool.Generation = 2
			upd, err := c.UpdateSlice(ctx, s2)
			if err != nil || upd.Spec.Pool.Generation != 2 || upd.ResourceVersion == s.ResourceVersion || upd.UID != s.UID {
				t.Fatalf("update: %v %+v", err, upd)
			}
			if _, err := c.UpdateSlice(ctx, s); !apierrors.IsConflict(err) {
				t.Errorf("stale update: %v, want Conflict", err)
			}
		}},
		{"update of a missing slice: not found", func(t *testing.T, _ *apitest.Server, c *kubeapi.Client) {
			if _, err := c.UpdateSlice(ctx, slice("nope", "n1", "d")); !apierrors.IsNotFound(err) {
				t.Errorf("update: %v, want NotFound", err)
			}
		}},
		{"delete with the UID precondition", func(t *testing.T, srv *apitest.Server, c *kubeapi.Client) {
			s, err := c.CreateSlice(ctx, slice("s", "n1", "d"))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.DeleteSlice(ctx, "s", "other-uid"); !apierrors.IsConflict(err) {
				t.Errorf("delete with another UID: %v, want Conflict", err)
			}
			if !srv.Get("resource.k8s.io", "resourceslices", "", "s", &resourceapi.ResourceSlice{}) {
				t.Fatal("a failed precondition deleted the slice")
			}
			if err := c.DeleteSlice(ctx, "s", s.UID); err != nil {
				t.Fatal(err)
			}
			if srv.Get("resource.k8s.io", "resourceslices", "", "s", &resourceapi.ResourceSlice{}) {
				t.Error("slice still there")
			}
			if err := c.DeleteSlice(ctx, "s", ""); !apierrors.IsNotFound(err) {
				t.Errorf("delete of a gone slice: %v, want NotFound", err)
			}
		}},
		{"server error is a StatusError", func(t *testing.T, srv *apitest.Server, c *kubeapi.Client) {
			srv.React(func(r apitest.Request) *metav1.Status {
				if r.Verb == "create" {
					st := apierrors.NewForbidden(resourceapi.Resource("resourceslices"), "", nil).Status()
					return &st
				}
				return nil
			})
			_, err := c.CreateSlice(ctx, slice("s", "n1", "d"))
			if !apierrors.IsForbidden(err) {
				t.Errorf("create: %v, want Forbidden", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, c := newClient(t)
			tc.run(t, srv, c)
		})
	}
}

func TestWatchSlices(t *testing.T) {
	srv, c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Add(slice("old", "n1", "d"))
	l, err := c.ListSlices(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1"})
	if err != nil {
		t.Fatal(err)
	}
	// Written between the list and the watch: the watch from the list's
	// version still sees it.
	mine, err := c.CreateSlice(ctx, slice("mine", "n1", "d"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.WatchSlices(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1", ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := c.CreateSlice(ctx, slice("other", "n2", "d")); err != nil {
		t.Fatal(err)
	}
	upd := mine.DeepCopy()
	upd.Spec.Pool.Generation = 5
	if _, err := c.UpdateSlice(ctx, upd); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSlice(ctx, "mine", mine.UID); err != nil {
		t.Fatal(err)
	}
	want := []string{"ADDED mine 1", "MODIFIED mine 5", "DELETED mine 5"}
	var got []string
	for len(got) < len(want) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %v", got)
			}
			if ev.Type == watch.Error {
				t.Fatalf("watch error %v", apierrors.FromObject(ev.Object))
			}
			s := ev.Object.(*resourceapi.ResourceSlice)
			got = append(got, string(ev.Type)+" "+s.Name+" "+itoa(s.Spec.Pool.Generation))
		case <-ctx.Done():
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events %v, want %v", got, want)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestApplyClaimStatus(t *testing.T) {
	srv, c := newClient(t)
	ctx := context.Background()
	srv.Add(claim("ns", "c", "uid-1"))
	apply := func(manager, uid string, devices ...string) error {
		var devs []map[string]any
		for _, d := range devices {
			devs = append(devs, map[string]any{"driver": manager, "pool": "p", "device": d})
		}
		body, _ := json.Marshal(map[string]any{
			"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
			"metadata": map[string]any{"name": "c", "namespace": "ns", "uid": uid},
			"status":   map[string]any{"devices": devs},
		})
		_, err := c.ApplyClaimStatus(ctx, "ns", "c", body, metav1.PatchOptions{FieldManager: manager, Force: ptr(true)})
		return err
	}
	devices := func() string {
		var cl resourceapi.ResourceClaim
		srv.Get("resource.k8s.io", "resourceclaims", "ns", "c", &cl)
		var out []string
		for _, d := range cl.Status.Devices {
			out = append(out, d.Driver+"/"+d.Device)
		}
		return strings.Join(out, ",")
	}
	steps := []struct {
		name    string
		do      func() error
		want    string
		wantErr func(error) bool
	}{
		{"first manager", func() error { return apply("a", "uid-1", "d1", "d2") }, "a/d1,a/d2", nil},
		{"second manager keeps the first's entries", func() error { return apply("b", "uid-1", "x") }, "a/d1,a/d2,b/x", nil},
		{"an entry left out is removed", func() error { return apply("a", "uid-1", "d2") }, "a/d2,b/x", nil},
		{"empty apply clears the manager's entries", func() error { return apply("a", "") }, "b/x", nil},
		{"UID precondition", func() error { return apply("a", "uid-2", "d9") }, "b/x", apierrors.IsConflict},
	}
	for _, st := range steps {
		err := st.do()
		if st.wantErr != nil {
			if !st.wantErr(err) {
				t.Errorf("%s: error %v", st.name, err)
			}
		} else if err != nil {
			t.Errorf("%s: %v", st.name, err)
		}
		if got := devices(); got != st.want {
			t.Errorf("%s: devices %q, want %q", st.name, got, st.want)
		}
	}
	var last apitest.Request
	for _, r := range srv.Requests() {
		if r.Verb == "patch" {
			last = r
		}
	}
	if last.Subresource != "status" || last.ContentType != string(types.ApplyPatchType) || last.Query.Get("fieldManager") != "a" || last.Query.Get("force") != "true" {
		t.Errorf("apply request %+v", last)
	}
	srv.Delete("resource.k8s.io", "resourceclaims", "ns", "c")
	if err := apply("a", "uid-1", "d1"); !apierrors.IsNotFound(err) {
		t.Errorf("apply to a gone claim: %v, want NotFound", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestEventRequests(t *testing.T) {
	_, c := newClient(t)
	ctx := context.Background()
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "c.1", Namespace: "ns"}, EventTime: metav1.NewMicroTime(time.Now()),
		ReportingController: "d", ReportingInstance: "d/n", Action: "Prepare", Reason: "Failed", Type: corev1.EventTypeWarning,
		Regarding: corev1.ObjectReference{Kind: "ResourceClaim", Namespace: "ns", Name: "c"}, Note: "no",
	}
	if _, err := c.CreateEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	got, err := c.PatchEvent(ctx, "ns", "c.1", types.MergePatchType, []byte(`{"series":{"count":3,"lastObservedTime":"2026-01-01T00:00:00.000000Z"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Series == nil || got.Series.Count != 3 || got.Note != "no" {
		t.Errorf("patched event %+v", got)
	}
	if _, err := c.PatchEvent(ctx, "ns", "gone", types.MergePatchType, []byte(`{}`)); !apierrors.IsNotFound(err) {
		t.Errorf("patch of a missing event: %v", err)
	}
}

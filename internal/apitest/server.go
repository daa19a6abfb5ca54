// Package apitest is an in-memory Kubernetes API server over HTTP for
// tests: the real clients (pkg/kubeapi, client-go's clientset, informers)
// talk to it through their whole stack, wire format and error mapping
// included.
//
// It keeps objects as JSON by group, resource, namespace and name,
// assigns UIDs, resourceVersions, creationTimestamps and generateName
// names, and serves get, list (field selectors on any dotted JSON path
// such as spec.nodeName or spec.driver, label selectors, limit and
// continue), watch (from a resourceVersion, or with the initial events
// and bookmark of a watch-list request), create, update (with the
// resourceVersion precondition), delete (with UID and resourceVersion
// preconditions), JSON merge patch (also for strategic merge patches)
// and server-side apply. Server-side apply is exact only where this
// project uses it: the status.devices of a ResourceClaim (a list map
// keyed by driver, pool and device), owned per field manager, so that an
// apply replaces the entries of its manager and leaves other managers'
// ones alone; other applies merge like a merge patch. Errors are the API
// server's Status objects with its reasons and codes (NotFound,
// AlreadyExists, Conflict, Gone, ...).
//
// Request bodies may be JSON, YAML (apply) or protobuf (client-go's
// clientset), answers are JSON. Requests are recorded (Requests) and a
// test can make chosen requests fail (React).
package apitest

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// Request is one request the server got.
type Request struct {
	// Verb is get, list, watch, create, update, patch or delete.
	Verb                                  string
	Group, Version, Resource, Subresource string
	Namespace, Name                       string
	Query                                 url.Values
	ContentType, Accept                   string
	Body                                  []byte
	UserAgent                             string
}

// Reactor may answer a request in place of the server: a non-nil Status
// is sent as the error answer (its Code is the HTTP status).
type Reactor func(Request) *metav1.Status

// Server is the in-memory API server.
type Server struct {
	// URL is the server's base URL.
	URL string

	t       testing.TB
	srv     *httptest.Server
	decoder runtime.Decoder
	scheme  *runtime.Scheme

	mu       sync.Mutex
	objs     map[key]map[string]any
	rv       int64
	history  []event
	watchers map[*watcher]struct{}
	requests []Request
	reactors []Reactor
	// owners: the status.devices entries of a claim each field manager
	// applied.
	owners map[key]map[string]map[string]bool
}

// key names an object; name "" with the others set names a collection.
type key struct {
	group, resource, namespace, name string
}

type event struct {
	rv   int64
	typ  string
	key  key
	obj  map[string]any
	prev map[string]any
}

type watcher struct {
	group, resource, namespace string
	match                      func(map[string]any) bool
	ch                         chan event
}

// New starts a server on a loopback port; it stops when the test ends.
func New(t testing.TB) *Server { return NewOn(t, nil) }

// NewOn starts a server on ln (nil: a loopback port).
func NewOn(t testing.TB, ln net.Listener) *Server {
	s := &Server{
		t: t, objs: map[key]map[string]any{}, watchers: map[*watcher]struct{}{},
		owners: map[key]map[string]map[string]bool{},
	}
	s.scheme = runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, resourceapi.AddToScheme, eventsv1.AddToScheme} {
		if err := add(s.scheme); err != nil {
			t.Fatal(err)
		}
	}
	metav1.AddToGroupVersion(s.scheme, schema.GroupVersion{Version: "v1"})
	s.decoder = serializer.NewCodecFactory(s.scheme).UniversalDeserializer()
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if ln != nil {
		s.srv.Listener.Close()
		s.srv.Listener = ln
	}
	s.srv.Start()
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// Config is a client config for the server, without client-side rate
// limits.
func (s *Server) Config() *rest.Config {
	return &rest.Config{Host: s.URL, QPS: -1, UserAgent: "apitest-client"}
}

// React adds a reactor; reactors added later are asked first.
func (s *Server) React(r Reactor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reactors = append([]Reactor{r}, s.reactors...)
}

// Requests returns the requests so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count is the number of requests with verb on resource ("" matches any).
func (s *Server) Count(verb, resource string) int {
	n := 0
	for _, r := range s.Requests() {
		if (verb == "" || r.Verb == verb) && (resource == "" || r.Resource == resource) {
			n++
		}
	}
	return n
}

// Add stores typed objects as they are (their kind from the scheme),
// with a UID and creation time unless they have one.
func (s *Server) Add(objs ...runtime.Object) {
	s.t.Helper()
	for _, obj := range objs {
		gvks, _, err := s.scheme.ObjectKinds(obj)
		if err != nil {
			s.t.Fatalf("apitest: %v", err)
		}
		gvk := gvks[0]
		m, err := toMap(obj)
		if err != nil {
			s.t.Fatalf("apitest: %v", err)
		}
		m["apiVersion"], m["kind"] = gvk.GroupVersion().String(), gvk.Kind
		md := metadata(m)
		k := key{group: gvk.Group, resource: resourceOf(gvk.Kind), namespace: str(md["namespace"]), name: str(md["name"])}
		if k.name == "" {
			s.t.Fatalf("apitest: a %s without a name", gvk.Kind)
		}
		s.mu.Lock()
		_, existed := s.objs[k]
		s.store(k, m, map[bool]string{true: watchModified, false: watchAdded}[existed])
		s.mu.Unlock()
	}
}

// Delete removes an object as a DELETE would (watchers see it).
func (s *Server) Delete(group, resource, namespace, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{group: group, resource: resource, namespace: namespace, name: name}
	obj, ok := s.objs[k]
	if ok {
		s.remove(k, obj)
	}
	return ok
}

// Get decodes the stored object into into; false when there is none.
func (s *Server) Get(group, resource, namespace, name string, into any) bool {
	s.t.Helper()
	s.mu.Lock()
	obj, ok := s.objs[key{group: group, resource: resource, namespace: namespace, name: name}]
	var b []byte
	var err error
	if ok {
		b, err = json.Marshal(obj)
	}
	s.mu.Unlock()
	if !ok {
		return false
	}
	if err == nil {
		err = json.Unmarshal(b, into)
	}
	if err != nil {
		s.t.Fatalf("apitest: decode %s %s/%s: %v", resource, namespace, name, err)
	}
	return true
}

// List returns the stored objects of a resource (namespace "": all),
// sorted by namespace and name, as JSON maps.
func (s *Server) List(group, resource, namespace string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, k := range s.keys(group, resource, namespace) {
		out = append(out, deepCopy(s.objs[k]))
	}
	return out
}

const (
	watchAdded    = "ADDED"
	watchModified = "MODIFIED"
	watchDeleted  = "DELETED"
)

// store stamps m and keeps it under k; s.mu is held.
func (s *Server) store(k key, m map[string]any, typ string) {
	s.rv++
	md := metadata(m)
	md["resourceVersion"] = strconv.FormatInt(s.rv, 10)
	if str(md["uid"]) == "" {
		md["uid"] = fmt.Sprintf("00000000-0000-4000-8000-%012d", s.rv)
	}
	if md["creationTimestamp"] == nil {
		md["creationTimestamp"] = time.Now().UTC().Format(time.RFC3339)
	}
	if k.namespace != "" {
		md["namespace"] = k.namespace
	}
	prev := s.objs[k]
	s.objs[k] = m
	s.emit(event{rv: s.rv, typ: typ, key: k, obj: m, prev: prev})
}

// remove deletes k; s.mu is held.
func (s *Server) remove(k key, obj map[string]any) {
	delete(s.objs, k)
	delete(s.owners, k)
	s.rv++
	gone := deepCopy(obj)
	metadata(gone)["resourceVersion"] = strconv.FormatInt(s.rv, 10)
	s.emit(event{rv: s.rv, typ: watchDeleted, key: k, obj: gone})
}

// emit records ev and sends it to the watchers it concerns; s.mu is held.
func (s *Server) emit(ev event) {
	s.history = append(s.history, ev)
	for w := range s.watchers {
		w.send(ev)
	}
}

func (w *watcher) concerns(ev event) bool {
	return ev.key.group == w.group && ev.key.resource == w.resource && (w.namespace == "" || ev.key.namespace == w.namespace)
}

// send delivers ev when it concerns w: an object that stops matching the
// selector is DELETED for w, one that starts matching ADDED.
func (w *watcher) send(ev event) {
	if !w.concerns(ev) {
		return
	}
	now := w.match(ev.obj)
	was := ev.prev != nil && w.match(ev.prev)
	typ := ev.typ
	switch {
	case ev.typ == watchModified && now && !was:
		typ = watchAdded
	case ev.typ == watchModified && !now && was:
		typ, now = watchDeleted, true
	}
	if !now {
		return
	}
	select {
	case w.ch <- event{rv: ev.rv, typ: typ, key: ev.key, obj: ev.obj}:
	default:
		// A watcher that does not read (its client is gone) loses events.
	}
}

// keys are the keys of a collection, sorted; s.mu is held.
func (s *Server) keys(group, resource, namespace string) []key {
	var out []key
	for k := range s.objs {
		if k.group == group && k.resource == resource && (namespace == "" || k.namespace == namespace) {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].namespace != out[j].namespace {
			return out[i].namespace < out[j].namespace
		}
		return out[i].name < out[j].name
	})
	return out
}

// parse reads the request's path: /api/v1/... or /apis/<group>/<version>/...,
// then [namespaces/<ns>/]<resource>[/<name>[/<subresource>]].
func parse(r *http.Request) (Request, error) {
	req := Request{Query: r.URL.Query(), ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept"), UserAgent: r.UserAgent()}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		req.Version, segs = segs[1], segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		req.Group, req.Version, segs = segs[1], segs[2], segs[3:]
	default:
		return req, fmt.Errorf("path %s is not an API path", r.URL.Path)
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		req.Namespace, segs = segs[1], segs[2:]
	}
	if len(segs) == 0 || len(segs) > 3 {
		return req, fmt.Errorf("path %s names no resource", r.URL.Path)
	}
	req.Resource = segs[0]
	if len(segs) > 1 {
		req.Name = segs[1]
	}
	if len(segs) > 2 {
		req.Subresource = segs[2]
	}
	watching := req.Query.Get("watch") == "true" || req.Query.Get("watch") == "1"
	switch r.Method {
	case http.MethodGet:
		switch {
		case watching:
			req.Verb = "watch"
		case req.Name == "":
			req.Verb = "list"
		default:
			req.Verb = "get"
		}
	case http.MethodPost:
		req.Verb = "create"
	case http.MethodPut:
		req.Verb = "update"
	case http.MethodPatch:
		req.Verb = "patch"
	case http.MethodDelete:
		req.Verb = "delete"
	default:
		return req, fmt.Errorf("method %s", r.Method)
	}
	return req, nil
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	req, err := parse(r)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()).Status())
		return
	}
	if r.Body != nil {
		if req.Body, err = io.ReadAll(r.Body); err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()).Status())
			return
		}
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	reactors := s.reactors
	s.mu.Unlock()
	for _, react := range reactors {
		if st := react(req); st != nil {
			writeStatus(w, *st)
			return
		}
	}
	k := key{group: req.Group, resource: req.Resource, namespace: req.Namespace, name: req.Name}
	switch req.Verb {
	case "watch":
		s.watch(w, r, req)
	case "list":
		s.list(w, req)
	case "get":
		s.get(w, r, req, k)
	case "create":
		s.create(w, req)
	case "update":
		s.update(w, req, k)
	case "patch":
		s.patch(w, req, k)
	case "delete":
		s.delete(w, req, k)
	}
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, req Request, k key) {
	s.mu.Lock()
	obj, ok := s.objs[k]
	if ok {
		obj = deepCopy(obj)
	}
	s.mu.Unlock()
	if !ok {
		writeStatus(w, notFound(req))
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadata") {
		writeJSON(w, http.StatusOK, map[string]any{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
		return
	}
	writeJSON(w, http.StatusOK, obj)
}

// selector is the field and label selector of a list or watch.
func selector(q url.Values) (func(map[string]any) bool, error) {
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return nil, fmt.Errorf("fieldSelector: %w", err)
	}
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return nil, fmt.Errorf("labelSelector: %w", err)
	}
	return func(obj map[string]any) bool {
		set := fields.Set{}
		for _, req := range fs.Requirements() {
			set[req.Field] = lookup(obj, req.Field)
		}
		lbls := labels.Set{}
		if m, ok := metadata(obj)["labels"].(map[string]any); ok {
			for k, v := range m {
				lbls[k] = str(v)
			}
		}
		return fs.Matches(set) && ls.Matches(lbls)
	}, nil
}

// lookup is the value at a dotted path of obj as a string ("" if none).
func lookup(obj map[string]any, path string) string {
	var cur any = obj
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	switch v := cur.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

func (s *Server) list(w http.ResponseWriter, req Request) {
	match, err := selector(req.Query)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()).Status())
		return
	}
	limit, _ := strconv.Atoi(req.Query.Get("limit"))
	after := req.Query.Get("continue")
	s.mu.Lock()
	var items []any
	next := ""
	for _, k := range s.keys(req.Group, req.Resource, req.Namespace) {
		token := k.namespace + "/" + k.name
		if after != "" && token <= after {
			continue
		}
		obj := s.objs[k]
		if !match(obj) {
			continue
		}
		if limit > 0 && len(items) == limit {
			next = itemToken(items[len(items)-1].(map[string]any))
			break
		}
		items = append(items, deepCopy(obj))
	}
	rv := s.rv
	s.mu.Unlock()
	if items == nil {
		items = []any{}
	}
	list := map[string]any{
		"kind": listKind(req.Resource), "apiVersion": apiVersion(req.Group, req.Version),
		"metadata": map[string]any{"resourceVersion": strconv.FormatInt(rv, 10)},
		"items":    items,
	}
	if next != "" {
		list["metadata"].(map[string]any)["continue"] = next
	}
	writeJSON(w, http.StatusOK, list)
}

func itemToken(obj map[string]any) string {
	md := metadata(obj)
	return str(md["namespace"]) + "/" + str(md["name"])
}

func (s *Server) create(w http.ResponseWriter, req Request) {
	if req.Name != "" {
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: req.Group, Resource: req.Resource}, "create on a name").Status())
		return
	}
	m, err := s.decode(req.Body, req.ContentType)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()).Status())
		return
	}
	md := metadata(m)
	if ns := str(md["namespace"]); ns != "" && ns != req.Namespace {
		writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("the namespace of the object (%s) does not match the namespace on the request (%s)", ns, req.Namespace)).Status())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := str(md["name"])
	if name == "" {
		gen := str(md["generateName"])
		if gen == "" {
			writeStatus(w, invalid(req, kindOf(m), "", "metadata.name: Required value: name or generateName is required"))
			return
		}
		name = fmt.Sprintf("%s%05d", gen, s.rv+1)
		md["name"] = name
	}
	k := key{group: req.Group, resource: req.Resource, namespace: req.Namespace, name: name}
	if _, ok := s.objs[k]; ok {
		writeStatus(w, apierrors.NewAlreadyExists(schema.GroupResource{Group: req.Group, Resource: req.Resource}, name).Status())
		return
	}
	delete(md, "uid")
	delete(md, "resourceVersion")
	s.store(k, m, watchAdded)
	writeJSON(w, http.StatusCreated, m)
}

// hasStatus tells the resources whose status is a subresource: a write
// of the object keeps the stored status, a write of the status the
// stored rest.
func hasStatus(resource string) bool {
	switch resource {
	case "resourceclaims", "nodes", "pods":
		return true
	}
	return false
}

func (s *Server) update(w http.ResponseWriter, req Request, k key) {
	m, err := s.decode(req.Body, req.ContentType)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()).Status())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.objs[k]
	if !ok {
		writeStatus(w, notFound(req))
		return
	}
	md, oldMD := metadata(m), metadata(old)
	if rv := str(md["resourceVersion"]); rv != "" && rv != str(oldMD["resourceVersion"]) {
		writeStatus(w, conflict(req, "the object has been modified; please apply your changes to the latest version and try again"))
		return
	}
	if uid := str(md["uid"]); uid != "" && uid != str(oldMD["uid"]) {
		writeStatus(w, conflict(req, fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", uid, str(oldMD["uid"]))))
		return
	}
	m = keepSubresource(req, old, m)
	md = metadata(m)
	md["uid"], md["creationTimestamp"], md["name"] = oldMD["uid"], oldMD["creationTimestamp"], oldMD["name"]
	s.store(k, m, watchModified)
	writeJSON(w, http.StatusOK, m)
}

// keepSubresource: a write of the status changes only the status, a
// write of a resource with a status subresource everything but it.
func keepSubresource(req Request, old, m map[string]any) map[string]any {
	switch {
	case req.Subresource == "status":
		out := deepCopy(old)
		if st, ok := m["status"]; ok {
			out["status"] = st
		} else {
			delete(out, "status")
		}
		return out
	case hasStatus(req.Resource):
		if st, ok := old["status"]; ok {
			m["status"] = deepCopy(map[string]any{"s": st})["s"]
		} else {
			delete(m, "status")
		}
	}
	return m
}

func (s *Server) patch(w http.ResponseWriter, req Request, k key) {
	mediaType, _, _ := mime.ParseMediaType(req.ContentType)
	switch mediaType {
	case string(apiApply):
		s.apply(w, req, k)
		return
	case "application/merge-patch+json", "application/strategic-merge-patch+json":
	default:
		writeStatus(w, metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType,
			Reason: metav1.StatusReasonUnsupportedMediaType, Message: "apitest serves merge and apply patches, not " + req.ContentType})
		return
	}
	var p map[string]any
	if err := json.Unmarshal(req.Body, &p); err != nil {
		writeStatus(w, apierrors.NewBadRequest("patch: "+err.Error()).Status())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.objs[k]
	if !ok {
		writeStatus(w, notFound(req))
		return
	}
	m := mergePatch(deepCopy(old), p).(map[string]any)
	m = keepSubresource(req, old, m)
	md, oldMD := metadata(m), metadata(old)
	md["uid"], md["name"], md["namespace"] = oldMD["uid"], oldMD["name"], oldMD["namespace"]
	s.store(k, m, watchModified)
	writeJSON(w, http.StatusOK, m)
}

const apiApply = "application/apply-patch+yaml"

// apply is server-side apply: for a ResourceClaim's status, the
// status.devices entries are owned per field manager (see the package
// comment); other applies merge. A uid in the applied metadata is a
// precondition.
func (s *Server) apply(w http.ResponseWriter, req Request, k key) {
	manager := req.Query.Get("fieldManager")
	if manager == "" {
		writeStatus(w, invalid(req, "PatchOptions", "", "fieldManager: Required value: is required for apply patch"))
		return
	}
	force := req.Query.Get("force") == "true"
	j, err := yaml.YAMLToJSON(req.Body)
	var p map[string]any
	if err == nil {
		err = json.Unmarshal(j, &p)
	}
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest("apply: "+err.Error()).Status())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.objs[k]
	if !ok {
		writeStatus(w, notFound(req))
		return
	}
	oldMD := metadata(old)
	if uid := str(metadata(p)["uid"]); uid != "" && uid != str(oldMD["uid"]) {
		writeStatus(w, conflict(req, fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", uid, str(oldMD["uid"]))))
		return
	}
	var m map[string]any
	if req.Resource == "resourceclaims" && req.Subresource == "status" {
		var st *metav1.Status
		m, st = s.applyClaimDevices(req, k, old, p, manager, force)
		if st != nil {
			writeStatus(w, *st)
			return
		}
	} else {
		delete(p, "metadata")
		m = mergePatch(deepCopy(old), p).(map[string]any)
		m = keepSubresource(req, old, m)
	}
	s.store(k, m, watchModified)
	writeJSON(w, http.StatusOK, m)
}

// applyClaimDevices replaces the status.devices entries manager owns with
// those of the apply; s.mu is held.
func (s *Server) applyClaimDevices(req Request, k key, old, p map[string]any, manager string, force bool) (map[string]any, *metav1.Status) {
	entryKey := func(e any) string {
		m, _ := e.(map[string]any)
		return str(m["driver"]) + "/" + str(m["pool"]) + "/" + str(m["device"])
	}
	var applied []any
	if st, ok := p["status"].(map[string]any); ok {
		applied, _ = st["devices"].([]any)
	}
	owners := s.owners[k]
	if owners == nil {
		owners = map[string]map[string]bool{}
		s.owners[k] = owners
	}
	want := map[string]any{}
	for _, e := range applied {
		ek := entryKey(e)
		for other, owned := range owners {
			if other != manager && owned[ek] && !force {
				st := conflict(req, fmt.Sprintf("Apply failed with 1 conflict: conflict with %q: .status.devices[%s]", other, ek))
				return nil, &st
			}
		}
		want[ek] = e
	}
	m := deepCopy(old)
	st, _ := m["status"].(map[string]any)
	if st == nil {
		st = map[string]any{}
		m["status"] = st
	}
	cur, _ := st["devices"].([]any)
	var out []any
	for _, e := range cur {
		ek := entryKey(e)
		if n, ok := want[ek]; ok {
			out = append(out, n)
			delete(want, ek)
			continue
		}
		if owners[manager][ek] && !ownedByOther(owners, manager, ek) {
			continue // this manager's entry it no longer applies
		}
		out = append(out, e)
	}
	for _, e := range applied {
		if _, ok := want[entryKey(e)]; ok {
			out = append(out, e)
		}
	}
	mine := map[string]bool{}
	for _, e := range applied {
		ek := entryKey(e)
		mine[ek] = true
		for other, owned := range owners {
			if other != manager {
				delete(owned, ek) // forced: the entry changes hands
			}
		}
	}
	owners[manager] = mine
	if len(out) == 0 {
		delete(st, "devices")
	} else {
		st["devices"] = out
	}
	return m, nil
}

func ownedByOther(owners map[string]map[string]bool, manager, ek string) bool {
	for other, owned := range owners {
		if other != manager && owned[ek] {
			return true
		}
	}
	return false
}

func (s *Server) delete(w http.ResponseWriter, req Request, k key) {
	var opts metav1.DeleteOptions
	if len(req.Body) > 0 {
		m, err := s.decode(req.Body, req.ContentType)
		if err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()).Status())
			return
		}
		if err := fromMap(m, &opts); err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()).Status())
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objs[k]
	if !ok {
		writeStatus(w, notFound(req))
		return
	}
	md := metadata(obj)
	if pre := opts.Preconditions; pre != nil {
		if pre.UID != nil && string(*pre.UID) != str(md["uid"]) {
			writeStatus(w, conflict(req, fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", *pre.UID, str(md["uid"]))))
			return
		}
		if pre.ResourceVersion != nil && *pre.ResourceVersion != str(md["resourceVersion"]) {
			writeStatus(w, conflict(req, fmt.Sprintf("Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s", *pre.ResourceVersion, str(md["resourceVersion"]))))
			return
		}
	}
	s.remove(k, obj)
	writeJSON(w, http.StatusOK, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess,
		Details: &metav1.StatusDetails{Name: k.name, Group: k.group, Kind: k.resource, UID: uidOf(md)}})
}

func uidOf(md map[string]any) types.UID { return types.UID(str(md["uid"])) }

func (s *Server) watch(w http.ResponseWriter, r *http.Request, req Request) {
	match, err := selector(req.Query)
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()).Status())
		return
	}
	wt := &watcher{group: req.Group, resource: req.Resource, namespace: req.Namespace, match: match, ch: make(chan event, 16384)}
	initial := req.Query.Get("sendInitialEvents") == "true"
	from, _ := strconv.ParseInt(req.Query.Get("resourceVersion"), 10, 64)
	s.mu.Lock()
	var backlog []event
	switch {
	case initial:
		for _, k := range s.keys(req.Group, req.Resource, req.Namespace) {
			if match(s.objs[k]) {
				backlog = append(backlog, event{typ: watchAdded, key: k, obj: s.objs[k]})
			}
		}
	case from > 0:
		if len(s.history) > 0 && s.history[0].rv > from+1 {
			s.mu.Unlock()
			writeStatus(w, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, s.history[0].rv)).Status())
			return
		}
		for _, ev := range s.history {
			if ev.rv > from {
				// As the watcher would have seen it.
				probe := &watcher{group: wt.group, resource: wt.resource, namespace: wt.namespace, match: match, ch: make(chan event, 1)}
				probe.send(ev)
				select {
				case e := <-probe.ch:
					backlog = append(backlog, e)
				default:
				}
			}
		}
	}
	rv := s.rv
	s.watchers[wt] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, wt)
		s.mu.Unlock()
	}()

	var timeout <-chan time.Time
	if secs, _ := strconv.Atoi(req.Query.Get("timeoutSeconds")); secs > 0 {
		timeout = time.After(time.Duration(secs) * time.Second)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	encode := func(typ string, obj map[string]any) error {
		s.mu.Lock()
		b, err := json.Marshal(map[string]any{"type": typ, "object": obj})
		s.mu.Unlock()
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	for _, ev := range backlog {
		if encode(ev.typ, ev.obj) != nil {
			return
		}
	}
	if initial {
		_ = enc.Encode(map[string]any{"type": "BOOKMARK", "object": map[string]any{
			"kind": strings.TrimSuffix(listKind(req.Resource), "List"), "apiVersion": apiVersion(req.Group, req.Version),
			"metadata": map[string]any{"resourceVersion": strconv.FormatInt(rv, 10), "annotations": map[string]any{metav1.InitialEventsAnnotationKey: "true"}},
		}})
	}
	flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-timeout:
			return
		case ev := <-wt.ch:
			if encode(ev.typ, ev.obj) != nil {
				return
			}
			flush()
		}
	}
}

// decode reads a request body (JSON, YAML or protobuf) as a JSON object
// with its apiVersion and kind.
func (s *Server) decode(body []byte, contentType string) (map[string]any, error) {
	mediaType, _, _ := mime.ParseMediaType(contentType)
	if mediaType == "" || mediaType == "application/json" {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("decode request body: %w", err)
		}
		return m, nil
	}
	obj, gvk, err := s.decoder.Decode(body, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decode request body (%s): %w", contentType, err)
	}
	m, err := toMap(obj)
	if err != nil {
		return nil, err
	}
	m["apiVersion"], m["kind"] = gvk.GroupVersion().String(), gvk.Kind
	return m, nil
}

func toMap(obj any) (map[string]any, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func fromMap(m map[string]any, into any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, into)
}

func deepCopy(m map[string]any) map[string]any {
	out, err := toMap(m)
	if err != nil {
		panic(fmt.Sprintf("apitest: copy of a JSON object: %v", err))
	}
	return out
}

// mergePatch applies a JSON merge patch (RFC 7386).
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

func metadata(m map[string]any) map[string]any {
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	return md
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func kindOf(m map[string]any) string { return str(m["kind"]) }

// resourceOf is the resource (plural, lower case) of a kind.
func resourceOf(kind string) string {
	l := strings.ToLower(kind)
	if strings.HasSuffix(l, "s") {
		return l + "es"
	}
	return l + "s"
}

// listKind is the List kind of a resource.
func listKind(resource string) string {
	for _, k := range []string{"ResourceSlice", "ResourceClaim", "ResourceClaimTemplate", "DeviceClass", "Event", "Node", "Pod", "Namespace"} {
		if resourceOf(k) == resource {
			return k + "List"
		}
	}
	return "List"
}

func apiVersion(group, version string) string {
	if group == "" {
		return version
	}
	return group + "/" + version
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, st metav1.Status) {
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	st.Status = metav1.StatusFailure
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	writeJSON(w, int(st.Code), st)
}

func notFound(req Request) metav1.Status {
	return apierrors.NewNotFound(schema.GroupResource{Group: req.Group, Resource: req.Resource}, req.Name).Status()
}

func conflict(req Request, msg string) metav1.Status {
	return apierrors.NewConflict(schema.GroupResource{Group: req.Group, Resource: req.Resource}, req.Name, fmt.Errorf("%s", msg)).Status()
}

func invalid(req Request, kind, name, msg string) metav1.Status {
	return metav1.Status{Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
		Message: fmt.Sprintf("%s %q is invalid: %s", kind, name, msg),
		Details: &metav1.StatusDetails{Group: req.Group, Kind: kind, Name: name}}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/kubernetes/scheme"
)

// fakeAPI is an in-memory Kubernetes API server over HTTP, enough for the
// daemon as a separate process: objects are JSON kept by their URL path;
// GET of an object or a collection (a List), watch (with the initial
// events and bookmark of a watch-list request), POST, PUT, server-side
// apply and merge PATCH (the stored object is returned unchanged: the
// test does not read what the daemon patched), DELETE. Field and label
// selectors are ignored: every object belongs to the one node.
type fakeAPI struct {
	t        testing.TB
	srv      *httptest.Server
	mu       sync.Mutex
	objs     map[string]map[string]any
	rv       int
	watchers map[string][]chan watchEvent
	writes   map[string]int // "<method> <collection>" -> count
}

type watchEvent struct {
	Type   string         `json:"type"`
	Object map[string]any `json:"object"`
}

// newFakeAPI serves on ln (nil: a loopback port of the test's netns).
func newFakeAPI(t testing.TB, ln net.Listener) *fakeAPI {
	a := &fakeAPI{t: t, objs: map[string]map[string]any{}, watchers: map[string][]chan watchEvent{}, writes: map[string]int{}}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	if ln != nil {
		a.srv.Listener.Close()
		a.srv.Listener = ln
	}
	a.srv.Start()
	t.Cleanup(a.srv.Close)
	return a
}

// add stores obj at the object path p.
func (a *fakeAPI) add(p string, obj any) {
	b, err := json.Marshal(obj)
	if err != nil {
		a.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		a.t.Fatal(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stamp(m)
	a.objs[p] = m
}

// list returns the objects of a collection path.
func (a *fakeAPI) list(coll string) []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.collection(coll)
}

func (a *fakeAPI) collection(coll string) []map[string]any {
	var keys []string
	for p := range a.objs {
		if path.Dir(p) == coll {
			keys = append(keys, p)
		}
	}
	sort.Strings(keys)
	out := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		out = append(out, a.objs[k])
	}
	return out
}

func (a *fakeAPI) stamp(m map[string]any) {
	a.rv++
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	md["resourceVersion"] = strconv.Itoa(a.rv)
	if md["uid"] == nil {
		md["uid"] = fmt.Sprintf("00000000-0000-4000-8000-%012d", a.rv)
	}
	if md["creationTimestamp"] == nil {
		md["creationTimestamp"] = "2026-01-01T00:00:00Z"
	}
}

func (a *fakeAPI) notify(coll, typ string, obj map[string]any) {
	for _, w := range a.watchers[coll] {
		select {
		case w <- watchEvent{Type: typ, Object: obj}:
		default: // a watcher that does not read loses events (never here)
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func status(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": msg, "code": code})
}

// kindOf guesses a collection's List kind from its resource name.
func kindOf(coll string) string {
	switch path.Base(coll) {
	case "resourceslices":
		return "ResourceSliceList"
	case "resourceclaims":
		return "ResourceClaimList"
	case "nodes":
		return "NodeList"
	case "events":
		return "EventList"
	}
	return "List"
}

func (a *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet:
		if q.Get("watch") == "true" || q.Get("watch") == "1" {
			a.watch(w, r, p)
			return
		}
		a.mu.Lock()
		obj, ok := a.objs[p]
		var items []map[string]any
		if !ok {
			items = a.collection(p)
		}
		rv := a.rv
		a.mu.Unlock()
		if ok {
			writeJSON(w, http.StatusOK, obj)
			return
		}
		if items == nil || len(items) == 0 && !isCollection(p) {
			status(w, http.StatusNotFound, "NotFound", p+" not found")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"kind": kindOf(p), "apiVersion": groupVersion(p), "metadata": map[string]any{"resourceVersion": strconv.Itoa(rv)}, "items": items})
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			status(w, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if r.Method == http.MethodPatch {
			obj, ok := a.objs[strings.TrimSuffix(p, "/status")]
			if !ok {
				status(w, http.StatusNotFound, "NotFound", p+" not found")
				return
			}
			a.writes["PATCH "+path.Dir(strings.TrimSuffix(p, "/status"))]++
			writeJSON(w, http.StatusOK, obj)
			return
		}
		m, err := decodeObject(body)
		if err != nil {
			status(w, http.StatusBadRequest, "BadRequest", err.Error())
			return
		}
		md, _ := m["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
			m["metadata"] = md
		}
		coll, objPath := p, p
		if r.Method == http.MethodPost {
			name, _ := md["name"].(string)
			if name == "" {
				name = fmt.Sprintf("%s%d", md["generateName"], a.rv+1)
				md["name"] = name
			}
			objPath = p + "/" + name
		} else {
			coll = path.Dir(p)
		}
		a.writes[r.Method+" "+coll]++
		a.stamp(m)
		_, existed := a.objs[objPath]
		a.objs[objPath] = m
		typ, code := "ADDED", http.StatusCreated
		if existed {
			typ, code = "MODIFIED", http.StatusOK
		}
		a.notify(coll, typ, m)
		writeJSON(w, code, m)
	case http.MethodDelete:
		a.mu.Lock()
		defer a.mu.Unlock()
		obj, ok := a.objs[p]
		if !ok {
			status(w, http.StatusNotFound, "NotFound", p+" not found")
			return
		}
		delete(a.objs, p)
		a.writes["DELETE "+path.Dir(p)]++
		a.notify(path.Dir(p), "DELETED", obj)
		writeJSON(w, http.StatusOK, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Success"})
	default:
		status(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method)
	}
}

// decodeObject reads a request body in any encoding client-go sends
// (protobuf for built-in types, JSON) as a JSON object.
func decodeObject(body []byte) (map[string]any, error) {
	obj, gvk, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decode request body: %w", err)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["apiVersion"], m["kind"] = gvk.GroupVersion().String(), gvk.Kind
	return m, nil
}

// groupVersion is the apiVersion of the objects under p: "v1" under
// /api/v1, "<group>/<version>" under /apis/<group>/<version>.
func groupVersion(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) >= 3 && parts[0] == "apis" {
		return parts[1] + "/" + parts[2]
	}
	return "v1"
}

// isCollection says whether p names a collection the daemon lists.
func isCollection(p string) bool {
	switch path.Base(p) {
	case "resourceslices", "resourceclaims", "nodes", "events", "deviceclasses":
		return true
	}
	return false
}

func (a *fakeAPI) watch(w http.ResponseWriter, r *http.Request, coll string) {
	ch := make(chan watchEvent, 4096)
	a.mu.Lock()
	a.watchers[coll] = append(a.watchers[coll], ch)
	var initial []map[string]any
	if r.URL.Query().Get("sendInitialEvents") == "true" {
		initial = a.collection(coll)
	}
	rv := a.rv
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		ws := a.watchers[coll]
		for i, c := range ws {
			if c == ch {
				a.watchers[coll] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		a.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	if r.URL.Query().Get("sendInitialEvents") == "true" {
		for _, o := range initial {
			_ = enc.Encode(watchEvent{Type: "ADDED", Object: o})
		}
		_ = enc.Encode(watchEvent{Type: "BOOKMARK", Object: map[string]any{
			"kind": strings.TrimSuffix(kindOf(coll), "List"), "apiVersion": groupVersion(coll),
			"metadata": map[string]any{"resourceVersion": strconv.Itoa(rv), "annotations": map[string]any{"k8s.io/initial-events-end": "true"}},
		}})
	}
	flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-ch:
			if err := enc.Encode(ev); err != nil {
				return
			}
			flush()
		}
	}
}

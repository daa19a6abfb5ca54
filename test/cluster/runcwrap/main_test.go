package main

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestFix(t *testing.T) {
	// This machine: every capability but CAP_SYS_RESOURCE (bit 24).
	noResource := capSet(0x000001fffeffffff)
	all := capSet(0x000001ffffffffff)
	for _, tc := range []struct {
		name        string
		config      string
		own         int
		bounding    map[string]bool
		wantChanged bool
		wantOOM     float64
		wantCaps    []any // process.capabilities.bounding
	}{
		{
			name:        "Guaranteed pod: -997 raised to the runtime's own",
			config:      `{"process":{"oomScoreAdj":-997,"capabilities":{"bounding":["CAP_NET_ADMIN"]}},"root":{"path":"rootfs"}}`,
			bounding:    noResource,
			wantChanged: true, wantOOM: 0, wantCaps: []any{"CAP_NET_ADMIN"},
		},
		{
			name:        "BestEffort pod: 1000 kept",
			config:      `{"process":{"oomScoreAdj":1000}}`,
			bounding:    noResource,
			wantChanged: false, wantOOM: 1000,
		},
		{
			name:        "privileged: CAP_SYS_RESOURCE dropped, the rest kept",
			config:      `{"process":{"oomScoreAdj":5,"capabilities":{"bounding":["CAP_SYS_ADMIN","CAP_SYS_RESOURCE","CAP_NET_ADMIN"],"effective":["CAP_SYS_RESOURCE"]}}}`,
			bounding:    noResource,
			wantChanged: true, wantOOM: 5, wantCaps: []any{"CAP_SYS_ADMIN", "CAP_NET_ADMIN"},
		},
		{
			name:        "a machine that grants everything: unchanged",
			config:      `{"process":{"oomScoreAdj":-997,"capabilities":{"bounding":["CAP_SYS_RESOURCE"]}}}`,
			own:         -999,
			bounding:    all,
			wantChanged: false, wantOOM: -997, wantCaps: []any{"CAP_SYS_RESOURCE"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := fix([]byte(tc.config), true, tc.own, tc.bounding)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tc.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tc.wantChanged)
			}
			var spec map[string]any
			if err := json.Unmarshal(out, &spec); err != nil {
				t.Fatal(err)
			}
			proc := spec["process"].(map[string]any)
			if got := proc["oomScoreAdj"]; got != tc.wantOOM {
				t.Errorf("oomScoreAdj = %v, want %v", got, tc.wantOOM)
			}
			if tc.wantCaps != nil {
				got := proc["capabilities"].(map[string]any)["bounding"]
				if !reflect.DeepEqual(got, tc.wantCaps) {
					t.Errorf("bounding = %v, want %v", got, tc.wantCaps)
				}
				if eff, ok := proc["capabilities"].(map[string]any)["effective"]; ok && !tc.bounding["CAP_SYS_RESOURCE"] && len(eff.([]any)) != 0 {
					t.Errorf("effective = %v, want CAP_SYS_RESOURCE dropped", eff)
				}
			}
			if root, ok := spec["root"]; ok && !reflect.DeepEqual(root, map[string]any{"path": "rootfs"}) {
				t.Errorf("other fields changed: root = %v", root)
			}
		})
	}
}

// TestFixProcess: runc exec --process (the probes' exec) gets a process
// spec of its own, fixed the same way.
func TestFixProcess(t *testing.T) {
	out, changed, err := fix([]byte(`{"args":["true"],"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_KILL"]}}`), false, 0, capSet(0x000001fffeffffff))
	if err != nil || !changed {
		t.Fatalf("fix: changed %v, err %v", changed, err)
	}
	var p map[string]any
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	if got := p["capabilities"].(map[string]any)["bounding"]; !reflect.DeepEqual(got, []any{"CAP_KILL"}) {
		t.Errorf("bounding = %v, want [CAP_KILL]", got)
	}
	if _, ok := p["oomScoreAdj"]; ok {
		t.Errorf("oomScoreAdj added to a process spec without one: %v", p)
	}
}

func TestOptionArg(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		long, short string
		want        string
	}{
		{[]string{"--root", "/r", "create", "--bundle", "/b1", "id"}, "bundle", "b", "/b1"},
		{[]string{"create", "-b", "/b2", "id"}, "bundle", "b", "/b2"},
		{[]string{"create", "--bundle=/b3", "id"}, "bundle", "b", "/b3"},
		{[]string{"--root", "/r", "state", "id"}, "bundle", "b", ""},
		{[]string{"--root", "/r", "exec", "--process", "/tmp/p.json", "-d", "id"}, "process", "p", "/tmp/p.json"},
	} {
		if got := optionArg(tc.args, tc.long, tc.short); got != tc.want {
			t.Errorf("optionArg(%q, %s) = %q, want %q", tc.args, tc.long, got, tc.want)
		}
	}
}

package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "pause:e2e", want: "docker.io/library/pause:e2e"},
		{in: "sriov-dra", want: "docker.io/library/sriov-dra:latest"},
		{in: "team/tool:v1", want: "docker.io/team/tool:v1"},
		{in: "registry.local:5000/a/b:V1", want: "registry.local:5000/a/b:V1"},
		{in: "localhost/x:y", want: "localhost/x:y"},
		{in: "", wantErr: "empty"},
		{in: "a b:c", wantErr: "invalid reference"},
		{in: "x:", wantErr: "empty tag"},
		{in: "Upper:tag", wantErr: "lower case"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeName(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NormalizeName(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// readTar returns the regular files and the headers of a tar stream.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, map[string]*tar.Header) {
	t.Helper()
	files, hdrs := map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, hdrs
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		hdrs[h.Name] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("read %s: %v", h.Name, err)
			}
			files[h.Name] = b
		}
	}
}

func blob(t *testing.T, files map[string][]byte, d descriptor) []byte {
	t.Helper()
	b, ok := files[blobPath(d)]
	if !ok {
		t.Fatalf("blob %s missing", d.Digest)
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.Digest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: digest %s size %d, descriptor says size %d", d.Digest, got, len(b), d.Size)
	}
	return b
}

func TestWriteLayout(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tool")
	if err := os.WriteFile(bin, []byte("#!binary\x00payload"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := ImageSpec{
		Name: "tool:v1",
		Arch: "amd64",
		Entries: []Entry{
			{Path: "/usr/local/bin/tool", Source: bin},
			{Path: "/bin/sh", LinkTarget: "/usr/local/bin/tool"},
			{Path: "/tmp", Dir: true, Mode: 0o1777},
		},
		Env:        []string{"PATH=/usr/local/bin:/bin"},
		Entrypoint: []string{"/usr/local/bin/tool"},
		Cmd:        []string{"run"},
		WorkingDir: "/",
	}
	var out bytes.Buffer
	if err := Write(&out, spec); err != nil {
		t.Fatalf("Write: %v", err)
	}
	files, _ := readTar(t, bytes.NewReader(out.Bytes()))
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q", got)
	}
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(idx.Manifests))
	}
	md := idx.Manifests[0]
	if md.Annotations[annotationContainerdName] != "docker.io/library/tool:v1" || md.Annotations[annotationRefName] != "v1" {
		t.Fatalf("manifest annotations = %v", md.Annotations)
	}
	var man manifest
	if err := json.Unmarshal(blob(t, files, md), &man); err != nil {
		t.Fatal(err)
	}
	if man.MediaType != mediaTypeManifest || len(man.Layers) != 1 || man.Layers[0].MediaType != mediaTypeLayer {
		t.Fatalf("manifest = %+v", man)
	}
	var cfg imageConfig
	if err := json.Unmarshal(blob(t, files, man.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" ||
		!reflect.DeepEqual(cfg.Config.Entrypoint, spec.Entrypoint) || !reflect.DeepEqual(cfg.Config.Cmd, spec.Cmd) ||
		!reflect.DeepEqual(cfg.Config.Env, spec.Env) {
		t.Fatalf("config = %+v", cfg)
	}
	if !reflect.DeepEqual(cfg.RootFS.DiffIDs, []string{man.Layers[0].Digest}) {
		t.Fatalf("diff_ids %v, want the (uncompressed) layer digest %s", cfg.RootFS.DiffIDs, man.Layers[0].Digest)
	}

	layerFiles, layerHdrs := readTar(t, bytes.NewReader(blob(t, files, man.Layers[0])))
	if got := string(layerFiles["usr/local/bin/tool"]); got != "#!binary\x00payload" {
		t.Fatalf("layer file content = %q", got)
	}
	wantHdr := map[string]struct {
		typ  byte
		mode int64
		link string
	}{
		"usr/":               {tar.TypeDir, 0o755, ""},
		"usr/local/":         {tar.TypeDir, 0o755, ""},
		"usr/local/bin/":     {tar.TypeDir, 0o755, ""},
		"usr/local/bin/tool": {tar.TypeReg, 0o755, ""},
		"bin/":               {tar.TypeDir, 0o755, ""},
		"bin/sh":             {tar.TypeSymlink, 0o777, "/usr/local/bin/tool"},
		"tmp/":               {tar.TypeDir, 0o1777, ""},
	}
	if len(layerHdrs) != len(wantHdr) {
		t.Errorf("layer has %d entries, want %d", len(layerHdrs), len(wantHdr))
	}
	for name, w := range wantHdr {
		h, ok := layerHdrs[name]
		if !ok {
			t.Errorf("layer lacks %s", name)
			continue
		}
		if h.Typeflag != w.typ || h.Mode != w.mode || h.Linkname != w.link || h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: type %c mode %o link %q uid %d mtime %v; want type %c mode %o link %q, root, epoch",
				name, h.Typeflag, h.Mode, h.Linkname, h.Uid, h.ModTime, w.typ, w.mode, w.link)
		}
	}

	// Reproducible: the same input gives the same bytes.
	var again bytes.Buffer
	if err := Write(&again, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Error("two writes of the same spec differ")
	}
}

func TestWriteRejectsBadEntries(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		entries []Entry
		wantErr string
	}{
		{"relative path", []Entry{{Path: "bin/x", Source: f}}, "must be absolute"},
		{"root", []Entry{{Path: "/", Dir: true}}, "root directory"},
		{"two kinds", []Entry{{Path: "/x", Source: f, LinkTarget: "y"}}, "exactly one"},
		{"no kind", []Entry{{Path: "/x"}}, "exactly one"},
		{"duplicate", []Entry{{Path: "/x", Source: f}, {Path: "/x", LinkTarget: "y"}}, "given twice"},
		{"file as parent", []Entry{{Path: "/x", Source: f}, {Path: "/x/y", Source: f}}, "not a directory"},
		{"missing source", []Entry{{Path: "/x", Source: filepath.Join(dir, "nope")}}, "no such file"},
		{"directory source", []Entry{{Path: "/x", Source: dir}}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(io.Discard, ImageSpec{Name: "x:y", Arch: "amd64", Entries: tt.entries})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunWritesFileAtomically(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "sriov-dra")
	if err := os.WriteFile(bin, []byte("static"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	if err := run([]string{"-binary", bin, "-name", "sriov-dra:t", "-dir", "/tmp=1777", "-out", out}); err != nil {
		t.Fatalf("run: %v", err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files, _ := readTar(t, f)
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	var man manifest
	if err := json.Unmarshal(blob(t, files, idx.Manifests[0]), &man); err != nil {
		t.Fatal(err)
	}
	var cfg imageConfig
	if err := json.Unmarshal(blob(t, files, man.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/usr/local/bin/sriov-dra"}) {
		t.Fatalf("entrypoint = %v, want the binary", cfg.Config.Entrypoint)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".ocitar-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	for _, bad := range [][]string{
		{"-name", "x"},
		{"-out", out},
		{"-out", out, "-name", "x", "-file", "nodst"},
		{"-out", out, "-name", "x", "-dir", "/tmp=999"},
		{"-out", out, "-name", "x", "extra"},
	} {
		if err := run(bad); err == nil {
			t.Errorf("run(%q) succeeded, want an error", bad)
		}
	}
}

package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// Media types of the OCI image spec this tool writes.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"

	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// Entry is one path in the image's single layer: a copied host file, a
// symlink or an empty directory. Parent directories are added as needed.
type Entry struct {
	Path       string // absolute path in the image
	Source     string // host file to copy (regular file)
	LinkTarget string // symlink target
	Dir        bool   // empty directory
	Mode       int64  // permission bits for Dir (0 = 0755); files keep the source's
}

// ImageSpec is everything the image holds.
type ImageSpec struct {
	Name       string // image reference; see NormalizeName
	Arch       string
	Entries    []Entry
	Env        []string
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	Created    int64 // Unix seconds; every timestamp in the image
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type imageConfig struct {
	Created      string          `json:"created"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
	History      []history       `json:"history"`
}

type containerConfig struct {
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// NormalizeName turns a short reference into the fully qualified one
// containerd and kubelet use: "pause:1" -> "docker.io/library/pause:1",
// "a/b" -> "docker.io/a/b:latest"; names with a registry host are kept.
func NormalizeName(ref string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("image name is empty")
	}
	if strings.ContainsAny(ref, " \t\n@") {
		return "", fmt.Errorf("image name %q: invalid reference (no spaces or digests)", ref)
	}
	name, tag := ref, "latest"
	lastSlash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > lastSlash {
		name, tag = ref[:i], ref[i+1:]
		if tag == "" {
			return "", fmt.Errorf("image name %q: empty tag", ref)
		}
	}
	if strings.ToLower(name) != name {
		return "", fmt.Errorf("image name %q: repository must be lower case", ref)
	}
	first, _, hasSlash := strings.Cut(name, "/")
	switch {
	case !hasSlash:
		name = "docker.io/library/" + name
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		name = "docker.io/" + name
	}
	return name + ":" + tag, nil
}

// Write writes the OCI image layout of spec as a tar stream to w.
func Write(w io.Writer, spec ImageSpec) error {
	fullName, err := NormalizeName(spec.Name)
	if err != nil {
		return err
	}
	if spec.Arch == "" {
		return fmt.Errorf("architecture is empty")
	}
	created := time.Unix(spec.Created, 0).UTC()

	layer, err := buildLayer(spec.Entries, created)
	if err != nil {
		return err
	}
	layerDesc := describe(mediaTypeLayer, layer)

	cfg, err := json.Marshal(imageConfig{
		Created:      created.Format(time.RFC3339),
		Architecture: spec.Arch,
		OS:           "linux",
		Config: containerConfig{
			Env:        spec.Env,
			Entrypoint: spec.Entrypoint,
			Cmd:        spec.Cmd,
			WorkingDir: spec.WorkingDir,
		},
		RootFS:  rootFS{Type: "layers", DiffIDs: []string{layerDesc.Digest}},
		History: []history{{Created: created.Format(time.RFC3339), CreatedBy: "ocitar"}},
	})
	if err != nil {
		return fmt.Errorf("encode image config: %w", err)
	}
	cfgDesc := describe(mediaTypeConfig, cfg)

	man, err := json.Marshal(manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        cfgDesc,
		Layers:        []descriptor{layerDesc},
	})
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	manDesc := describe(mediaTypeManifest, man)
	manDesc.Annotations = map[string]string{
		annotationContainerdName: fullName,
		annotationRefName:        fullName[strings.LastIndex(fullName, ":")+1:],
	}

	idx, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaTypeIndex, Manifests: []descriptor{manDesc}})
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}

	tw := tar.NewWriter(w)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: created, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{blobPath(layerDesc), layer},
		{blobPath(cfgDesc), cfg},
		{blobPath(manDesc), man},
		{"index.json", idx},
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, f.data, 0o644, created); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return tw.Close()
}

func describe(mediaType string, data []byte) descriptor {
	sum := sha256.Sum256(data)
	return descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}
}

func blobPath(d descriptor) string {
	return "blobs/sha256/" + strings.TrimPrefix(d.Digest, "sha256:")
}

func writeFile(tw *tar.Writer, name string, data []byte, mode int64, mtime time.Time) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// buildLayer returns the uncompressed layer tar: entries sorted by path,
// parent directories first, owned by root, all times set to mtime.
func buildLayer(entries []Entry, mtime time.Time) ([]byte, error) {
	type item struct {
		Entry
		rel string
	}
	byPath := map[string]item{}
	for _, e := range entries {
		if !path.IsAbs(e.Path) {
			return nil, fmt.Errorf("entry %q: path must be absolute", e.Path)
		}
		rel := strings.TrimPrefix(path.Clean(e.Path), "/")
		if rel == "" {
			return nil, fmt.Errorf("entry %q: cannot replace the root directory", e.Path)
		}
		kinds := 0
		for _, set := range []bool{e.Source != "", e.LinkTarget != "", e.Dir} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			return nil, fmt.Errorf("entry %q: want exactly one of a source file, a link target or a directory", e.Path)
		}
		if prev, dup := byPath[rel]; dup && (!prev.Dir || !e.Dir) {
			return nil, fmt.Errorf("entry %q: path given twice", e.Path)
		}
		byPath[rel] = item{Entry: e, rel: rel}
		for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
			if p, ok := byPath[dir]; ok && !p.Dir {
				return nil, fmt.Errorf("entry %q: parent %q is not a directory", e.Path, "/"+dir)
			}
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = item{Entry: Entry{Path: "/" + dir, Dir: true}, rel: dir}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		it := byPath[p]
		hdr := &tar.Header{Name: it.rel, ModTime: mtime, Uid: 0, Gid: 0, Format: tar.FormatPAX}
		switch {
		case it.Dir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, it.rel+"/", it.Mode
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
		case it.LinkTarget != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, it.LinkTarget, 0o777
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
		default:
			if err := addFile(tw, hdr, it.Source); err != nil {
				return nil, fmt.Errorf("entry %q from %s: %w", it.Path, it.Source, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func addFile(tw *tar.Writer, hdr *tar.Header, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, int64(st.Mode().Perm()), st.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return err
	}
	if n != st.Size() {
		return fmt.Errorf("file changed while copying (%d of %d bytes)", n, st.Size())
	}
	return nil
}

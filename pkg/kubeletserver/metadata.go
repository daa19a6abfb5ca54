package kubeletserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/dynamic-resource-allocation/api/metadata"
	"k8s.io/dynamic-resource-allocation/api/metadata/install"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/sriov-dra/sriov-dra/internal/atomicfile"
)

// Device metadata files (KEP-5304). For each request of a prepared claim
// the server writes
//
//	<plugin dir>/dra-device-metadata/<claim ns>_<claim name>/<request>/metadata.json
//
// a stream of metadata.resource.k8s.io DeviceMetadata objects, one per
// configured version (each pretty-printed JSON followed by a newline), and
//
//	<CDI dir>/<driver>_metadata_<claim UID>_<request>.json
//
// a CDI spec of kind "<driver>/metadata" with one device
// "<claim UID>_<request>" that bind-mounts the file read-only where
// containers look for it (metadata.ResourceClaimFilePath, or
// ResourceClaimTemplateFilePath for a claim made from the pod's template).
// Unprepare removes both. Readers and daemons on the upstream helper
// (during a rolling update) rely on exactly these names and contents.

const (
	metadataDirName = "dra-device-metadata"
	metadataPerm    = os.FileMode(0o644)
	metadataDirPerm = os.FileMode(0o755)
)

// metadataWriter writes and removes the metadata files.
type metadataWriter struct {
	driver    string
	pluginDir string
	cdiDir    string
	versions  []schema.GroupVersion
	encoders  []runtime.Encoder // by versions' index
	write     func(name string, data []byte, perm os.FileMode) error
}

func newMetadataWriter(driver, pluginDir string, cfg *MetadataConfig) (*metadataWriter, error) {
	if len(cfg.Versions) == 0 {
		return nil, errors.New("MetadataConfig.Versions is empty: name the metadata API versions the files carry")
	}
	scheme := install.NewScheme()
	codecs := serializer.NewCodecFactory(scheme)
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok || info.PrettySerializer == nil {
		return nil, errors.New("the metadata scheme has no JSON serializer")
	}
	w := &metadataWriter{driver: driver, pluginDir: pluginDir, cdiDir: cfg.CDIDir, versions: slices.Clone(cfg.Versions), write: cfg.WriteFile}
	if w.cdiDir == "" {
		w.cdiDir = DefaultCDIDir
	}
	if w.write == nil {
		w.write = writeFileReplacing
	}
	for i, gv := range w.versions {
		if gv.Group != metadata.GroupName || !scheme.IsVersionRegistered(gv) {
			return nil, fmt.Errorf("MetadataConfig.Versions[%d]: %q is not a device metadata API version this build knows", i, gv)
		}
		w.encoders = append(w.encoders, codecs.EncoderForVersion(info.PrettySerializer, gv))
	}
	return w, nil
}

// writeClaim writes the files of every request of a prepared claim and
// returns each request's metadata CDI device ID.
func (w *metadataWriter) writeClaim(claim *resourceapi.ResourceClaim, devs []Device) (map[string]string, error) {
	var podClaimName *string
	// The claim controller sets the annotation to the pod's claim name, a
	// DNS label. A namespace user who creates a claim may write anything
	// there ("../../etc"), and it becomes a directory of the container path
	// the CDI spec mounts the file at: such a claim counts as one the pod
	// names directly.
	if v, ok := claim.Annotations[resourceapi.PodResourceClaimAnnotation]; ok && len(validation.IsDNS1123Label(v)) == 0 {
		podClaimName = &v
	}
	var refs []string
	byRef := map[string][]Device{}
	for _, d := range devs {
		for _, r := range d.Requests {
			if _, ok := byRef[r]; !ok {
				refs = append(refs, r)
			}
			byRef[r] = append(byRef[r], d)
		}
	}
	slices.Sort(refs)
	ids := make(map[string]string, len(refs))
	for _, ref := range refs {
		req := baseRequest(ref)
		file := w.metadataFile(claim.Namespace, claim.Name, req)
		data, err := w.encode(claim, podClaimName, ref, byRef[ref])
		if err != nil {
			return nil, fmt.Errorf("device metadata of request %q of ResourceClaim %s/%s: %w", ref, claim.Namespace, claim.Name, err)
		}
		if err := os.MkdirAll(filepath.Dir(file), metadataDirPerm); err != nil {
			return nil, fmt.Errorf("device metadata of request %q of ResourceClaim %s/%s: %w", ref, claim.Namespace, claim.Name, err)
		}
		if err := w.write(file, data, metadataPerm); err != nil {
			return nil, fmt.Errorf("device metadata of request %q of ResourceClaim %s/%s: %w", ref, claim.Namespace, claim.Name, err)
		}
		id, err := w.writeSpec(claim, podClaimName, req, file)
		if err != nil {
			return nil, fmt.Errorf("metadata CDI spec of request %q of ResourceClaim %s/%s: %w", ref, claim.Namespace, claim.Name, err)
		}
		ids[req] = id
	}
	return ids, nil
}

// encode is the metadata file of one request: the object once per version.
func (w *metadataWriter) encode(claim *resourceapi.ResourceClaim, podClaimName *string, ref string, devs []Device) ([]byte, error) {
	obj := &metadata.DeviceMetadata{
		ObjectMeta:   metav1.ObjectMeta{Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID, Generation: 1},
		PodClaimName: podClaimName,
		Requests:     []metadata.DeviceMetadataRequest{{Name: ref, Devices: make([]metadata.Device, 0, len(devs))}},
	}
	for _, d := range devs {
		md := metadata.Device{Driver: w.driver, Pool: d.PoolName, Name: d.DeviceName}
		if m := d.Metadata; m != nil {
			if m.Attributes != nil {
				md.Attributes = make(map[resourceapi.QualifiedName]resourceapi.DeviceAttribute, len(m.Attributes))
				for k, v := range m.Attributes {
					md.Attributes[resourceapi.QualifiedName(k)] = v
				}
			}
			md.NetworkData = m.NetworkData
		}
		obj.Requests[0].Devices = append(obj.Requests[0].Devices, md)
	}
	var buf bytes.Buffer
	for i, enc := range w.encoders {
		b, err := runtime.Encode(enc, obj)
		if err != nil {
			return nil, fmt.Errorf("encode as %s: %w", w.versions[i], err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// writeSpec writes the CDI spec that mounts file into the claim's
// containers and returns its device ID.
func (w *metadataWriter) writeSpec(claim *resourceapi.ResourceClaim, podClaimName *string, req, file string) (string, error) {
	ctrPath := metadata.ResourceClaimFilePath(w.driver, claim.Name, req)
	if podClaimName != nil && *podClaimName != "" {
		ctrPath = metadata.ResourceClaimTemplateFilePath(w.driver, *podClaimName, req)
	}
	kind := w.driver + "/metadata"
	dev := string(claim.UID) + "_" + req
	spec := &cdispec.Spec{
		Kind: kind,
		Devices: []cdispec.Device{{
			Name: dev,
			ContainerEdits: cdispec.ContainerEdits{Mounts: []*cdispec.Mount{{
				HostPath: file, ContainerPath: ctrPath, Options: []string{"ro", "bind"},
			}}},
		}},
	}
	v, err := cdispec.MinimumRequiredVersion(spec)
	if err != nil {
		return "", err
	}
	spec.Version = v
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(w.cdiDir, metadataDirPerm); err != nil {
		return "", err
	}
	if err := w.write(w.specFile(string(claim.UID), req), data, metadataPerm); err != nil {
		return "", err
	}
	return kind + "=" + dev, nil
}

// removeClaim removes a claim's metadata files and CDI specs; none is no
// error.
func (w *metadataWriter) removeClaim(c NamespacedObject) error {
	dir := filepath.Join(w.pluginDir, metadataDirName, c.Namespace+"_"+c.Name)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the device metadata of ResourceClaim %s: %w", c, err)
	}
	specs, err := filepath.Glob(w.specFile(string(c.UID), "*"))
	if err != nil {
		return fmt.Errorf("find the metadata CDI specs of ResourceClaim %s: %w", c, err)
	}
	for _, f := range specs {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the metadata CDI spec of ResourceClaim %s: %w", c, err)
		}
	}
	return nil
}

func (w *metadataWriter) metadataFile(ns, name, req string) string {
	return filepath.Join(w.pluginDir, metadataDirName, ns+"_"+name, req, "metadata.json")
}

func (w *metadataWriter) specFile(uid, req string) string {
	return filepath.Join(w.cdiDir, w.driver+"_metadata_"+uid+"_"+req+".json")
}

// writeFileReplacing writes name through a temporary file in its
// directory, synced and renamed over it, so a reader sees the old or the
// new content, never a part, and the new one survives a power loss.
func writeFileReplacing(name string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(name, data, atomicfile.Options{TempPattern: "." + filepath.Base(name) + ".*.tmp", Mode: perm})
}

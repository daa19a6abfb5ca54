// Package v1 is the on-disk schema of the node daemon's checkpoint,
// version "sriov.dra.dev/checkpoint/v1": the document pkg/checkpoint
// keeps (checksummed, with the writer's boot ID, atomically replaced) in
// <state dir>/checkpoint.json.
//
// The types here are the file format and nothing else. They import no
// other package of the project, so renaming a field or a JSON tag of a
// runtime type (driver, nri, vfconfig, ipam, inventory, netattach) cannot
// change the file; the driver converts between these types and its own in
// one place (driver/checkpointv1.go). Every field has an explicit JSON
// tag, spelled as the first release that wrote v1 spelled it; the golden
// files in driver/testdata/checkpoint-v1-*.json are what that release
// wrote, and every later release must read them and undo from them.
//
// # One version, one boot
//
// [Checkpoint.Version] is the schema's only version marker and
// [Checkpoint.BootID] the only boot ID the driver decides by (the boot
// the records belong to; a record of another boot is stale). The
// envelope pkg/checkpoint wraps around the document also carries a
// format version, a data version and the writer's boot ID: they belong
// to the envelope (its layout and checksum), not to this schema. The
// driver pins the envelope's data version to 1 for every schema version
// and decides nothing by the envelope's boot ID.
//
// # Compatibility rule
//
// A node may be upgraded by one release and downgraded by one release,
// in either order, with claims prepared: both releases must read the
// file the other wrote and undo every record in it. So, within v1:
//
//   - No field is renamed, retyped or removed, and no JSON tag changes.
//     A field no longer used stays in the types (documented as unused)
//     and is still written when it matters to the previous release.
//   - A new field is optional: its zero value (absent from the file)
//     means "as before", i.e. what a release without the field did. A
//     release that does not know the field ignores it when it reads the
//     file (encoding/json's default; never DisallowUnknownFields) and
//     drops it when it rewrites the file, so a new field must never be
//     the only record of a change to the host that needs undoing: the
//     older release must still undo the record correctly without it.
//   - Unknown values of an enumeration (a new Phase, a new Kind) are not
//     an allowed change within v1: an older release would misread them.
//
// A change that cannot follow these rules is a new schema version (v2,
// a package next to this one): the release that introduces it reads v1
// and v2 but still writes v1, and only the release after it writes v2
// (read before write), so a downgrade by one release always finds a
// version it reads. A release refuses a Version it does not know, with
// an error naming the file, and never touches devices it cannot account
// for.
package v1

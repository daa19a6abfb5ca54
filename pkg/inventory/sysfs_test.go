package inventory

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
)

func TestParsers(t *testing.T) {
	type result struct {
		v  any
		ok bool
	}
	cases := []struct {
		name  string
		parse func(string) (any, error)
		in    string
		want  result
	}{
		{"int", func(s string) (any, error) { return parseInt(s) }, "8\n", result{8, true}},
		{"int negative", func(s string) (any, error) { return parseInt(s) }, " -1 ", result{-1, true}},
		{"int hex", func(s string) (any, error) { return parseInt(s) }, "0x10", result{nil, false}},
		{"int empty", func(s string) (any, error) { return parseInt(s) }, "", result{nil, false}},
		{"int overflow", func(s string) (any, error) { return parseInt(s) }, "99999999999", result{nil, false}},
		{"hex id", func(s string) (any, error) { return parseHexID(s) }, "0x15B3\n", result{"15b3", true}},
		{"hex id short", func(s string) (any, error) { return parseHexID(s) }, "0x1", result{"0001", true}},
		{"hex id bare", func(s string) (any, error) { return parseHexID(s) }, "8086", result{"8086", true}},
		{"hex id too long", func(s string) (any, error) { return parseHexID(s) }, "0x12345", result{nil, false}},
		{"hex id only 0x", func(s string) (any, error) { return parseHexID(s) }, "0x", result{nil, false}},
		{"hex id sign", func(s string) (any, error) { return parseHexID(s) }, "0x+1", result{nil, false}},
		{"guid", guidOf, "0C42:a103:00ab:cd00\n", result{"0c:42:a1:03:00:ab:cd:00", true}},
		{"guid short group", guidOf, "0c42:a103:00ab:cd0", result{nil, false}},
		{"guid 3 groups", guidOf, "0c42:a103:00ab", result{nil, false}},
		{"guid not hex", guidOf, "0c42:a103:00ab:cdzz", result{nil, false}},
		{"guid sign", guidOf, "+c42:a103:00ab:cd00", result{nil, false}},
		{"gid", gidOf, "fe80:0000:0000:0000:0c42:a103:00ab:cd01", result{"0c:42:a1:03:00:ab:cd:01", true}},
		{"gid compressed", gidOf, "fe80::1", result{nil, false}},
		{"pkey", pkeyOf, "0xffff\n", result{hw.PKey(0xffff), true}},
		{"pkey zero", pkeyOf, "0x0000", result{hw.PKey(0), true}},
		{"pkey no 0x", pkeyOf, "ffff", result{nil, false}},
		{"pkey too big", pkeyOf, "0x10000", result{nil, false}},
		{"mac", func(s string) (any, error) { return parseMAC(s) }, "02:AA:bb:cc:dd:ee\n", result{"02:aa:bb:cc:dd:ee", true}},
		{"ipoib mac", func(s string) (any, error) { return parseMAC(s) }, "00:00:10:87:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:ab:cd:00", result{"00:00:10:87:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:ab:cd:00", true}},
		{"mac garbled", func(s string) (any, error) { return parseMAC(s) }, "02:aa", result{nil, false}},
		{"link type ether", func(s string) (any, error) { return parseLinkType(s) }, "1\n", result{LinkTypeEthernet, true}},
		{"link type ib", func(s string) (any, error) { return parseLinkType(s) }, "32", result{LinkTypeInfiniBand, true}},
		{"link type loopback", func(s string) (any, error) { return parseLinkType(s) }, "772", result{LinkTypeUnknown, true}},
		{"link type garbled", func(s string) (any, error) { return parseLinkType(s) }, "ether", result{nil, false}},
		{"numa", func(s string) (any, error) { return parseNUMA(s) }, "1", result{1, true}},
		{"numa none", func(s string) (any, error) { return parseNUMA(s) }, "-1", result{NUMAUnknown, true}},
		{"numa garbled", func(s string) (any, error) { return parseNUMA(s) }, "node1", result{nil, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.parse(tc.in)
			if (err == nil) != tc.want.ok {
				t.Fatalf("parse(%q) error = %v, want ok=%v", tc.in, err, tc.want.ok)
			}
			if tc.want.ok && !reflect.DeepEqual(v, tc.want.v) {
				t.Errorf("parse(%q) = %#v, want %#v", tc.in, v, tc.want.v)
			}
			if err != nil && !strings.Contains(err.Error(), "not") {
				t.Errorf("error %q does not say what is wrong", err)
			}
		})
	}
}

func TestReadValueAndListDir(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("x", maxSysfsValue+100)
	files := map[string]string{"a": "  value \n", "empty": "", "big": big}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := readValue(pathRef(filepath.Join(dir, "a"))); err != nil || v != "value" {
		t.Errorf("readValue(a) = %q, %v", v, err)
	}
	if v, err := readValue(pathRef(filepath.Join(dir, "empty"))); err != nil || v != "" {
		t.Errorf("readValue(empty) = %q, %v", v, err)
	}
	if v, err := readValue(pathRef(filepath.Join(dir, "big"))); err != nil || len(v) != maxSysfsValue {
		t.Errorf("readValue(big) = %d bytes, %v; want the first %d", len(v), err, maxSysfsValue)
	}
	if _, err := readValue(pathRef(filepath.Join(dir, "missing"))); !isNotExist(err) {
		t.Errorf("readValue(missing) error %v, want not-exist", err)
	}
	if _, err := readValue(pathRef(dir)); err == nil || isNotExist(err) {
		t.Errorf("readValue(dir) error %v, want a read error", err)
	}
	// Enough entries to need several getdents calls.
	many := filepath.Join(dir, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < 700; i++ {
		n := "entry-with-a-longish-name-" + strconv.Itoa(i)
		want = append(want, n)
		if err := os.WriteFile(filepath.Join(many, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := listDir(pathRef(many))
	if err != nil || len(got) != len(want) {
		t.Fatalf("listDir = %d names, %v; want %d", len(got), err, len(want))
	}
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Fatalf("listDir not sorted at %d", i)
		}
	}
	if _, err := listDir(pathRef(filepath.Join(dir, "a"))); err == nil {
		t.Error("listDir of a file succeeded")
	}

	// The same through an opened directory.
	at, done := openDir(dir)
	defer done()
	if at.fd < 0 {
		t.Fatalf("openDir(%s) fell back to paths", dir)
	}
	if v, err := readValue(at.join("a")); err != nil || v != "value" {
		t.Errorf("readValue(at a) = %q, %v", v, err)
	}
	if names, err := listDir(at.join("many")); err != nil || len(names) != 700 {
		t.Errorf("listDir(at many) = %d names, %v", len(names), err)
	}
	if err := os.Symlink("../x/target", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	if v, err := readLinkBase(at.join("l")); err != nil || v != "target" {
		t.Errorf("readLinkBase(at l) = %q, %v", v, err)
	}
	if err := exists(at.join("l")); err == nil {
		t.Error("exists follows a dangling link")
	}
	if err := exists(at.join("many", "..", "a")); err != nil {
		t.Errorf("exists(many/../a) = %v", err)
	}
	_, err = readValue(at.join("missing"))
	if !isNotExist(err) || !strings.Contains(err.Error(), filepath.Join(dir, "missing")) {
		t.Errorf("error %v does not name the full path", err)
	}
	if bad, done := openDir(filepath.Join(dir, "nope")); bad.fd != unix.AT_FDCWD {
		t.Error("openDir of a missing folder did not fall back")
	} else {
		done()
	}
}

// FuzzParseSysfsValue feeds arbitrary file contents to every sysfs value
// parser: none may panic, and whatever they accept must come back in
// canonical form that parses again to the same value.
func FuzzParseSysfsValue(f *testing.F) {
	for _, s := range []string{"0x15b3\n", "-1\n", "8", "0c42:a103:00ab:cd00\n", "fe80:0000:0000:0000:0c42:a103:00ab:cd00\n",
		"0xffff\n", "0x0000", "32\n", "02:aa:bb:cc:dd:ee\n", "", "\x00", "0x", "::::", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := parseInt(s); err == nil {
			if w, err := parseInt(strconv.Itoa(v)); err != nil || w != v {
				t.Errorf("parseInt(%q) = %d does not round trip", s, v)
			}
		}
		if id, err := parseHexID(s); err == nil {
			if len(id) != 4 || strings.ToLower(id) != id {
				t.Errorf("parseHexID(%q) = %q, not 4 lower-case hex digits", s, id)
			}
			if again, err := parseHexID("0x" + id); err != nil || again != id {
				t.Errorf("parseHexID(%q) = %q does not round trip", s, id)
			}
		}
		if g, err := hw.ParseGUID(s); err == nil {
			h := strings.ReplaceAll(g.String(), ":", "")
			if again, err := hw.ParseGUID(h[0:4] + ":" + h[4:8] + ":" + h[8:12] + ":" + h[12:16]); err != nil || again != g {
				t.Errorf("hw.ParseGUID(%q) = %q does not round trip", s, g)
			}
		}
		if p, err := hw.ParsePKey(s); err == nil {
			if again, err := hw.ParsePKey(p.String()); err != nil || again != p {
				t.Errorf("hw.ParsePKey(%q) = %s does not round trip", s, p)
			}
		}
		if m, err := parseMAC(s); err == nil {
			if again, err := parseMAC(m); err != nil || again != m {
				t.Errorf("parseMAC(%q) = %q does not round trip", s, m)
			}
		}
		if lt, err := parseLinkType(s); err == nil && lt != LinkTypeEthernet && lt != LinkTypeInfiniBand && lt != LinkTypeUnknown {
			t.Errorf("parseLinkType(%q) = %q", s, lt)
		}
		if n, err := parseNUMA(s); err == nil && n < NUMAUnknown {
			t.Errorf("parseNUMA(%q) = %d", s, n)
		}
		if len(clip(s)) > 43 {
			t.Errorf("clip(%q) too long", s)
		}
	})
}

// The GUID and pkey parsers are pkg/hw's; these adapt them to the table.
func guidOf(s string) (any, error) {
	g, err := hw.ParseGUID(s)
	if err != nil {
		return nil, err
	}
	return g.String(), nil
}

func gidOf(s string) (any, error) {
	g, err := hw.GUIDFromGID(s)
	if err != nil {
		return nil, err
	}
	return g.String(), nil
}

func pkeyOf(s string) (any, error) { return hw.ParsePKey(s) }

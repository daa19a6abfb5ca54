package hw

import (
	"strings"
	"testing"
)

func TestParseGUID(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"0c:42:a1:03:00:ab:cd:00", "0c:42:a1:03:00:ab:cd:00", ""},
		{"0C-42-A1-03-00-AB-CD-00", "0c:42:a1:03:00:ab:cd:00", ""},
		{"0c42.a103.00ab.cd00", "0c:42:a1:03:00:ab:cd:00", ""},
		{"0c42:a103:00ab:cd00\n", "0c:42:a1:03:00:ab:cd:00", ""}, // sysfs
		{"0000:0000:0000:0000", "00:00:00:00:00:00:00:00", ""},
		{"0c42:a103:00ab:cd0", "", "group 3"},
		{"0c42:a103:00ab:zz00", "", "not hex"},
		{"02:00:00:00:00:01", "", "not a GUID"}, // a MAC
		{"", "", "not a GUID"},
	} {
		g, err := ParseGUID(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseGUID(%q) = %v, %v; want an error with %q", tc.in, g, err, tc.err)
		case tc.err == "" && (err != nil || g.String() != tc.want):
			t.Errorf("ParseGUID(%q) = %v, %v; want %s", tc.in, g, err, tc.want)
		}
	}
}

func TestGUIDFromGID(t *testing.T) {
	g, err := GUIDFromGID("fe80:0000:0000:0000:0c42:a103:00ab:cd00")
	if err != nil || g.String() != "0c:42:a1:03:00:ab:cd:00" {
		t.Errorf("GUIDFromGID = %v, %v", g, err)
	}
	if _, err := GUIDFromGID("fe80::1"); err == nil {
		t.Error("a short GID was accepted")
	}
}

func TestGUIDChecks(t *testing.T) {
	for _, tc := range []struct {
		in       string
		zero     bool
		assignOK bool
	}{
		{"00:00:00:00:00:00:00:00", true, false},
		{"ff:ff:ff:ff:ff:ff:ff:ff", false, false},
		{"02:00:00:00:00:00:00:01", false, true},
	} {
		g, err := ParseGUID(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if g.IsZero() != tc.zero || (g.CheckAssignable() == nil) != tc.assignOK {
			t.Errorf("%s: IsZero %v CheckAssignable %v", tc.in, g.IsZero(), g.CheckAssignable())
		}
	}
	if _, ok := GUIDFromBytes([]byte{1, 2, 3}); ok {
		t.Error("GUIDFromBytes took 3 bytes")
	}
	if g, ok := GUIDFromBytes([]byte{1, 2, 3, 4, 5, 6, 7, 8}); !ok || g.HardwareAddr().String() != "01:02:03:04:05:06:07:08" {
		t.Errorf("GUIDFromBytes = %v %v", g, ok)
	}
}

func TestPKey(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		full     bool
		checkOK  bool
		err      bool
	}{
		{"0xffff", "0xffff", true, true, false},
		{"0x7fff", "0x7fff", false, true, false},
		{"0X8001", "0x8001", true, true, false},
		{"0x1", "0x0001", false, true, false},
		{" 0x8000\n", "0x8000", true, false, false},
		{"0x0000", "0x0000", false, false, false},
		{"0x10000", "", false, false, true},
		{"8001", "", false, false, true},
		{"0x", "", false, false, true},
		{"0xg001", "", false, false, true},
	} {
		p, err := ParsePKey(tc.in)
		if tc.err {
			if err == nil {
				t.Errorf("ParsePKey(%q) = %v, want an error", tc.in, p)
			}
			continue
		}
		if p.IsDefault() != (p&0x7fff == 0x7fff) {
			t.Errorf("%s: IsDefault %v", p, p.IsDefault())
		}
		if err != nil || p.String() != tc.want || p.FullMember() != tc.full || (p.Check() == nil) != tc.checkOK {
			t.Errorf("ParsePKey(%q) = %v (full %v, check %v), %v", tc.in, p, p.FullMember(), p.Check(), err)
		}
	}
}

func TestVLANProtoAndLinkState(t *testing.T) {
	for _, name := range []string{"802.1q", "802.1ad"} {
		n, err := VLANProtoNumber(name)
		if err != nil || VLANProtoName(n) != name {
			t.Errorf("%s: %d %v -> %q", name, n, err, VLANProtoName(n))
		}
	}
	if n, err := VLANProtoNumber(""); err != nil || n != VLANProto8021Q {
		t.Errorf(`VLANProtoNumber("") = %d, %v`, n, err)
	}
	if _, err := VLANProtoNumber("802.1x"); err == nil {
		t.Error("802.1x accepted")
	}
	for _, name := range []string{"auto", "enable", "disable"} {
		n, err := LinkStateNumber(name)
		if err != nil || LinkStateName(n) != name {
			t.Errorf("%s: %d %v", name, n, err)
		}
	}
	if _, err := LinkStateNumber("up"); err == nil || LinkStateName(7) != "" {
		t.Error("unknown link state accepted")
	}
}

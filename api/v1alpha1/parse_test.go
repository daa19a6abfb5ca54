package v1alpha1

import (
	"strings"
	"testing"
)

func TestParseMAC(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"02:AA:bb:CC:dd:EE", "02:aa:bb:cc:dd:ee", ""},
		{"02-00-00-00-00-01", "02:00:00:00:00:01", ""},
		{"0200.0000.0001", "02:00:00:00:00:01", ""},
		{"00:1b:21:0a:0b:0c", "00:1b:21:0a:0b:0c", ""}, // a vendor (universally administered) address
		{"", "", "not a MAC"},
		{"02:00:00:00:00", "", "not a MAC"},
		{"02:00:00:00:00:0g", "", "not a MAC"},
		{"00:00:00:00:00:00", "", "all-zero"},
		{"01:00:5e:00:00:01", "", "multicast"},
		{"33:33:00:00:00:01", "", "multicast"},
		{"ff:ff:ff:ff:ff:ff", "", "multicast"},
		{"02:00:00:00:00:00:00:01", "", "6 bytes"},
	}
	for _, tt := range tests {
		got, err := ParseMAC(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseMAC(%q) = %q, %v; want error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMAC(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseGUID(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"00:11:22:33:44:55:66:77", "00:11:22:33:44:55:66:77", ""},
		{"0A-0B-0C-0D-0E-0F-10-11", "0a:0b:0c:0d:0e:0f:10:11", ""},
		{"0011.2233.4455.6677", "00:11:22:33:44:55:66:77", ""},
		{"ff:ff:ff:ff:ff:ff:ff:fe", "ff:ff:ff:ff:ff:ff:ff:fe", ""},
		{"00:00:00:00:00:00:00:01", "00:00:00:00:00:00:00:01", ""},
		{"auto", "", "not a GUID"},
		{"", "", "not a GUID"},
		{"00:11:22:33:44:55", "", "8 bytes"},
		{"00:00:00:00:00:00:00:00", "", "all-zero"},
		{"FF:FF:FF:FF:FF:FF:FF:FF", "", "all-ones"},
		{"00:11:22:33:44:55:66:77:88", "", "not a GUID"},
	}
	for _, tt := range tests {
		got, err := ParseGUID(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseGUID(%q) = %q, %v; want error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseGUID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParsePKey(t *testing.T) {
	tests := []struct {
		in   string
		want PKey
		err  string
	}{
		{"0x8001", 0x8001, ""},
		{"0X7FFF", 0x7fff, ""},
		{"0xffff", 0xffff, ""},
		{"0x1", 0x0001, ""},
		{"0x0001", 0x0001, ""},
		{"0x0", 0, "0x0001 and 0xffff"},
		{"0x0000", 0, "0x0001 and 0xffff"},
		{"0x8000", 0, "partition number 0"},
		{"0x10000", 0, "up to 4 digits"},
		{"8001", 0, "0x"},
		{"0x", 0, "0x"},
		{"0x+1", 0, "0x"},
		{"0x-1", 0, "0x"},
		{"", 0, "0x"},
		{" 0x1", 0, "0x"},
	}
	for _, tt := range tests {
		got, err := ParsePKey(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePKey(%q) = %v, %v; want error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePKey(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if s := PKey(0x8001).String(); s != "0x8001" {
		t.Errorf("String() = %q", s)
	}
	if s := PKey(1).String(); s != "0x0001" {
		t.Errorf("String() = %q", s)
	}
}

func TestCheckIfName(t *testing.T) {
	tests := []struct {
		in  string
		err string
	}{
		{"net1", ""},
		{"a", ""},
		{"data-0.100", ""},
		{"abcdefghijklmno", ""}, // 15
		{"eth1", ""},
		{"", "empty"},
		{"abcdefghijklmnop", "at most 15"},
		{".", `"."`},
		{"..", `".."`},
		{"lo", "loopback"},
		{"eth0", "primary"},
		{"all", "/proc/sys/net/ipv4/conf/all"},
		{"default", "/proc/sys/net/ipv4/conf/default"},
		{"all0", ""},
		{"Default", ""},
		{"a/b", "'/'"},
		{"../x", "'/'"},
		{"a b", "' '"},
		{"a\nb", `'\n'`},
		{"net%d", "'%'"},
		{"a:1", "':'"},
		{"ü", "'ü'"},
		{"a\x7f", "printable"},
	}
	for _, tt := range tests {
		err := CheckIfName(tt.in)
		if tt.err == "" {
			if err != nil {
				t.Errorf("CheckIfName(%q) = %v", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("CheckIfName(%q) = %v, want error with %q", tt.in, err, tt.err)
		}
	}
}

func TestCheckIPAMType(t *testing.T) {
	tests := []struct {
		in  string
		err string
	}{
		{"host-local", ""},
		{"static", ""},
		{"whereabouts", ""},
		{"my_ipam.v2", ""},
		{"", "must name"},
		{"dhcp", "DHCP client"},
		{"../../bin/sh", `".."`},
		{"..", `".."`},
		{"/usr/bin/host-local", "'/'"},
		{"sub/plugin", "'/'"},
		{`a\b`, `'\\'`},
		{"host local", "' '"},
		{strings.Repeat("a", 65), "at most 64"},
		{".", "starting with a letter or digit"},
		{".x", "starting with a letter or digit"},
		{"-x", "starting with a letter or digit"},
		{"_x", "starting with a letter or digit"},
		{"9x", ""},
	}
	for _, tt := range tests {
		err := CheckIPAMType(tt.in)
		if tt.err == "" {
			if err != nil {
				t.Errorf("CheckIPAMType(%q) = %v", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("CheckIPAMType(%q) = %v, want error with %q", tt.in, err, tt.err)
		}
	}
}

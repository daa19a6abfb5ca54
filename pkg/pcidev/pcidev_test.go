package pcidev

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsBDF(t *testing.T) {
	for s, want := range map[string]bool{
		"0000:3b:00.2": true, "ffff:ff:1f.7": true,
		"0000:3b:00.8": false, "0000:3B:00.2": false, "0000:3b:00": false,
		"000:3b:00.2": false, "0000-3b:00.2": false, "../../etc/x": false, "": false,
	} {
		if IsBDF(s) != want {
			t.Errorf("IsBDF(%q) = %v", s, !want)
		}
	}
}

func TestIsRepresentorPortName(t *testing.T) {
	for s, want := range map[string]bool{
		"pf0vf3": true, "c1pf0vf3": true, "pf0sf1": true, "pf12vf100\n": true,
		"p0": false, "pf0": false, "pf0vf": false, "cpf0vf1": false, "pfxvf1": false, "pf0vf1x": false, "": false,
	} {
		if IsRepresentorPortName(s) != want {
			t.Errorf("IsRepresentorPortName(%q) = %v", s, !want)
		}
	}
}

// TestNetdevs: the device's netdev is the function's own before a
// representor, then the lowest ifindex, then the name; one netdev needs
// no attributes; none is "".
func TestNetdevs(t *testing.T) {
	root := t.TempDir()
	mk := func(bdf, name, ifindex, port string) {
		d := filepath.Join(Dir(root, bdf), "net", name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, v := range map[string]string{"ifindex": ifindex, "phys_port_name": port} {
			if v != "" {
				if err := os.WriteFile(filepath.Join(d, f), []byte(v+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	mk("0000:3b:00.0", "aaa_rep", "5", "pf0vf0") // a representor, lowest name and ifindex
	mk("0000:3b:00.0", "zzz_up", "9", "p0")
	mk("0000:3b:00.0", "mmm_up", "7", "p1")
	mk("0000:3b:00.1", "only", "", "")
	if err := os.MkdirAll(Dir(root, "0000:3b:00.2"), 0o755); err != nil {
		t.Fatal(err)
	}
	for bdf, want := range map[string]string{"0000:3b:00.0": "mmm_up", "0000:3b:00.1": "only", "0000:3b:00.2": "", "0000:3b:00.3": ""} {
		got, err := PrimaryNetdev(root, bdf)
		if err != nil || got != want {
			t.Errorf("PrimaryNetdev(%s) = %q, %v; want %q", bdf, got, err, want)
		}
	}
	nds, _ := Netdevs(root, "0000:3b:00.0")
	if len(nds) != 3 || nds[2].Name != "aaa_rep" || !nds[2].Representor {
		t.Errorf("order %+v: the representor must come last", nds)
	}
}

func TestEntries(t *testing.T) {
	root := t.TempDir()
	const bdf = "0000:3b:00.0"
	for _, n := range []string{"41", "40"} {
		if err := os.MkdirAll(filepath.Join(Dir(root, bdf), "msi_irqs", n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(Dir(root, bdf), "net"), nil, 0o644); err != nil {
		t.Fatal(err) // a file where a folder belongs: unreadable as one
	}
	ents, err := Entries(root, bdf, "msi_irqs", "MSI IRQs")
	if err != nil || len(ents) != 2 || ents[0].Name() != "40" || ents[1].Name() != "41" {
		t.Errorf("Entries(msi_irqs) = %v, %v; want 40, 41", ents, err)
	}
	if ents, err := Entries(root, bdf, "infiniband", "RDMA devices"); err != nil || ents != nil {
		t.Errorf("Entries of a missing folder = %v, %v; want nil, nil", ents, err)
	}
	_, err = Entries(root, bdf, "net", "netdevs")
	if err == nil || !strings.Contains(err.Error(), "list netdevs of "+bdf) {
		t.Errorf("Entries of an unreadable folder: err = %v, want one naming the entries and the device", err)
	}
}

package vfprov

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// State of one selected PF after planning.
type State string

const (
	StateOK      State = "ok"      // the count (and VF driver) is as configured
	StateApply   State = "apply"   // a write is due
	StatePending State = "pending" // a write is due but a VF (or the PF) is prepared
	StateError   State = "error"   // the config cannot be applied to this PF
)

// Status is the plan (and after Apply the outcome) for one selected PF.
type Status struct {
	PF       PF
	Entry    int    // index in NodeConfig.PFs
	Desired  int    // configured numVfs
	VFDriver string // configured VF driver, "" for any
	State    State
	// Reason says why the state is pending or error.
	Reason string
	// Busy are the prepared devices that hold a pending change back.
	Busy []string
	// Rebind are the VFs not on VFDriver (when the count is right).
	Rebind []string
}

// Name is the PF for messages: "0000:00:04.0 (eth1)".
func (s *Status) Name() string {
	if s.PF.IfName == "" {
		return s.PF.PCIAddress
	}
	return s.PF.PCIAddress + " (" + s.PF.IfName + ")"
}

// Held is a prepared device of a PF: the PF itself or one of its VFs.
type Held struct {
	Device     string // ResourceSlice device name
	PCIAddress string
}

// BusyFunc returns the prepared devices that are the PF or one of its VFs
// (pf.VFs lists those sysfs shows); nil when none.
type BusyFunc func(pf PF) []Held

func heldNames(held []Held) []string {
	out := make([]string, len(held))
	for i, h := range held {
		out[i] = h.Device
	}
	return out
}

// Plan compares the config with the PFs and says, for each PF the config
// selects, what is to be done. PFs no entry selects are not in the result.
// root is read for the VFs' drivers when VFDriver is set.
func Plan(root string, cfg *NodeConfig, pfs []PF, busy BusyFunc) []Status {
	if cfg == nil {
		return nil
	}
	var out []Status
	for i := range pfs {
		pf := pfs[i]
		var hit []int
		for j := range cfg.PFs {
			if cfg.PFs[j].selects(&pf) {
				hit = append(hit, j)
			}
		}
		if len(hit) == 0 {
			continue
		}
		var held []Held
		if busy != nil {
			held = busy(pf)
		}
		e := cfg.PFs[hit[0]]
		st := Status{PF: pf, Entry: hit[0], Desired: *e.NumVFs, VFDriver: e.VFDriver, State: StateOK}
		switch {
		case len(hit) > 1:
			names := make([]string, len(hit))
			for k, j := range hit {
				names[k] = cfg.PFs[j].describe(j)
			}
			st.State = StateError
			st.Reason = fmt.Sprintf("PF %s is selected by more than one entry: %s", st.Name(), strings.Join(names, ", "))
		case st.Desired > pf.TotalVFs:
			st.State = StateError
			st.Reason = fmt.Sprintf("%s: numVfs %d is above the PF's limit sriov_totalvfs %d", cfg.PFs[hit[0]].describe(hit[0]), st.Desired, pf.TotalVFs)
		case pf.Driver == "":
			st.State = StateError
			st.Reason = fmt.Sprintf("PF %s has no driver bound; its VFs cannot be enabled", st.Name())
		case st.Desired != pf.NumVFs:
			st.State = StateApply
		case st.VFDriver != "":
			// Only the free VFs are rebound: a prepared VF stays on the
			// driver its claim has it on, and is rebound once released.
			free := true
			skip := map[string]bool{}
			for _, h := range held {
				skip[h.PCIAddress] = true
				free = free && h.PCIAddress != pf.PCIAddress
			}
			for _, vf := range pf.VFs {
				if !skip[vf] && linkBase(filepath.Join(devicesDir(root), vf, "driver")) != st.VFDriver {
					st.Rebind = append(st.Rebind, vf)
				}
			}
			switch {
			case len(st.Rebind) > 0 && !free:
				st.State = StatePending
				st.Busy = heldNames(held)
				st.Reason = fmt.Sprintf("PF %s: binding its VFs to %s waits until the PF itself is no longer prepared", st.Name(), st.VFDriver)
			case len(st.Rebind) > 0:
				st.State = StateApply
			}
		}
		if st.State == StateApply && st.Desired != pf.NumVFs && len(held) > 0 {
			st.State = StatePending
			st.Busy = heldNames(held)
			st.Reason = fmt.Sprintf("PF %s: changing its VFs (sriov_numvfs %d -> %d) waits until no VF of it is prepared; prepared: %s",
				st.Name(), pf.NumVFs, st.Desired, strings.Join(st.Busy, ", "))
		}
		out = append(out, st)
	}
	return out
}

// Apply carries out one StateApply status: it sets sriov_numvfs (through 0
// when changing a non-zero count) and then binds the VFs to VFDriver when
// one is configured. Other states are left alone. It returns the
// sriov_numvfs values written, in order.
func Apply(ctx context.Context, root string, st Status) ([]int, error) {
	if st.State != StateApply {
		return nil, nil
	}
	var writes []int
	rebind := st.Rebind
	if st.Desired != st.PF.NumVFs {
		w, err := setNumVFs(root, st.PF, st.Desired)
		writes = w
		if err != nil {
			return writes, err
		}
		if st.VFDriver == "" || st.Desired == 0 {
			return writes, nil
		}
		now, _, err := readPF(root, st.PF.PCIAddress)
		if err != nil {
			return writes, err
		}
		rebind = rebind[:0:0]
		for _, vf := range now.VFs {
			if linkBase(filepath.Join(devicesDir(root), vf, "driver")) != st.VFDriver {
				rebind = append(rebind, vf)
			}
		}
	}
	var errs []error
	for _, vf := range rebind {
		if err := bindVF(ctx, root, vf, st.VFDriver); err != nil {
			errs = append(errs, fmt.Errorf("PF %s: %w", st.Name(), err))
		}
	}
	return writes, errors.Join(errs...)
}

// Source is the config file, re-read when its modification time or size
// changes (the kubelet replaces a ConfigMap volume's file on update).
type Source struct {
	path    string
	modTime time.Time
	size    int64
	present bool
	cfg     *NodeConfig
}

// NewSource loads path; a missing file is no config (nil, no error), a bad
// one an error.
func NewSource(path string) (*Source, error) {
	s := &Source{path: path}
	if _, _, err := s.Refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the config file's path.
func (s *Source) Path() string { return s.path }

// Config is the last good config, nil when none.
func (s *Source) Config() *NodeConfig { return s.cfg }

// Changed reports whether the file looks different from when it was last
// read (appeared, went away, another size or modification time), with
// one stat and without reading it: what a frequent check can afford.
func (s *Source) Changed() bool {
	fi, err := os.Stat(s.path)
	if err != nil {
		return s.present || !errors.Is(err, os.ErrNotExist)
	}
	return !s.present || !fi.ModTime().Equal(s.modTime) || fi.Size() != s.size
}

// Refresh re-reads the file when it changed. It reports whether the config
// changed; on a bad file it keeps the last good config and returns the
// error (once per change of the file). A removed file means no config.
func (s *Source) Refresh() (changed bool, cfg *NodeConfig, err error) {
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		if !s.present && s.cfg == nil {
			return false, nil, nil
		}
		s.present, s.cfg, s.modTime, s.size = false, nil, time.Time{}, 0
		return true, nil, nil
	}
	if err != nil {
		return false, s.cfg, fmt.Errorf("VF config %s: %w", s.path, err)
	}
	if s.present && fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return false, s.cfg, nil
	}
	s.present, s.modTime, s.size = true, fi.ModTime(), fi.Size()
	c, err := Load(s.path)
	if err != nil {
		return false, s.cfg, err
	}
	s.cfg = c
	return true, c, nil
}

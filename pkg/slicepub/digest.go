package slicepub

// This file compares slices by digest, so no copy of the pool is kept to
// compare with, and checks a pool before it is handed over.

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"

	resourceapi "k8s.io/api/resource/v1"
)

// specDigest is the SHA-256 of a slice's spec without spec.pool (compared
// on its own) and without the taints' timeAdded (the server sets it).
// Each device is encoded on its own, so the buffers stay small; maps are
// encoded with sorted keys, so equal specs give equal digests.
func specDigest(spec *resourceapi.ResourceSliceSpec) ([sha256.Size]byte, error) {
	h := sha256.New()
	rest := *spec
	rest.Pool = resourceapi.ResourcePool{}
	rest.Devices = nil
	if err := encodeInto(h, &rest); err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("encode spec to digest it: %w", err)
	}
	for i := range spec.Devices {
		d := deviceWithoutTaintTimes(&spec.Devices[i])
		if err := encodeInto(h, d); err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("encode device %s (spec.devices[%d]) to digest it: %w", spec.Devices[i].Name, i, err)
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, nil
}

func encodeInto(h hash.Hash, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h.Write(b)
	h.Write([]byte{'\n'})
	return nil
}

// deviceWithoutTaintTimes returns d, or a shallow copy of it whose taints
// lack timeAdded when it has any.
func deviceWithoutTaintTimes(d *resourceapi.Device) *resourceapi.Device {
	timed := false
	for _, t := range d.Taints {
		timed = timed || t.TimeAdded != nil
	}
	if !timed {
		return d
	}
	c := *d
	c.Taints = make([]resourceapi.DeviceTaint, len(d.Taints))
	for i, t := range d.Taints {
		t.TimeAdded = nil
		c.Taints[i] = t
	}
	return &c
}

// deviceDigest is the digest of one device as specDigest sees it.
func deviceDigest(d *resourceapi.Device) [sha256.Size]byte {
	h := sha256.New()
	if err := encodeInto(h, deviceWithoutTaintTimes(d)); err != nil {
		// A device that cannot be encoded differs from every other.
		h.Write([]byte(err.Error()))
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// validate refuses a pool the API server would refuse, naming the slice
// and field.
func validate(pool Pool) error {
	if pool.Name == "" {
		return fmt.Errorf("pool name (spec.pool.name) is empty")
	}
	if len(pool.Name) > resourceapi.PoolNameMaxLength {
		return fmt.Errorf("pool %s: name (spec.pool.name) is longer than %d characters", pool.Name, resourceapi.PoolNameMaxLength)
	}
	seen := map[string]int{}
	for i, s := range pool.Slices {
		if len(s.Devices) > MaxDevicesPerSlice {
			return fmt.Errorf("pool %s, slice %d: %d devices (spec.devices), at most %d", pool.Name, i, len(s.Devices), MaxDevicesPerSlice)
		}
		for j, d := range s.Devices {
			if d.Name == "" {
				return fmt.Errorf("pool %s, slice %d: device %d has no name (spec.devices[%d].name)", pool.Name, i, j, j)
			}
			if prev, dup := seen[d.Name]; dup {
				return fmt.Errorf("pool %s: device %s (spec.devices[%d].name) is in slice %d and slice %d", pool.Name, d.Name, j, prev, i)
			}
			seen[d.Name] = i
		}
	}
	return nil
}

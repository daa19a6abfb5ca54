//go:build !faultinject

package faults

// Enabled reports whether this binary was built with the faultinject tag.
const Enabled = false

// Point does nothing in a normal build.
func Point(string) {}

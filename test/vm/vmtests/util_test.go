//go:build vmtest

package vmtests

import (
	"strconv"
	"time"
)

// Bounds for waiting on the kernel under TCG emulation (slow, but not this slow).
const (
	waitShort = 20 * time.Second
	waitLong  = 60 * time.Second
)

func itoa(i int) string { return strconv.Itoa(i) }

func boolStr(b bool) string { return strconv.FormatBool(b) }

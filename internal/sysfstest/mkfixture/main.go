// Command mkfixture writes a fake host tree (sysfs, /dev, /proc) for
// `sriov-dra inventory --host-root DIR` demos and manual tests:
//
//	go run ./internal/sysfstest/mkfixture DIR            # the four ready PFs
//	go run ./internal/sysfstest/mkfixture -scale 8x128 DIR
//
// DIR must not exist or be empty. Netlink state (VF admin state) is not
// written: it lives in the fake that tests get from sysfstest.New.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

func main() {
	scale := flag.String("scale", "", "PFSxVFS, e.g. 8x128: that many ConnectX-6 Dx PFs with VFs instead of the standard four PFs")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: mkfixture [-scale PFSxVFS] DIR")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	dir := flag.Arg(0)
	topo := sysfstest.Standard()
	if *scale != "" {
		var pfs, vfs int
		if _, err := fmt.Sscanf(*scale, "%dx%d", &pfs, &vfs); err != nil || pfs <= 0 || pfs > 64 || vfs < 0 || vfs > 1024 {
			fmt.Fprintf(os.Stderr, "-scale %q: want PFSxVFS with 1-64 PFs and 0-1024 VFs\n", *scale)
			os.Exit(2)
		}
		topo = sysfstest.Scale(pfs, vfs)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		fmt.Fprintf(os.Stderr, "%s is not empty\n", dir)
		os.Exit(2)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := sysfstest.Write(dir, topo); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(dir)
}

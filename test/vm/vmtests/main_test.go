//go:build vmtest

package vmtests

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv("SRIOV_DRA_VMTEST") != "1" {
		fmt.Println("SKIP: these tests change real SR-IOV devices; they run only inside the VM started by test/vm/run.sh (make vmtest)")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

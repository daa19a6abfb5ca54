package nlink_test

import (
	"go/ast"
	"go/types"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

const (
	netlinkPkg = "github.com/vishvananda/netlink"
	nlinkPkg   = "github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// rawDumps are the vishvananda/netlink calls that send a dump the kernel
// can interrupt (NLM_F_DUMP_INTR), as package functions or *netlink.Handle
// methods. RdmaLinkByName and LinkByAlias dump under the hood.
var rawDumps = map[string]bool{
	"LinkList": true, "LinkByAlias": true,
	"AddrList":  true,
	"RouteList": true, "RouteListFiltered": true, "RouteListFilteredIter": true,
	"RdmaLinkList": true, "RdmaLinkByName": true,
	"NeighList": true, "NeighListExecute": true, "NeighProxyList": true,
	"RuleList": true, "RuleListFiltered": true,
	"BridgeVlanList": true, "BridgeVlanTunnelShowDev": true,
	"LinkGetProtinfo": true, "QdiscList": true, "ClassList": true, "FilterList": true, "ChainList": true,
	"DevLinkGetDeviceList": true, "DevLinkGetAllPortList": true, "DevlinkGetDeviceParams": true,
	"GenlFamilyList": true, "FouList": true, "XfrmPolicyList": true, "XfrmStateList": true,
	"ConntrackTableList": true, "SocketDiagTCPInfo": true, "SocketDiagUDPInfo": true,
}

// TestNoRawDumpsOutsideNlink is the lint rule for netlink dumps: outside
// pkg/nlink no product code calls a vishvananda/netlink dump directly
// (package function, *netlink.Handle method, or one promoted through
// nlink.Real's embedded handle), because only pkg/nlink retries a dump the
// kernel interrupted. It type-checks the module's packages (test files
// excluded: they verify the host and may read it directly), so a call is
// matched by what it resolves to, not by its spelling. make lint runs it.
func TestNoRawDumpsOutsideNlink(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not in PATH: cannot load the module's packages")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &packages.Config{
		Mode: packages.NeedName | packages.NeedFiles | packages.NeedSyntax | packages.NeedTypes | packages.NeedTypesInfo,
		Dir:  root,
	}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		t.Fatalf("load the module's packages: %v", err)
	}
	if len(pkgs) < 5 {
		t.Fatalf("loaded %d packages from %s, want the whole module", len(pkgs), root)
	}
	for _, p := range pkgs {
		for _, e := range p.Errors {
			t.Errorf("package %s: %v", p.PkgPath, e)
		}
		if p.PkgPath == nlinkPkg || strings.HasPrefix(p.PkgPath, nlinkPkg+"/") {
			continue
		}
		for _, f := range p.Syntax {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				fn, ok := p.TypesInfo.Uses[sel.Sel].(*types.Func)
				if !ok || fn.Pkg() == nil || fn.Pkg().Path() != netlinkPkg || !rawDumps[fn.Name()] {
					return true
				}
				t.Errorf("%s: raw netlink dump %s.%s: call it through an nlink.Handle (pkg/nlink), which retries a dump the kernel interrupted (netlink.ErrDumpInterrupted)",
					p.Fset.Position(call.Pos()), describe(fn), fn.Name())
				return true
			})
		}
	}
}

func describe(fn *types.Func) string {
	if recv := fn.Type().(*types.Signature).Recv(); recv != nil {
		return types.TypeString(recv.Type(), func(p *types.Package) string { return p.Name() })
	}
	return "netlink"
}

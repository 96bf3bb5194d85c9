// Command bootpath says whether stock distribution kernels boot on this
// machine's /dev/kvm, by the one rule the tests use
// (internal/testenv.CanBootStockKernels: hardware virtualization, not PVM,
// a /dev/kvm character device that answers KVM_GET_API_VERSION; it never
// creates the device). It exits 0 and prints nothing when they do, and
// exits 1 printing every reason why not when flint must run inside the
// nested test host. scripts/lib/common.sh's flint_nested_reason (make run)
// runs it, so that the shell does not decide this a second time.
package main

import (
	"fmt"
	"os"

	"github.com/flintvm/flint/internal/testenv"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: bootpath  (exit 0: stock kernels boot on /dev/kvm here; 1: why not, on stdout)")
		os.Exit(2)
	}
	if ok, why := testenv.CanBootStockKernels(); !ok {
		fmt.Println(why)
		os.Exit(1)
	}
}

//go:build !linux

// Package nsrun builds network namespaces and TAP devices, which only
// Linux has. Elsewhere only what every slipway binary calls at start
// exists: this binary is never re-executed as a namespace helper there.
package nsrun

import (
	"fmt"
	"os"
)

// IsChild is false: no namespace init is started on this system.
func IsChild() bool { return false }

// IsAttachHelper is false: no attach helper is started on this system.
func IsAttachHelper() bool { return false }

// ChildMain is never called here (IsChild is false); if it were, it
// exits as a failed namespace init does.
func ChildMain() { unsupported() }

// AttachMain is never called here (IsAttachHelper is false).
func AttachMain() { unsupported() }

func unsupported() {
	fmt.Fprintln(os.Stderr, "slipway: network namespaces are Linux-only")
	os.Exit(125)
}

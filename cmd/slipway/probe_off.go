//go:build !sandboxprobe

package main

// probeSandbox is a no-op: only a test build (probe_on.go) tries to
// break out of the sandbox.
func probeSandbox() {}

//go:build !sandboxprobe

package sandbox

// Probe is a no-op: only a test build (probe_on.go) tries to break out of
// the sandbox.
func Probe() {}

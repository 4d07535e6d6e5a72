//go:build cgo

package sandbox

// cgoBuild: this binary was built with cgo, whose threads
// syscall.AllThreadsSyscall cannot reach.
const cgoBuild = true

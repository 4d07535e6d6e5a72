// Package sysio has the system calls that x/sys/unix lacks on some of
// slipway's hosts.
package sysio

import "golang.org/x/sys/unix"

// Writev is one writev(2) call.
func Writev(fd int, iov [][]byte) (int, error) { return unix.Writev(fd, iov) }

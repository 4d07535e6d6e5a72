package flow

import "golang.org/x/sys/unix"

// fionread asks a socket how many bytes it holds.
const fionread = unix.SIOCINQ

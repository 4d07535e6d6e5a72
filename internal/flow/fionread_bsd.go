//go:build darwin || freebsd

package flow

// fionread asks a socket how many bytes it holds: FIONREAD, _IOR('f', 127, int).
const fionread = 0x4004667f

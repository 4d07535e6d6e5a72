//go:build !linux

package flow

import "errors"

// udpGSO: only Linux sends runs of datagrams in one call.
const udpGSO = false

func udpSegmentOOB(oob []byte, size int) []byte { return nil }

func sendmsgN(fd int, b, oob []byte) (int, error) { return 0, errNoRuns }

var errNoRuns = errors.New("no UDP segmentation offload here")

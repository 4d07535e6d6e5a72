package pasta

import (
	"context"
	"time"

	"golang.org/x/sys/unix"
)

// watchInterval is how often the target namespace's file is looked at.
const watchInterval = 250 * time.Millisecond

// WatchNS returns a channel closed once path (a namespace file: a bind
// mount under /run/netns, or /proc/PID/ns/net) no longer names the
// namespace it names now: removed, unmounted, or its process gone. That is
// when pasta quits. It stops looking when ctx ends.
func WatchNS(ctx context.Context, path string) (<-chan struct{}, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, err
	}
	gone := make(chan struct{})
	go func() {
		t := time.NewTicker(watchInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var now unix.Stat_t
			if err := unix.Stat(path, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
				close(gone)
				return
			}
		}
	}()
	return gone, nil
}

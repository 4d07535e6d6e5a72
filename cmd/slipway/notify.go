package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/slipway-net/slipway/internal/systemd"
)

// serviceNotify tells the service manager that started serve how it is
// doing (slipway@.service is Type=notify): READY=1 once the engine
// serves, WATCHDOG=1 while it runs if the unit has WatchdogSec=, and
// STOPPING=1 when it stops. The launcher sends them: the engine has no
// way to the manager's socket, and the manager accepts them from the main
// process (NotifyAccess=main).
type serviceNotify struct {
	n      *systemd.Notifier
	status string
	log    *slog.Logger
}

// serving sends READY=1 and feeds the watchdog until stop is called;
// stop sends STOPPING=1, once. With no manager (nil) both do nothing.
func (s *serviceNotify) serving() (stop func()) {
	if s == nil || s.n == nil {
		return func() {}
	}
	send := func(state ...string) {
		if err := s.n.Send(state...); err != nil {
			s.log.Warn("could not notify the service manager", "err", err)
		}
	}
	ready := []string{"READY=1"}
	if s.status != "" {
		ready = append(ready, "STATUS="+s.status)
	}
	send(ready...)
	done := make(chan struct{})
	var wg sync.WaitGroup
	if every := s.n.Watchdog() / 2; every > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					send("WATCHDOG=1")
				}
			}
		}()
	}
	return sync.OnceFunc(func() {
		close(done)
		wg.Wait()
		send("STOPPING=1")
	})
}

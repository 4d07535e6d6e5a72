package accept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"
)

// A run of failures that pass does not end the loop: the connections
// after it are served. A closed listener ends it without an error, a
// failure for good with that failure.
func TestLoopServesThroughFailuresThatPass(t *testing.T) {
	results := []error{nil, syscall.EMFILE, syscall.EMFILE, fmt.Errorf("accept: %w", syscall.ENFILE), syscall.EPROTO, errors.New("something else"), nil, net.ErrClosed}
	i, served := 0, 0
	accept := func() (int, error) {
		err := results[i]
		i++
		return i, err
	}
	err := Loop(context.Background(), slog.New(slog.DiscardHandler), "test", accept, func(int) { served++ })
	if err != nil || served != 2 || i != len(results) {
		t.Fatalf("Loop = %v after %d accepts, %d served; want nil after %d, 2 served", err, i, served, len(results))
	}
	broken := fmt.Errorf("accept: %w", syscall.EBADF)
	err = Loop(context.Background(), slog.New(slog.DiscardHandler), "test", func() (int, error) { return 0, broken }, func(int) {})
	if !errors.Is(err, broken) {
		t.Fatalf("Loop = %v, want the failure for good", err)
	}
}

// Cancelling the context ends a loop waiting out a backoff.
func TestLoopEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Loop(ctx, slog.New(slog.DiscardHandler), "test", func() (int, error) { return 0, syscall.EMFILE }, func(int) {})
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Loop = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Loop went on after its context ended")
	}
}

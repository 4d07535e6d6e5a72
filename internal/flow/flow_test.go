package flow

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-net/slipway/config"
)

var testEnds = Ends{
	Proto: config.TCP,
	Guest: netip.MustParseAddrPort("10.0.2.15:40000"),
	Host:  netip.MustParseAddrPort("127.0.0.1:80"),
}

// newTestTable is a table of max flows whose per-guest limits never bind.
func newTestTable(max int) *Table {
	return NewTable(Limits{Max: max, UDPPerGuest: max, NewPerSecond: 1 << 20})
}

// reserve is Reserve for a flow the test expects to be admitted.
func reserve(t *testing.T, tab *Table, e Ends) *Flow {
	t.Helper()
	f, err := tab.Reserve(e)
	if err != nil {
		t.Fatalf("Reserve(%v): %v", e, err)
	}
	return f
}

// A close that lands while a flow is being set up (its host socket being
// dialled) must not lose what the set-up then hands over: Start releases
// it at once and says so.
func TestCloseWhileOpeningReleasesAtStart(t *testing.T) {
	tab := newTestTable(10)
	defer tab.Close()
	f := reserve(t, tab, testEnds)
	if tab.Len() != 1 {
		t.Fatalf("an opening flow holds a slot: Len = %d, want 1", tab.Len())
	}
	f.Close()
	select {
	case <-f.Done():
	default:
		t.Fatal("Close did not end the flow's context: a dial in progress would go on")
	}
	released := 0
	if f.Start(func() { released++ }) {
		t.Fatal("Start on a closed flow reported success")
	}
	if released != 1 {
		t.Fatalf("release ran %d times, want 1", released)
	}
	if tab.Len() != 0 {
		t.Fatalf("Len = %d after Close, want 0", tab.Len())
	}
}

// Close and Start racing from different goroutines: whichever wins,
// release runs exactly once and the slot is freed.
func TestStartAndCloseRaceReleaseOnce(t *testing.T) {
	tab := newTestTable(1000)
	defer tab.Close()
	for i := 0; i < 500; i++ {
		f := reserve(t, tab, testEnds)
		var released atomic.Int32
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); f.Start(func() { released.Add(1) }) }()
		go func() { defer wg.Done(); f.Close() }()
		go func() { defer wg.Done(); f.Close() }()
		wg.Wait()
		if n := released.Load(); n != 1 {
			t.Fatalf("round %d: release ran %d times, want 1", i, n)
		}
	}
	if tab.Len() != 0 {
		t.Fatalf("Len = %d, want 0", tab.Len())
	}
}

// A closed table opens nothing: no flow, no poller.
func TestClosedTableRefuses(t *testing.T) {
	tab := newTestTable(10)
	opening := reserve(t, tab, testEnds)
	running := reserve(t, tab, testEnds)
	released := false
	running.Start(func() { released = true })
	tab.Close()
	if !released {
		t.Error("Close did not release a running flow")
	}
	select {
	case <-opening.Done():
	default:
		t.Error("Close did not end an opening flow")
	}
	if f, err := tab.Reserve(testEnds); f != nil || err != ErrClosed {
		t.Errorf("Reserve on a closed table = %v, %v; want ErrClosed", f, err)
	}
	if p, err := tab.poller(); err == nil || p != nil {
		t.Errorf("poller() = %v, %v on a closed table, want ErrClosed", p, err)
	}
	if got := tab.Refusals(); got != (Refusals{}) {
		t.Errorf("refusals of a closed table counted as limits: %+v", got)
	}
}

// A full table refuses and counts it; a closed flow's slot is reusable.
func TestTableLimit(t *testing.T) {
	tab := newTestTable(2)
	defer tab.Close()
	a := reserve(t, tab, testEnds)
	reserve(t, tab, testEnds)
	if _, err := tab.Reserve(testEnds); err != ErrFull {
		t.Fatalf("a third flow in a table of two: %v, want ErrFull", err)
	}
	if got := tab.Refusals(); got != (Refusals{Full: 1}) {
		t.Fatalf("Refusals = %+v, want Full 1", got)
	}
	a.Close()
	reserve(t, tab, testEnds) // the closed flow's slot is free again
}

// An idle flow closes after its timeout, and activity postpones it.
func TestCloseWhenIdle(t *testing.T) {
	tab := newTestTable(10)
	defer tab.Close()
	f := reserve(t, tab, testEnds)
	f.Start(func() {})
	// A wide margin: the loop touches every 10 ms, the timeout is a
	// second, so only a stall of a second could close it.
	timer := f.CloseWhenIdle(time.Second)
	defer timer.Stop()
	stop := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(stop) {
		f.Touch()
		time.Sleep(10 * time.Millisecond)
	}
	if f.Closed() {
		t.Fatal("a flow in use closed as idle")
	}
	select {
	case <-f.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("an idle flow never closed")
	}
}

// A table's Close that meets a flow already closing on another goroutine
// (a UDP flow refused by its host, say) returns only once that flow is
// gone: its release has run and its slot is free. It used to return while
// the other Close was still releasing, leaving a flow listed, and its
// socket open, after the network's Close (found by FuzzGuestSession).
func TestTableCloseWaitsForClosingFlows(t *testing.T) {
	tab := newTestTable(10)
	f := reserve(t, tab, testEnds)
	inRelease, unblock := make(chan struct{}), make(chan struct{})
	var released atomic.Bool
	f.Start(func() {
		close(inRelease)
		<-unblock
		released.Store(true)
	})
	go f.Close()
	<-inRelease
	// Let the release go on a moment after the table's Close has begun.
	time.AfterFunc(50*time.Millisecond, func() { close(unblock) })
	tab.Close()
	if !released.Load() || tab.Len() != 0 {
		t.Fatalf("Close returned with the flow's release done = %v and %d flows listed", released.Load(), tab.Len())
	}
}

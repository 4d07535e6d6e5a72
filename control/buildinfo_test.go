package control

import (
	"fmt"
	"strings"
	"testing"

	"github.com/slipway-net/slipway/internal/buildinfo"
)

// A scrape says which build answered it, in the *_build_info convention,
// and has no copy of process_start_time_seconds under another name.
func TestBuildInfoMetric(t *testing.T) {
	f := newFixture(t)
	status, metrics := f.do(t, "GET", "/metrics", "")
	if status != 200 {
		t.Fatalf("/metrics: %d", status)
	}
	in := buildinfo.Read()
	want := fmt.Sprintf(`slipway_build_info{commit=%q,goversion=%q,version=%q} 1`, in.ShortCommit(), in.GoVersion, in.Version)
	if !strings.Contains(metrics, "\n"+want+"\n") {
		t.Errorf("/metrics has no line %s", want)
	}
	if !strings.Contains(metrics, "\nprocess_start_time_seconds ") {
		t.Error("/metrics has no process_start_time_seconds")
	}
	if strings.Contains(metrics, "slipway_uptime_seconds") {
		t.Error("/metrics still has slipway_uptime_seconds, a copy of process_start_time_seconds")
	}
}

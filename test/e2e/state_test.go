package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway-net/slipway/network"
	"github.com/slipway-net/slipway/test/testenv"
)

// slipway run --state-file, with the sandbox on: the namespace's static
// binding is kept (the confined engine writes through its launcher), and
// a second run over the same file starts (the restored binding and the
// one run makes again agree) and still reaches the host.
func TestRunStateFile(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "curl")
	web, _ := testenv.HTTPFile(t, 1<<10)
	state := filepath.Join(t.TempDir(), "state.json")
	for round := 0; round < 2; round++ {
		res := runNS(t, []string{"--state-file", state}, fmt.Sprintf("curl -sf -o /dev/null http://10.0.2.2:%d/blob && echo @curl=ok", web.Port()))
		if res.Code != 0 || testenv.Markers(res.Output)["curl"] != "ok" {
			t.Fatalf("round %d: exit %d:\n%s", round, res.Code, res.Output)
		}
		b, err := os.ReadFile(state)
		if err != nil {
			t.Fatal(err)
		}
		st, err := network.DecodeState(b)
		if err != nil {
			t.Fatalf("round %d: the state file: %v", round, err)
		}
		if len(st.DHCP4) != 1 || !st.DHCP4[0].Static || st.DHCP4[0].Addr.String() != "10.0.2.15" {
			t.Errorf("round %d: leases %+v, want the namespace's static 10.0.2.15", round, st.DHCP4)
		}
	}
}

package control

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slipway-net/slipway/network"
)

// GET /v1/state from one slipway, PUT into a fresh one: the same leases
// and forwards. Bad imports are refused and change nothing.
func TestStateExportImport(t *testing.T) {
	a := newFixture(t)
	port := freePort(t)
	if status, body := a.do(t, "POST", "/v1/forwards", `{"spec":"127.0.0.1:`+itoa(port)+`:80"}`); status != 201 {
		t.Fatalf("publish: %d %s", status, body)
	}
	lease := `{"version":1,"dhcp4_leases":[{"mac":"52:54:00:00:50:01","addr":"10.0.2.40","expires":"2031-01-01T00:00:00Z"}],"dhcp6_leases":[],"forwards":[]}`
	if status, body := a.do(t, "PUT", "/v1/state", lease); status != 200 {
		t.Fatalf("PUT lease: %d %s", status, body)
	}
	status, exported := a.do(t, "GET", "/v1/state", "")
	if status != 200 || !strings.Contains(exported, `"version": 1`) || !strings.Contains(exported, "10.0.2.40") || !strings.Contains(exported, `"host_port": `+itoa(port)) {
		t.Fatalf("GET /v1/state: %d %s", status, exported)
	}
	// The host port is a's; b publishes it once a lets it go.
	a.do(t, "DELETE", "/v1/forwards/1", "")
	b := newFixture(t)
	if status, body := b.do(t, "PUT", "/v1/state", exported); status != 200 {
		t.Fatalf("import: %d %s", status, body)
	}
	if fws := b.forwards(t); !strings.Contains(fws, ":"+itoa(port)+":") {
		t.Errorf("forwards after import: %s", fws)
	}
	var st network.State
	if err := b.c.Do(context.Background(), "GET", "/v1/state", nil, &st); err != nil || len(st.DHCP4) != 1 || st.DHCP4[0].Addr.String() != "10.0.2.40" {
		t.Errorf("state after import: %+v %v", st, err)
	}
	before := b.forwards(t)
	_, stBefore := b.do(t, "GET", "/v1/state", "")
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"version":3}`, 400, "newer slipway"},
		{`{"version":1,`, 400, "corrupt"},
		{``, 400, "corrupt"},
		{`{"version":1,"dhcp4_leases":[{"mac":"52:54:00:00:50:02","addr":"10.0.2.40"}]}`, 409, "held by another client"},
		{`{"version":1,"forwards":[{"proto":"tcp","host_addr":"127.0.0.1","host_port":` + itoa(freePort(t)) + `,"guest_addr":"10.0.2.15","guest_port":81}],"dhcp4_leases":[{"mac":"52:54:00:00:50:02","addr":"10.0.2.40"}]}`, 409, "held by another client"},
		{`{"version":1,"dhcp4_leases":[{"mac":"52:54:00:00:50:03","addr":"192.168.9.9"}]}`, 409, "cannot restore lease"},
		{`{"version":1,"dhcp4_leases":[{"mac":"52:54:00:00:50:03","addr":"10.0.2.2"}]}`, 409, "cannot restore lease"},
		{`{"version":1,"dhcp6_leases":[{"duid":"zz","addr":"fd00::200"}]}`, 409, "cannot restore lease"},
		{strings.Repeat(" ", network.MaxStateBytes+1), 413, "larger than"},
	} {
		status, body := b.do(t, "PUT", "/v1/state", c.body)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("PUT %.40q: %d %s, want %d %q", c.body, status, body, c.status, c.want)
		}
	}
	_, stAfter := b.do(t, "GET", "/v1/state", "")
	if after := b.forwards(t); after != before || dropSaved(stAfter) != dropSaved(stBefore) {
		t.Errorf("refused imports changed the state:\n%s\nwas\n%s", stAfter, stBefore)
	}
}

func dropSaved(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, `"saved"`) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

func TestGetConfig(t *testing.T) {
	f := newFixture(t)
	var cfg map[string]any
	if err := f.c.Do(context.Background(), "GET", "/v1/config", nil, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["cidr"] != "10.0.2.0/24" || cfg["mtu"] == nil {
		t.Errorf("config %v: want the flags' names and the effective values", cfg)
	}
	lim, _ := cfg["limits"].(map[string]any)
	if lim["connect-timeout"] != "30s" {
		t.Errorf("limits %v", lim)
	}
}

func TestShutdown(t *testing.T) {
	f := newFixture(t)
	if status, body := f.do(t, "POST", "/v1/shutdown", ""); status != 501 {
		t.Errorf("shutdown without a front-end hook: %d %s, want 501", status, body)
	}
	done := make(chan struct{})
	f.srv.OnShutdown(func() { close(done) })
	for _, bad := range []string{`{"timeout_seconds":-1}`, `{"timeout_seconds":1e9}`, `{"timeout":1}`, `[]`} {
		if status, body := f.do(t, "POST", "/v1/shutdown", bad); status != 400 {
			t.Errorf("shutdown %s: %d %s, want 400", bad, status, body)
		}
	}
	status, body := f.do(t, "POST", "/v1/shutdown", `{"timeout_seconds":5}`)
	if status != 202 || !strings.Contains(body, "shutting down") {
		t.Fatalf("shutdown: %d %s", status, body)
	}
	if status, _ := f.do(t, "POST", "/v1/shutdown", ""); status != 409 {
		t.Errorf("second shutdown: %d, want 409", status)
	}
	<-done // no flows: the drain ends at once
	// A link handed over while draining is refused.
	_, theirs := socketpair(t, unix.SOCK_STREAM)
	if status, body := postLink(t, f.sock, `{"kind":"stream"}`, theirs); status != 503 {
		t.Errorf("link added while draining: %d %s, want 503", status, body)
	}
}

package pasta

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/slipway-net/slipway/config"
	"github.com/slipway-net/slipway/network"
)

// published records what a Follower publishes.
type published struct{ ports []uint16 }

func (p *published) Publish(r config.PublishRule) (network.Forward, error) {
	p.ports = append(p.ports, r.HostPort)
	return network.Forward{ID: uint64(len(p.ports)), PublishRule: r}, nil
}

func (p *published) Unpublish(uint64) (network.Forward, error) { return network.Forward{}, nil }

// followTables are /proc/net tables as files: tcp's given, the others
// empty.
func followTables(t *testing.T, tcp string) []*os.File {
	t.Helper()
	dir := t.TempDir()
	var out []*os.File
	for i, body := range []string{tcp, "", "", ""} {
		path := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		out = append(out, f)
	}
	return out
}

// -t auto follows the ports bound on the namespace's addresses; with
// --host-lo-to-ns-lo its loopback-bound ones too, but never -T's own
// listener there (127.0.0.1:22 in tcpTable), which would loop.
func TestFollowerLoopback(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		line string
		want []uint16
	}{
		{"--config-net -4 -t auto --netns /x", []uint16{80, 8080}},
		{"--config-net -4 -t auto --host-lo-to-ns-lo --netns /x", []uint16{22, 80, 8080}},
		{"--config-net -4 -t auto -T 22 --host-lo-to-ns-lo --netns /x", []uint16{80, 8080}},
	} {
		p := plan(t, c.line)
		var pub published
		NewFollower(p, &pub, followTables(t, tcpTable), log).Sync()
		slices.Sort(pub.ports)
		if !slices.Equal(pub.ports, c.want) {
			t.Errorf("%s: published %v, want %v", c.line, pub.ports, c.want)
		}
	}
}

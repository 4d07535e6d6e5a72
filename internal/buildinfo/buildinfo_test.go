package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func stamped(version string, settings ...string) *debug.BuildInfo {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: Module, Version: version},
		Deps: []*debug.Module{{Path: "gvisor.dev/gvisor", Version: "v0.0.0-20260905035102-160fafc42237"}}}
	for i := 0; i+1 < len(settings); i += 2 {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
	}
	return bi
}

const rev = "b07822d4c1e2aa9f00112233445566778899aabb"

// Without -ldflags the toolchain's stamp says which commit this is, and
// whether the checkout had changes; -ldflags wins over it.
func TestFromBuildInfo(t *testing.T) {
	for _, c := range []struct {
		name             string
		bi               *debug.BuildInfo
		ldVer, ldCommit  string
		version, short   string
		modified         bool
		commitTimePrefix string
	}{
		{name: "checkout", bi: stamped("v0.0.0-20261201222547-b07822d4c1e2+dirty", "vcs", "git", "vcs.revision", rev, "vcs.time", "2026-12-01T22:25:47Z", "vcs.modified", "true"),
			version: "v0.0.0-20261201222547-b07822d4c1e2+dirty", short: "b07822d4c1e2+dirty", modified: true, commitTimePrefix: "2026-12-01"},
		{name: "clean tag", bi: stamped("v1.2.3", "vcs.revision", rev, "vcs.modified", "false"), version: "v1.2.3", short: "b07822d4c1e2"},
		{name: "no vcs", bi: stamped("(devel)"), version: "dev", short: "unknown"},
		{name: "no build info", version: "dev", short: "unknown"},
		{name: "ldflags", bi: stamped("(devel)", "vcs.revision", rev, "vcs.modified", "true"), ldVer: "1.0.0", ldCommit: "abc123", version: "1.0.0", short: "abc123"},
		{name: "embedded", bi: &debug.BuildInfo{Main: debug.Module{Path: "example.com/vmm", Version: "v9.0.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "ffff"}},
			Deps:     []*debug.Module{{Path: Module, Version: "v0.4.0"}}}, version: "v0.4.0", short: "unknown"},
	} {
		in := fromBuildInfo(c.bi, c.ldVer, c.ldCommit)
		if in.Version != c.version || in.ShortCommit() != c.short || in.Modified != c.modified || !strings.HasPrefix(in.CommitTime, c.commitTimePrefix) {
			t.Errorf("%s: version %q commit %q modified %v time %q, want %q %q %v %q...", c.name, in.Version, in.ShortCommit(), in.Modified, in.CommitTime, c.version, c.short, c.modified, c.commitTimePrefix)
		}
		if in.GoVersion == "" || in.Platform == "" {
			t.Errorf("%s: no Go version or platform: %+v", c.name, in)
		}
	}
}

func TestString(t *testing.T) {
	s := fromBuildInfo(stamped("v1.2.3", "vcs.revision", rev, "vcs.modified", "true"), "", "").String()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) != 4 || lines[0] != "slipway v1.2.3" || lines[1] != "commit:   "+rev+" (modified)" ||
		lines[2] != "go:       go1.26.8 "+fromBuildInfo(nil, "", "").Platform ||
		lines[3] != "netstack: gVisor v0.0.0-20260905035102-160fafc42237" {
		t.Errorf("String() =\n%s", s)
	}
}

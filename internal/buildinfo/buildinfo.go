// Package buildinfo says which slipway this is: its version, the commit
// it was built from and the Go toolchain that built it. A release build
// sets the version and commit with
//
//	-ldflags "-X github.com/slipway-net/slipway/internal/buildinfo.version=V -X github.com/slipway-net/slipway/internal/buildinfo.commit=C"
//
// and any other build takes them from what the Go toolchain stamped into
// the binary (runtime/debug.ReadBuildInfo): the module version (a tag or a
// pseudo-version with the commit, for builds in a checkout) and the VCS
// settings vcs.revision, vcs.time and vcs.modified.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at link time (see the package comment); empty otherwise.
var (
	version string
	commit  string
)

// Module is slipway's module path: a program that embeds slipway's
// packages has it among its dependencies rather than as its main module.
const Module = "github.com/slipway-net/slipway"

// Info describes one build.
type Info struct {
	// Version is the link-time version, else the module version the
	// toolchain stamped ("v1.2.3", a pseudo-version for a checkout's
	// build), else "dev".
	Version string
	// Commit is the link-time commit, else vcs.revision; empty when the
	// build had neither (built outside a checkout, or -buildvcs=false).
	Commit string
	// CommitTime is vcs.time (RFC 3339), if stamped.
	CommitTime string
	// Modified: the checkout had uncommitted changes (vcs.modified).
	Modified bool
	// GoVersion is the toolchain's, e.g. "go1.26.8".
	GoVersion string
	// Platform is GOOS/GOARCH.
	Platform string
	// Deps are the versions of the modules linked in, by path.
	Deps map[string]string
}

// Read returns this binary's build information.
func Read() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, version, commit)
}

// fromBuildInfo merges the link-time values over what bi says.
func fromBuildInfo(bi *debug.BuildInfo, ldVersion, ldCommit string) Info {
	in := Info{GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Deps: map[string]string{}}
	stamped := ""
	if bi != nil {
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		for _, d := range bi.Deps {
			v := d.Version
			if d.Replace != nil {
				v = d.Replace.Version
			}
			in.Deps[d.Path] = v
		}
		if bi.Main.Path == Module {
			stamped = bi.Main.Version
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					in.Commit = s.Value
				case "vcs.time":
					in.CommitTime = s.Value
				case "vcs.modified":
					in.Modified = s.Value == "true"
				}
			}
		} else {
			// Embedded in another program: slipway's version is the
			// one its go.mod required; the commit is that program's.
			stamped = in.Deps[Module]
		}
	}
	switch {
	case ldVersion != "":
		in.Version = ldVersion
	case stamped != "" && stamped != "(devel)":
		in.Version = stamped
	default:
		in.Version = "dev"
	}
	if ldCommit != "" {
		in.Commit, in.CommitTime, in.Modified = ldCommit, "", false
	}
	return in
}

// ShortCommit is the commit's first 12 hex digits, with "+dirty" when the
// checkout was modified; "unknown" without a commit.
func (in Info) ShortCommit() string {
	c := in.Commit
	if c == "" {
		return "unknown"
	}
	if len(c) > 12 {
		c = c[:12]
	}
	if in.Modified {
		c += "+dirty"
	}
	return c
}

// String is what `slipway version` prints: the version alone on the first
// line (for scripts), then one line each for the commit, the toolchain and
// the network stack.
func (in Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "slipway %s\n", in.Version)
	commit := "unknown (built without version control information)"
	if in.Commit != "" {
		commit = in.Commit
		if in.Modified {
			commit += " (modified)"
		}
		if in.CommitTime != "" {
			commit += ", " + in.CommitTime
		}
	}
	fmt.Fprintf(&b, "commit:   %s\n", commit)
	fmt.Fprintf(&b, "go:       %s %s\n", in.GoVersion, in.Platform)
	gv := in.Deps["gvisor.dev/gvisor"]
	if gv == "" {
		gv = "unknown"
	}
	fmt.Fprintf(&b, "netstack: gVisor %s\n", gv)
	return b.String()
}

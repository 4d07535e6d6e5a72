package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// engineEnv marks the re-executed engine; its value is unused.
const engineEnv = "_SLIPWAY_ENGINE"

// IsEngine reports whether this process is a sandboxed engine started by
// Command.
func IsEngine() bool { return os.Getenv(engineEnv) != "" }

// nobody is the host uid and gid a root launcher's engine runs as, as
// passt does: even out of its namespaces it could read no root file and
// signal no root process.
const nobody = 65534

// Command returns the command that starts the engine: this binary again,
// born in new user, mount, IPC, UTS and PID namespaces (a Go program,
// being multithreaded, cannot unshare a user namespace itself), with
// files as fds 3, 4, .... It is root in its user namespace, mapped to
// the launcher's uid (or to nobody when the launcher is root), which
// gives it the capabilities to build its root and then drop them all.
// It dies with the thread that starts it: the caller must start it from
// a goroutine locked to its thread that outlives it.
//
// Without namespaces (where they are refused: NamespacesRefused) the
// engine is the same binary with the same descriptors, in the host's
// namespaces, confined by the layers that need none.
//
// strict adds an empty network namespace: the engine then reaches the
// host's network only through descriptors the launcher passes it.
// keepUID, if set, is why a root launcher's engine stays root on the
// host (HostUID).
func Command(files []*os.File, namespaces, strict bool, keepUID string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("sandbox: find own executable: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Args = []string{"slipway-engine"}
	cmd.Env = append(os.Environ(), engineEnv+"=1")
	cmd.ExtraFiles = files
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stderr, os.Stderr
	uid, gid := os.Geteuid(), os.Getegid()
	if h, _ := HostUID(keepUID); h == nobody && uid == 0 {
		uid, gid = nobody, nobody
	}
	if !namespaces {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if uid != os.Geteuid() {
			cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
		}
		return cmd, nil
	}
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC |
		syscall.CLONE_NEWUTS | syscall.CLONE_NEWPID)
	if strict {
		flags |= syscall.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 flags,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
		GidMappingsEnableSetgroups: false,
		// Become the mapped uid 0: a root launcher's child would keep
		// the host's uid 0, unmapped inside, and have no capabilities
		// in its namespaces to build its root with.
		Credential: &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
		Pdeathsig:  syscall.SIGKILL,
		// Its own process group: a terminal's ^C reaches the launcher,
		// which stops the engine in order.
		Setpgid: true,
	}
	return cmd, nil
}

// HostUID is the host uid Command's engine runs as, and why. keepUID,
// if set, is why a root launcher's engine stays root.
func HostUID(keepUID string) (int, string) {
	uid := os.Geteuid()
	if uid != 0 {
		return uid, "the launcher's"
	}
	if keepUID != "" {
		return 0, "root: " + keepUID
	}
	if !idMapped(nobody, "/proc/self/uid_map") || !idMapped(nobody, "/proc/self/gid_map") {
		// Root of a user namespace with only itself mapped (rootless
		// podman without subordinate ids).
		return 0, "root: nobody has no uid in this user namespace"
	}
	self, err := os.Executable()
	if err == nil && executableByOthers(self) {
		return nobody, "nobody, not the launcher's root"
	}
	return 0, "root: nobody could not execute " + self + " (a directory or the file is not executable by others)"
}

// idMapped reports whether id is mapped in this process's user
// namespace, by its uid_map or gid_map.
func idMapped(id int, mapFile string) bool {
	b, err := os.ReadFile(mapFile)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		var inside, outside, n int
		if _, err := fmt.Sscan(line, &inside, &outside, &n); err == nil && id >= inside && id < inside+n {
			return true
		}
	}
	return false
}

// executableByOthers reports whether a uid with no other right than
// "others" can execute path: as nobody, the engine re-executes it.
func executableByOthers(path string) bool {
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if p == "/" || p == "." {
			return true
		}
	}
}

// NamespacesRefused reports whether starting a Command failed because
// the host does not let this user create the namespaces (unprivileged
// user namespaces off, an AppArmor restriction, the namespace limit).
func NamespacesRefused(err error) bool {
	for _, e := range []error{syscall.EPERM, syscall.EINVAL, syscall.ENOSPC, syscall.EUSERS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Package systemd speaks the two small protocols a service manager uses
// with its daemons: socket activation (the manager opens the listening
// sockets and passes them as descriptors 3, 4, ... with LISTEN_FDS,
// LISTEN_PID and LISTEN_FDNAMES) and readiness notification (the daemon
// sends "READY=1", "STOPPING=1", "WATCHDOG=1" datagrams to the unix socket
// NOTIFY_SOCKET names). Both are described in systemd's sd_listen_fds(3)
// and sd_notify(3) manual pages; neither needs libsystemd.
package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Environment variables of the two protocols.
const (
	envListenPID   = "LISTEN_PID"
	envListenFDs   = "LISTEN_FDS"
	envListenNames = "LISTEN_FDNAMES"
	envNotify      = "NOTIFY_SOCKET"
	envWatchdogUS  = "WATCHDOG_USEC"
	envWatchdogPID = "WATCHDOG_PID"
)

// listenFDsStart is the first passed descriptor (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// maxListenFDs bounds what a (broken) manager can make this process
// adopt: far more sockets than a unit lists.
const maxListenFDs = 256

// Socket is a descriptor the service manager passed, with its name
// (FileDescriptorName= of the socket unit; "unknown" when none was given).
type Socket struct {
	File *os.File
	Name string
}

// TakeListeners returns the sockets passed to this process and removes
// the variables that announced them from the environment, so that no child
// takes them for its own. It returns none when the variables are absent
// or LISTEN_PID names another process (they were meant for a parent).
// The descriptors are made close-on-exec: a child gets one only when it is
// handed over explicitly.
func TakeListeners() ([]Socket, error) {
	pid, fds, names := os.Getenv(envListenPID), os.Getenv(envListenFDs), os.Getenv(envListenNames)
	os.Unsetenv(envListenPID)
	os.Unsetenv(envListenFDs)
	os.Unsetenv(envListenNames)
	return parseListeners(pid, fds, names, os.Getpid())
}

func parseListeners(pid, fds, names string, self int) ([]Socket, error) {
	if fds == "" {
		return nil, nil
	}
	p, err := strconv.Atoi(pid)
	if err != nil {
		return nil, fmt.Errorf("socket activation: %s=%q is not a process id", envListenPID, pid)
	}
	if p != self {
		return nil, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 || n > maxListenFDs {
		return nil, fmt.Errorf("socket activation: %s=%q: want 0..%d descriptors", envListenFDs, fds, maxListenFDs)
	}
	var nameList []string
	if names != "" {
		nameList = strings.Split(names, ":")
	}
	var out []Socket
	for i := range n {
		fd := listenFDsStart + i
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			closeSockets(out)
			return nil, fmt.Errorf("socket activation: descriptor %d of %s=%d: %w", fd, envListenFDs, n, err)
		}
		syscall.CloseOnExec(fd)
		name := "unknown"
		if i < len(nameList) && nameList[i] != "" {
			name = nameList[i]
		}
		out = append(out, Socket{File: os.NewFile(uintptr(fd), "listen-fd-"+name), Name: name})
	}
	return out, nil
}

func closeSockets(ss []Socket) {
	for _, s := range ss {
		s.File.Close()
	}
}

// Notifier sends state changes to the service manager. The zero value
// and nil send nothing: a process not started by one has no socket.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

// TakeNotifier reads NOTIFY_SOCKET and the watchdog's WATCHDOG_USEC and
// WATCHDOG_PID, and removes them from the environment (they are this
// process's, not its children's). It returns nil when there is no socket.
func TakeNotifier() (*Notifier, error) {
	sock, us, wpid := os.Getenv(envNotify), os.Getenv(envWatchdogUS), os.Getenv(envWatchdogPID)
	for _, v := range []string{envNotify, envWatchdogUS, envWatchdogPID} {
		os.Unsetenv(v)
	}
	return parseNotifier(sock, us, wpid, os.Getpid())
}

func parseNotifier(sock, us, wpid string, self int) (*Notifier, error) {
	if sock == "" {
		return nil, nil
	}
	// An abstract socket is written with a leading '@'; on the wire its
	// name starts with a NUL byte, which net.UnixAddr writes for '@'.
	if !strings.HasPrefix(sock, "/") && !strings.HasPrefix(sock, "@") {
		return nil, fmt.Errorf("%s=%q: want an absolute path or an @abstract name", envNotify, sock)
	}
	n := &Notifier{addr: &net.UnixAddr{Name: sock, Net: "unixgram"}}
	if us != "" && (wpid == "" || wpid == strconv.Itoa(self)) {
		v, err := strconv.ParseUint(us, 10, 63)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("%s=%q: want a positive number of microseconds", envWatchdogUS, us)
		}
		n.watchdog = time.Duration(v) * time.Microsecond
	}
	return n, nil
}

// Watchdog is how often the manager wants WATCHDOG=1 at the latest
// (WatchdogSec=); 0 when it wants none.
func (n *Notifier) Watchdog() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Send sends one datagram of state lines, e.g. "READY=1". Each send is a
// socket of its own, as sd_notify does: the manager tells senders apart
// by their credentials, not by a connection.
func (n *Notifier) Send(state ...string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	if len(state) == 0 {
		return errors.New("notify: no state to send")
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("notify %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	// Bounded: the manager's socket does not block a daemon for long.
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(strings.Join(state, "\n"))); err != nil {
		return fmt.Errorf("notify %s: %w", n.addr.Name, err)
	}
	return nil
}

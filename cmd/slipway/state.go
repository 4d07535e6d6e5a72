package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/slipway-net/slipway/internal/broker"
	"github.com/slipway-net/slipway/internal/statefile"
	"github.com/slipway-net/slipway/network"
)

// keepState loads --state-file into n and keeps the file up to date until
// stop, through fsys (the host's file system, or the launcher's). A file
// that cannot be used is an error naming it: never a silent fresh start.
func keepState(n *network.Network, fsys statefile.FS, log *slog.Logger) (stop func(), err error) {
	path := n.Config().StateFile
	if path == "" {
		return func() {}, nil
	}
	store := statefile.New(fsys, path)
	st, ok, err := store.Load()
	if err != nil {
		return nil, fmt.Errorf("--state-file: %w", err)
	}
	if ok {
		if err := n.Restore(st); err != nil {
			return nil, fmt.Errorf("--state-file %s: %w", path, err)
		}
		log.Info("state restored", "file", path, "dhcp4_leases", len(st.DHCP4), "dhcp6_leases", len(st.DHCP6), "forwards", len(st.Forwards))
	}
	sv, err := statefile.Start(n, store, log)
	if err != nil {
		return nil, fmt.Errorf("--state-file: %w", err)
	}
	return sv.Close, nil
}

// brokerFS is the confined engine's statefile.FS: it opens no file. Its
// launcher opens the state file for Load, and a Save's temporary file is
// a buffer here whose bytes the launcher writes, atomically, at the
// rename. The launcher holds the path, fixed at start; the engine's
// names are only checked to be the one file's.
type brokerFS struct {
	c    *broker.Client
	path string

	mu      sync.Mutex
	pending map[string][]byte // closed temporary files, by name
}

func newBrokerFS(c *broker.Client, path string) *brokerFS {
	return &brokerFS{c: c, path: path, pending: map[string][]byte{}}
}

var errOtherFile = errors.New("the sandboxed engine keeps only its --state-file")

func (b *brokerFS) Open(name string) (io.ReadCloser, error) {
	if name != b.path {
		return nil, errOtherFile
	}
	return b.c.StateLoad()
}

func (b *brokerFS) CreateTemp(name string) (statefile.File, error) {
	if name != b.path {
		return nil, errOtherFile
	}
	return &memFile{fs: b, name: name + ".tmp"}, nil
}

func (b *brokerFS) Rename(oldpath, newpath string) error {
	b.mu.Lock()
	data, ok := b.pending[oldpath]
	delete(b.pending, oldpath)
	b.mu.Unlock()
	if !ok || newpath != b.path {
		return errOtherFile
	}
	return b.c.StateSave(data)
}

func (b *brokerFS) Remove(name string) error {
	b.mu.Lock()
	delete(b.pending, name)
	b.mu.Unlock()
	return nil
}

// SyncDir: the launcher synced the directory with its rename.
func (b *brokerFS) SyncDir(string) error { return nil }

// memFile is a temporary state file in memory, bounded as the launcher
// bounds what it writes.
type memFile struct {
	fs   *brokerFS
	name string
	buf  bytes.Buffer
}

func (m *memFile) Write(p []byte) (int, error) {
	if m.buf.Len()+len(p) > broker.MaxState {
		return 0, fmt.Errorf("state larger than %d bytes", broker.MaxState)
	}
	return m.buf.Write(p)
}

func (m *memFile) Name() string { return m.name }
func (m *memFile) Sync() error  { return nil }

func (m *memFile) Close() error {
	m.fs.mu.Lock()
	m.fs.pending[m.name] = m.buf.Bytes()
	m.fs.mu.Unlock()
	return nil
}

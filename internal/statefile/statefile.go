// Package statefile keeps a network's State in a file (--state-file):
// loaded at start, written again whenever it changes, atomically (a
// temporary file beside it, fsync, rename over it, fsync of the
// directory), so a crash leaves the old file or the new one, never half
// of one. All host file access goes through FS, so a sandboxed engine can
// be handed one by its launcher.
package statefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/slipway-net/slipway/network"
)

// FS is the host file access a Store needs.
type FS interface {
	// Open opens name for reading.
	Open(name string) (io.ReadCloser, error)
	// CreateTemp creates a new file, mode 0600, beside name.
	CreateTemp(name string) (File, error)
	// Rename replaces newpath by oldpath.
	Rename(oldpath, newpath string) error
	// Remove removes name.
	Remove(name string) error
	// SyncDir makes the directory's entries (a rename) durable.
	SyncDir(dir string) error
}

// File is a file being written.
type File interface {
	io.Writer
	Name() string
	Sync() error
	Close() error
}

// OS is FS on the host's file system.
type OS struct{}

func (OS) Open(name string) (io.ReadCloser, error) { return os.Open(name) }

func (OS) CreateTemp(name string) (File, error) {
	return os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
}

func (OS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
func (OS) Remove(name string) error             { return os.Remove(name) }

func (OS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Store is one state file.
type Store struct {
	fs   FS
	path string
}

// New returns the store of the file at path.
func New(fsys FS, path string) *Store { return &Store{fs: fsys, path: path} }

// Load reads the file. A file that does not exist is no error: ok is
// false, and the network starts empty. One that is corrupt or of a newer
// version is an error naming the file; it is left as it is.
func (s *Store) Load() (st network.State, ok bool, err error) {
	f, err := s.fs.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return network.State{}, false, nil
	}
	if err != nil {
		return network.State{}, false, fmt.Errorf("state file %s: %w", s.path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, network.MaxStateBytes+1))
	if err != nil {
		return network.State{}, false, fmt.Errorf("state file %s: %w", s.path, err)
	}
	if st, err = network.DecodeState(b); err != nil {
		return network.State{}, false, fmt.Errorf("state file %s: %w (move it away to start without it)", s.path, err)
	}
	return st, true, nil
}

// Save writes st in place of the file, atomically.
func (s *Store) Save(st network.State) error {
	b, err := st.Encode()
	if err != nil {
		return err
	}
	if err := WriteFile(s.fs, s.path, b); err != nil {
		return fmt.Errorf("state file %s: %w", s.path, err)
	}
	return nil
}

// WriteFile puts b in place of the file at path, atomically: a
// temporary file beside it, fsync, rename over it, fsync of the
// directory. A sandboxed engine's launcher writes the engine's encoded
// state with it. Its errors leave the path to the caller to name.
func WriteFile(fsys FS, path string, b []byte) error {
	f, err := fsys.CreateTemp(path)
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, path)
	}
	if err != nil {
		fsys.Remove(tmp)
		return err
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// Saver writes a network's state to a Store whenever it changes.
//
// State: one goroutine (run) owns the writes; Kick only marks a save due
// (a buffered channel of one, so kicks while a write runs coalesce into
// one more write) and never blocks the network's goroutines. Close stops
// run after one last save.
type Saver struct {
	n     *network.Network
	store *Store
	log   *slog.Logger
	kick  chan struct{}
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
}

// Start saves n's state to store now and on every change, until Close.
func Start(n *network.Network, store *Store, log *slog.Logger) (*Saver, error) {
	if err := store.Save(n.State()); err != nil {
		return nil, err
	}
	sv := &Saver{n: n, store: store, log: log, kick: make(chan struct{}, 1), done: make(chan struct{})}
	n.OnStateChange(sv.Kick)
	sv.wg.Add(1)
	go sv.run()
	return sv, nil
}

// Kick marks a save due.
func (sv *Saver) Kick() {
	select {
	case sv.kick <- struct{}{}:
	default:
	}
}

func (sv *Saver) run() {
	defer sv.wg.Done()
	for {
		select {
		case <-sv.kick:
			sv.save()
		case <-sv.done:
			return
		}
	}
}

func (sv *Saver) save() {
	if err := sv.store.Save(sv.n.State()); err != nil {
		// The network goes on; the next change tries again.
		sv.log.Error("saving state", "err", err)
	}
}

// Close stops saving, after a last save of the state as it is now.
func (sv *Saver) Close() {
	sv.once.Do(func() {
		sv.n.OnStateChange(nil)
		close(sv.done)
		sv.wg.Wait()
		sv.save()
	})
}

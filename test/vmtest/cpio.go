package vmtest

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// writeNewc writes files as a cpio archive in the "newc" (SVR4, no CRC)
// format, the one the Linux initramfs unpacker reads. Keys are absolute
// guest paths; parent directories are created as needed. Files are made
// executable so a test can ship helper scripts without a chmod step.
//
// The kernel unpacks concatenated archives in order, later entries
// overwriting earlier ones, which is how a per-run archive lands on top of
// the cached base initramfs.
func writeNewc(w io.Writer, files map[string][]byte, mtime int64) error {
	names := make([]string, 0, len(files))
	dirs := map[string]bool{}
	for name := range files {
		if err := checkGuestPath(name); err != nil {
			return err
		}
		names = append(names, name)
		for d := path.Dir(name); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	dirNames := make([]string, 0, len(dirs))
	for d := range dirs {
		if _, isFile := files[d]; isFile {
			return fmt.Errorf("guest path %s is both a file and a directory", d)
		}
		dirNames = append(dirNames, d)
	}
	// Sorted order puts every parent before its children, which the
	// unpacker needs, and keeps the archive reproducible.
	sort.Strings(dirNames)
	sort.Strings(names)

	cw := &newcWriter{w: w, mtime: mtime}
	for _, d := range dirNames {
		cw.entry(d, 0o040755, 2, nil)
	}
	for _, name := range names {
		cw.entry(name, 0o100755, 1, files[name])
	}
	cw.entry("TRAILER!!!", 0, 1, nil)
	if cw.err != nil {
		return fmt.Errorf("writing cpio archive: %w", cw.err)
	}
	return nil
}

// checkGuestPath accepts only clean absolute paths below the root, so a
// typo cannot silently land a file somewhere else in the guest.
func checkGuestPath(name string) error {
	if !strings.HasPrefix(name, "/") || name == "/" || path.Clean(name) != name {
		return fmt.Errorf("guest path %q must be a clean absolute file path", name)
	}
	return nil
}

// newcWriter emits newc entries and remembers the first write error, so
// callers check once at the end.
type newcWriter struct {
	w     io.Writer
	mtime int64
	ino   uint32
	err   error
}

func (c *newcWriter) entry(name string, mode, nlink uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	// Archive names are relative to the root, as cpio -o writes them.
	rel := strings.TrimPrefix(name, "/")
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, uint32(c.mtime), len(data),
		0, 0, 0, 0, len(rel)+1, 0)
	// The header plus the NUL-terminated name, then the data, are each
	// padded to a multiple of four bytes.
	c.write([]byte(hdr + rel + "\x00"))
	c.pad(len(hdr) + len(rel) + 1)
	c.write(data)
	c.pad(len(data))
}

func (c *newcWriter) write(b []byte) {
	if c.err == nil && len(b) > 0 {
		_, c.err = c.w.Write(b)
	}
}

func (c *newcWriter) pad(n int) {
	c.write(make([]byte, (4-n%4)%4))
}

// Package target defines one interface for a tree of files (an FTP folder, a
// local folder, later SFTP) so that the mount and the one-shot commands share
// every higher layer. Paths are slash-separated and relative to the target's
// root; "" names the root itself.
package target

import (
	"context"
	"io"
	"os"
	"time"
)

// Entry describes one file or directory as the target reports it.
type Entry struct {
	Name    string    // base name, validated by ValidName
	IsDir   bool      // a directory; otherwise a regular file
	Size    int64     // bytes; 0 for directories
	ModTime time.Time // UTC, as precise as Precision says
	// Precision is how exact ModTime is: time.Second for MLSD and local
	// folders (or finer), time.Minute or 24h for LIST lines that omit
	// seconds or the time of day. Compare times only at this precision.
	Precision time.Duration
	Mode      os.FileMode // permission bits where the target reports them, else 0
}

// Features reports what a target can do; callers adapt instead of failing.
type Features struct {
	MLSD           bool          // machine-readable listings (exact names, second precision)
	MFMT           bool          // set modification time with MFMT
	MDTMWrite      bool          // set modification time with vsftpd's "MDTM time path"
	REST           bool          // resume a read at an offset
	APPE           bool          // append to a file
	UTF8           bool          // names are UTF-8
	TLS            bool          // the control and data channels are encrypted
	Chmod          bool          // permission bits can be set
	MtimePrecision time.Duration // finest precision of listed times
	// StagedWrites: a Write with WriteOptions.Staged costs less than an
	// atomic one, and listings give exact sizes to check it with.
	StagedWrites bool
}

// CanSetModTime reports whether SetModTime can work on this target.
func (f Features) CanSetModTime() bool { return f.MFMT || f.MDTMWrite }

// WriteOptions tunes Write.
type WriteOptions struct {
	// ModTime, if not zero, is set on the file after it is in place. A target
	// that cannot set times ignores it; the returned Entry tells what stuck.
	ModTime time.Time
	// Size, if not negative, is the number of bytes the reader will yield;
	// the write fails if it yields a different number (a truncated source
	// must never land under the final name).
	Size int64
	// Staged says that the caller keeps path out of sight until it has
	// checked it: the folder holding it has a temporary name, renamed into
	// place only once a listing shows every file in it complete. A target
	// whose Features have StagedWrites may then store straight under path,
	// without the temporary name, check and rename of an atomic write; the
	// Entry it returns describes what was sent, not what the target holds.
	// Other targets ignore it.
	Staged bool
}

// Target is a tree of files. Implementations are safe for concurrent use.
//
// Every method returns errors that match one of the sentinel errors of this
// package with errors.Is where the cause is known, so that callers never parse
// server replies.
type Target interface {
	// Stat describes one entry. The root ("") is always a directory.
	Stat(ctx context.Context, path string) (Entry, error)
	// List returns the entries of a directory, without "." and "..". Names a
	// target cannot represent safely (see ValidName) are left out and logged.
	List(ctx context.Context, dir string) ([]Entry, error)
	// Open streams a file from offset. length < 0 means to the end; otherwise
	// at most length bytes are read. Closing early aborts the transfer.
	Open(ctx context.Context, path string, offset, length int64) (io.ReadCloser, error)
	// Write stores the reader's content under path atomically: readers of
	// path see either the old file or the whole new one, never a part.
	// It returns the entry as the target reports it afterwards.
	Write(ctx context.Context, path string, r io.Reader, opts WriteOptions) (Entry, error)
	// Append adds the reader's content at the end of an existing file.
	Append(ctx context.Context, path string, r io.Reader) (Entry, error)
	// Rename moves from to to, replacing a file at to.
	Rename(ctx context.Context, from, to string) error
	// Remove deletes a file.
	Remove(ctx context.Context, path string) error
	// Mkdir creates one directory; its parent must exist.
	Mkdir(ctx context.Context, path string) error
	// Rmdir removes an empty directory.
	Rmdir(ctx context.Context, path string) error
	// SetModTime sets a file's modification time (ErrUnsupported where the
	// target cannot).
	SetModTime(ctx context.Context, path string, t time.Time) error
	// Features reports what the target supports.
	Features() Features
	// String names the target for humans, without credentials.
	String() string
	// ID is a stable identifier of the tree (host and root path), used to key
	// stored state. It holds no credentials.
	ID() string
	// Close releases connections.
	Close() error
}

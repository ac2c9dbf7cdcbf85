package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
)

// Key layout. Every key starts with a one-byte kind so that prefixes never
// overlap; integers are big-endian so that keys sort numerically.
//
//	e<ino>             Entry record
//	c<parent><name>    child index: the ino of name in parent
//	b<ino><block>      one block of content
//	s                  the inode sequence
//	j<seq>             one write-back journal operation (journal.go)
//	u<path>            upload notes of one server path (uploadnote.go)
//	p<ino>             a truncated file's committed content not yet renamed into place (truncate.go)
const (
	prefixEntry   = 'e'
	prefixChild   = 'c'
	prefixBlock   = 'b'
	prefixJournal = 'j'
	keySequence   = "s"
)

func entryKey(ino uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixEntry
	binary.BigEndian.PutUint64(k[1:], ino)
	return k
}

func childPrefix(parent uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixChild
	binary.BigEndian.PutUint64(k[1:], parent)
	return k
}

func childKey(parent uint64, name string) []byte {
	return append(childPrefix(parent), name...)
}

func blockPrefix(ino uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixBlock
	binary.BigEndian.PutUint64(k[1:], ino)
	return k
}

func blockKey(ino uint64, idx int64) []byte {
	return binary.BigEndian.AppendUint64(blockPrefix(ino), uint64(idx))
}

// parseBlockKey is the inverse of blockKey.
func parseBlockKey(k []byte) (ino uint64, idx int64, ok bool) {
	if len(k) != 17 || k[0] != prefixBlock {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[1:9]), int64(binary.BigEndian.Uint64(k[9:])), true
}

// Entry is one file or directory of the tree. For an entry served from the
// server (Local false) Size and ModTime are the server's as last listed; for
// a file whose content lives in the cache's local file (Local true) they are
// the local file's, and the Synced fields keep what both sides looked like
// at the last upload or download, for the conflict check. The record is
// versioned and decoders accept records with fewer fields.
type Entry struct {
	Ino    uint64 // stable for as long as the entry exists, across remounts
	Parent uint64 // 0 for the root
	Name   string // "" for the root
	IsDir  bool

	// Remote state, as the target's listing reported it.
	Size      int64
	ModTime   time.Time
	Precision time.Duration // how exact ModTime is; compare at this precision
	Mode      os.FileMode   // permission bits, 0 if the target gives none
	// Seen is when the server's state (Size and ModTime, or SyncRemote for
	// a local file) was recorded or last checked exactly: a listing too
	// coarse to tell a change made soon after it asks for the exact time.
	Seen time.Time

	// ListedAt is, for a directory, when its children were last listed from
	// the target; zero if never.
	ListedAt time.Time
	// Gen counts remote content changes of a file. Blocks are only stored
	// for the current Gen, so a fetch that raced with a change is refused.
	Gen uint64

	// Local state (record version 2).

	// Local: the content is complete in the local file data/<ino> of the
	// cache directory, not in blocks; it is never evicted.
	Local bool
	// Dirty: changed locally since the last sync; an upload is queued.
	Dirty bool
	// OnServer: the server has, or the queued journal operations will give
	// it, an entry at this entry's place that this entry owns (its content
	// may be older). A file never uploaded has it false, so that renaming or
	// deleting it sends nothing.
	OnServer bool
	// Upload is the sequence number of this file's queued upload that has
	// not started yet (0: none). Later changes move it to the journal's end
	// instead of adding another, so a file is uploaded once, under its
	// final name.
	Upload uint64
	// LocalGen counts committed local content changes; an upload remembers
	// which one it sent, so a change during the upload keeps Dirty.
	LocalGen uint64
	// Synced is set once both sides were known equal; SyncLocal and
	// SyncRemote are what each side looked like then.
	Synced     bool
	SyncLocal  SideState
	SyncRemote SideState
	// Grown: since the last sync the file only grew (nothing below
	// SyncLocal.Size was written or truncated), so its upload may append
	// the new tail (--append-uploads).
	Grown bool
}

// SideState is one side's size and mtime at the last sync.
type SideState struct {
	Size      int64
	ModTime   time.Time
	Precision time.Duration
}

// Blocks is the number of content blocks the file's size spans.
func (e Entry) Blocks() int64 { return (e.Size + BlockSize - 1) / BlockSize }

// Record versions: 1 held the remote state only (every such entry is on
// the server); 2 adds the local state.
const (
	recordVersion1 = 1
	recordVersion  = 2
)

var errShortRecord = errors.New("short entry record")

func (e Entry) marshal() []byte {
	b := make([]byte, 0, 64+len(e.Name))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, e.Parent)
	b = binary.AppendUvarint(b, uint64(len(e.Name)))
	b = append(b, e.Name...)
	var flags byte
	for i, f := range []bool{e.IsDir, e.Local, e.Dirty, e.OnServer, e.Synced, e.Grown} {
		if f {
			flags |= 1 << i
		}
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, e.Size)
	b = appendTime(b, e.ModTime)
	b = binary.AppendVarint(b, int64(e.Precision))
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = appendTime(b, e.Seen)
	b = appendTime(b, e.ListedAt)
	b = binary.AppendUvarint(b, e.Gen)
	b = binary.AppendUvarint(b, e.Upload)
	b = binary.AppendUvarint(b, e.LocalGen)
	for _, s := range []SideState{e.SyncLocal, e.SyncRemote} {
		b = binary.AppendVarint(b, s.Size)
		b = appendTime(b, s.ModTime)
		b = binary.AppendVarint(b, int64(s.Precision))
	}
	return b
}

// appendTime stores nanoseconds since the epoch, 0 for the zero time.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

// recordReader decodes fields in order and remembers the first error.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = errShortRecord
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *recordReader) time() time.Time {
	ns := r.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func unmarshalEntry(ino uint64, b []byte) (Entry, error) {
	if len(b) == 0 || b[0] != recordVersion && b[0] != recordVersion1 {
		return Entry{}, fmt.Errorf("entry %d: unknown record version", ino)
	}
	r := &recordReader{b: b[1:]}
	e := Entry{Ino: ino}
	e.Parent = r.uvarint()
	e.Name = string(r.bytes(r.uvarint()))
	var flags byte
	if f := r.bytes(1); len(f) == 1 {
		flags = f[0]
	}
	e.IsDir = flags&1 != 0
	e.Size = r.varint()
	e.ModTime = r.time()
	e.Precision = time.Duration(r.varint())
	e.Mode = os.FileMode(r.uvarint())
	e.Seen = r.time()
	e.ListedAt = r.time()
	e.Gen = r.uvarint()
	if b[0] == recordVersion1 {
		e.OnServer = true
	} else {
		e.Local, e.Dirty, e.OnServer, e.Synced, e.Grown = flags&2 != 0, flags&4 != 0, flags&8 != 0, flags&16 != 0, flags&32 != 0
		e.Upload = r.uvarint()
		e.LocalGen = r.uvarint()
		for _, s := range []*SideState{&e.SyncLocal, &e.SyncRemote} {
			s.Size = r.varint()
			s.ModTime = r.time()
			s.Precision = time.Duration(r.varint())
		}
	}
	if r.err != nil {
		return Entry{}, fmt.Errorf("entry %d: %w", ino, r.err)
	}
	return e, nil
}

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
const (
	prefixEntry = 'e'
	prefixChild = 'c'
	prefixBlock = 'b'
	keySequence = "s"
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

// Entry is one file or directory of the tree with its remote state as last
// listed. Later issues add the local and last-synced state beside it; the
// record is versioned and decoders accept records with fewer fields.
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
	Seen      time.Time     // when a listing of the parent last reported it

	// ListedAt is, for a directory, when its children were last listed from
	// the target; zero if never.
	ListedAt time.Time
	// Gen counts remote content changes of a file. Blocks are only stored
	// for the current Gen, so a fetch that raced with a change is refused.
	Gen uint64
}

// Blocks is the number of content blocks the file's size spans.
func (e Entry) Blocks() int64 { return (e.Size + BlockSize - 1) / BlockSize }

const recordVersion = 1

var errShortRecord = errors.New("short entry record")

func (e Entry) marshal() []byte {
	b := make([]byte, 0, 64+len(e.Name))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, e.Parent)
	b = binary.AppendUvarint(b, uint64(len(e.Name)))
	b = append(b, e.Name...)
	var flags byte
	if e.IsDir {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, e.Size)
	b = appendTime(b, e.ModTime)
	b = binary.AppendVarint(b, int64(e.Precision))
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = appendTime(b, e.Seen)
	b = appendTime(b, e.ListedAt)
	b = binary.AppendUvarint(b, e.Gen)
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
	if len(b) == 0 || b[0] != recordVersion {
		return Entry{}, fmt.Errorf("entry %d: unknown record version", ino)
	}
	r := &recordReader{b: b[1:]}
	e := Entry{Ino: ino}
	e.Parent = r.uvarint()
	e.Name = string(r.bytes(r.uvarint()))
	flags := r.bytes(1)
	e.IsDir = len(flags) == 1 && flags[0]&1 != 0
	e.Size = r.varint()
	e.ModTime = r.time()
	e.Precision = time.Duration(r.varint())
	e.Mode = os.FileMode(r.uvarint())
	e.Seen = r.time()
	e.ListedAt = r.time()
	e.Gen = r.uvarint()
	if r.err != nil {
		return Entry{}, fmt.Errorf("entry %d: %w", ino, r.err)
	}
	return e, nil
}

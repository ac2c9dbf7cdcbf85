package sync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Side is what one side looked like right after the last transfer: the
// size and mtime as that side reported them, and how precise the time was.
type Side struct {
	Size      int64
	ModTime   time.Time
	Precision time.Duration
}

// SideOf takes the recorded values from an entry as a target reported it.
func SideOf(e target.Entry) Side {
	return Side{Size: e.Size, ModTime: e.ModTime, Precision: e.Precision}
}

// Record is the last-synced state of one path.
type Record struct {
	IsDir    bool
	Local    Side
	Remote   Side
	SyncedAt time.Time // our clock when the record was taken
	// Imported marks a record read from pyftpsync's meta files: its times
	// are compared within two seconds, as pyftpsync does, until the next
	// sync replaces it with exact values.
	Imported bool
}

// NewRecord describes a pair that agrees right now.
func NewRecord(l, r target.Entry, now time.Time) Record {
	return Record{IsDir: l.IsDir, Local: SideOf(l), Remote: SideOf(r), SyncedAt: now}
}

// ErrCorruptRecord is returned for a stored record that cannot be decoded.
var ErrCorruptRecord = errors.New("corrupt sync record")

const recordVersion = 1

const (
	flagDir = 1 << iota
	flagImported
	flagLocalTime
	flagRemoteTime
	flagSyncedAt
	flagAll = flagDir | flagImported | flagLocalTime | flagRemoteTime | flagSyncedAt
)

// MarshalBinary encodes the record compactly: a version byte, a flag byte
// and seven varints. Time zero is kept apart from the Unix epoch by flags,
// because files dated 1970 exist.
func (r Record) MarshalBinary() ([]byte, error) {
	b := make([]byte, 2, 2+7*binary.MaxVarintLen64)
	b[0] = recordVersion
	var f byte
	if r.IsDir {
		f |= flagDir
	}
	if r.Imported {
		f |= flagImported
	}
	lt, lok := unixNano(r.Local.ModTime)
	rt, rok := unixNano(r.Remote.ModTime)
	st, sok := unixNano(r.SyncedAt)
	if lok {
		f |= flagLocalTime
	}
	if rok {
		f |= flagRemoteTime
	}
	if sok {
		f |= flagSyncedAt
	}
	b[1] = f
	for _, v := range []int64{r.Local.Size, lt, int64(r.Local.Precision), r.Remote.Size, rt, int64(r.Remote.Precision), st} {
		b = binary.AppendVarint(b, v)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote. Any damage (short,
// long, unknown version or flags, negative sizes) is an error, never a
// panic: the caller then treats the path as never synced.
func (r *Record) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrCorruptRecord, len(b))
	}
	if b[0] != recordVersion {
		return fmt.Errorf("%w: version %d", ErrCorruptRecord, b[0])
	}
	f := b[1]
	if f&^flagAll != 0 {
		return fmt.Errorf("%w: flags %#x", ErrCorruptRecord, f)
	}
	var v [7]int64
	rest := b[2:]
	for i := range v {
		x, n := binary.Varint(rest)
		if n <= 0 {
			return fmt.Errorf("%w: field %d unreadable", ErrCorruptRecord, i)
		}
		v[i], rest = x, rest[n:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorruptRecord, len(rest))
	}
	if v[0] < 0 || v[3] < 0 || v[2] < 0 || v[5] < 0 {
		return fmt.Errorf("%w: negative size or precision", ErrCorruptRecord)
	}
	*r = Record{
		IsDir:    f&flagDir != 0,
		Imported: f&flagImported != 0,
		Local:    Side{Size: v[0], ModTime: fromUnixNano(v[1], f&flagLocalTime != 0), Precision: time.Duration(v[2])},
		Remote:   Side{Size: v[3], ModTime: fromUnixNano(v[4], f&flagRemoteTime != 0), Precision: time.Duration(v[5])},
		SyncedAt: fromUnixNano(v[6], f&flagSyncedAt != 0),
	}
	return nil
}

func unixNano(t time.Time) (int64, bool) {
	if t.IsZero() {
		return 0, false
	}
	return t.UnixNano(), true
}

func fromUnixNano(ns int64, ok bool) time.Time {
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

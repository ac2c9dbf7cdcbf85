package sync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Intent marks a transfer that was started but whose record is not stored
// yet: which way it went and the source's size and mtime. A run killed
// after the transfer but before the record leaves both sides equal, which
// the next run sees by size and mtime, except on a server that cannot set
// mtimes: there the copy carries the upload time. The intent lets the next
// run recognise its own finished transfer instead of calling it a conflict.
type Intent struct {
	Upload bool // local to remote; otherwise remote to local
	Src    Side
}

const intentVersion = 1

// intentKey is "p" + parent + NUL + name, beside the records.
func intentKey(p string) []byte {
	dir, name := target.Split(p)
	return []byte("p" + dir + "\x00" + name)
}

func (in Intent) marshal() []byte {
	b := []byte{intentVersion, 0, 0}
	if !in.Upload {
		b[1] = 1
	}
	mt, ok := unixNano(in.Src.ModTime)
	if ok {
		b[2] = 1
	}
	for _, v := range []int64{in.Src.Size, mt, int64(in.Src.Precision)} {
		b = binary.AppendVarint(b, v)
	}
	return b
}

func (in *Intent) unmarshal(b []byte) error {
	if len(b) < 3 || b[0] != intentVersion || b[1] > 1 || b[2] > 1 {
		return fmt.Errorf("%w: bad intent header", ErrCorruptRecord)
	}
	var v [3]int64
	rest := b[3:]
	for i := range v {
		x, n := binary.Varint(rest)
		if n <= 0 {
			return fmt.Errorf("%w: intent field %d unreadable", ErrCorruptRecord, i)
		}
		v[i], rest = x, rest[n:]
	}
	if len(rest) != 0 || v[0] < 0 || v[2] < 0 {
		return fmt.Errorf("%w: bad intent values", ErrCorruptRecord)
	}
	*in = Intent{Upload: b[1] == 0, Src: Side{Size: v[0], ModTime: fromUnixNano(v[1], b[2] == 1), Precision: time.Duration(v[2])}}
	return nil
}

// PutIntent notes that a transfer of p starts. Put of p's record clears it.
func (s *Store) PutIntent(p string, in Intent) error {
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(intentKey(p), in.marshal()) }); err != nil {
		return fmt.Errorf("state store %s: note the transfer of %q: %w", s.dir, p, err)
	}
	return nil
}

// Intents returns the unfinished transfers among dir's children; damaged
// ones are left out (the path is then classified as usual).
func (s *Store) Intents(dir string) (map[string]Intent, error) {
	out := map[string]Intent{}
	prefix := []byte("p" + dir + "\x00")
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var in Intent
			err := it.Item().Value(in.unmarshal)
			if errors.Is(err, ErrCorruptRecord) {
				continue
			}
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(prefix):])] = in
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state store %s: read unfinished transfers of %q: %w", s.dir, dir, err)
	}
	return out, nil
}

// intentDone reports whether an unfinished transfer did in fact finish:
// the source is still what was sent and the destination has its size.
func intentDone(in Intent, l, rm *target.Entry) bool {
	if l == nil || rm == nil || l.IsDir || rm.IsDir {
		return false
	}
	src, dst := l, rm
	if !in.Upload {
		src, dst = rm, l
	}
	return src.Size == in.Src.Size && dst.Size == in.Src.Size &&
		sameTime(src.ModTime, in.Src.ModTime, max(src.Precision, in.Src.Precision))
}

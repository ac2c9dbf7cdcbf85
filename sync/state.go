package sync

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Store keeps the last-synced record of every path of one pair of trees in
// a Badger database outside both trees.
//
// Keys: "r" + parent path + NUL + name for records, so that the records of
// one directory's children are one prefix scan (a NUL never occurs in a
// valid name); "p" + parent + NUL + name for intents (intent.go); "i"
// holds the two tree IDs the store belongs to.
type Store struct {
	db     *badger.DB
	dir    string
	copyOf string // a private copy opened by OpenStoreReadOnly, removed on Close
	log    logrus.FieldLogger
	// private: the store writes to dir, whose files Close makes private.
	private bool
}

var keyIDs = []byte("i")

// ErrStoreBusy is returned when another process holds the state store.
var ErrStoreBusy = errors.New("state store in use")

// DefaultStateDir is where the state of the pair (localID, remoteID) lives
// unless --state-dir says otherwise: $XDG_STATE_HOME/ftpsync-mount/sync/
// followed by a hash of both IDs (so that no host or path leaks into the
// folder name and any pair of roots gets its own store).
func DefaultStateDir(localID, remoteID string) (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("state folder: no $XDG_STATE_HOME and no home folder (%w); give --state-dir", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "ftpsync-mount", "sync", PairHash(localID, remoteID)), nil
}

// PairHash names the pair of trees: both IDs, length-prefixed so that no
// two pairs share a hash input.
func PairHash(localID, remoteID string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s%d:%s", len(localID), localID, len(remoteID), remoteID)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// OpenStore opens (creating if needed) the store in dir for the pair of
// trees. A store made for another pair is refused, so that a mistyped
// --state-dir cannot make one tree's deletions apply to another.
func OpenStore(dir, localID, remoteID string, log logrus.FieldLogger) (*Store, error) {
	return openStore(dir, localID, remoteID, log, false)
}

// OpenStoreReadOnly opens an existing store without writing to it, for a
// dry run. It fails if the store does not exist or another process has it
// open. A store left by a killed run cannot be opened read-only (Badger
// must first cut its log), so then a private copy is opened instead and
// removed on Close: the dry run still sees the state and changes nothing.
func OpenStoreReadOnly(dir, localID, remoteID string, log logrus.FieldLogger) (*Store, error) {
	st, err := openStore(dir, localID, remoteID, log, true)
	if err == nil || errors.Is(err, ErrStoreBusy) {
		return st, err
	}
	if _, serr := os.Stat(filepath.Join(dir, "MANIFEST")); serr != nil {
		return nil, err
	}
	tmp, cerr := copyStoreDir(dir)
	if cerr != nil {
		return nil, fmt.Errorf("%w; copying it to read it failed too: %w", err, cerr)
	}
	log.WithField("state", dir).Debug("the state store was not closed cleanly; reading a copy for the dry run")
	st, err = openStore(tmp, localID, remoteID, log, false)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	st.copyOf, st.dir = st.dir, dir
	return st, nil
}

// copyStoreDir copies the files of a store into a new temporary folder.
func copyStoreDir(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "ftpsync-state-*")
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == "LOCK" {
			continue
		}
		if err := copyFile(filepath.Join(dir, e.Name()), filepath.Join(tmp, e.Name())); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	return tmp, nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func openStore(dir, localID, remoteID string, log logrus.FieldLogger, readOnly bool) (*Store, error) {
	if !readOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("state folder %s: %w", dir, err)
		}
		if err := makePrivate(dir); err != nil {
			return nil, fmt.Errorf("state folder %s: %w", dir, err)
		}
	}
	opts := badger.DefaultOptions(dir).
		WithReadOnly(readOnly).
		WithLogger(badgerLog{log}).
		WithMemTableSize(4 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(4 << 20).
		WithBaseTableSize(2 << 20).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2).
		WithNumGoroutines(2)
	db, err := badger.Open(opts)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("state store %s: %w: another sync of the same folders is running; wait for it or give another --state-dir", dir, ErrStoreBusy)
		}
		return nil, fmt.Errorf("open state store %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, log: log, private: !readOnly}
	want := []byte(localID + "\x00" + remoteID)
	check := db.Update
	if readOnly {
		check = db.View
	}
	err = check(func(txn *badger.Txn) error {
		it, err := txn.Get(keyIDs)
		if errors.Is(err, badger.ErrKeyNotFound) {
			if readOnly {
				return nil
			}
			return txn.Set(keyIDs, want)
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if !bytes.Equal(v, want) {
				l, r, _ := strings.Cut(string(v), "\x00")
				return fmt.Errorf("state store %s belongs to %s and %s, not to %s and %s; give another --state-dir", dir, l, r, localID, remoteID)
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// makePrivate gives the state folder mode 0700 and its files 0600: they
// hold the names of the user's files. Badger creates files with the
// umask's mode, also during a run (new value-log and table files), so Close
// calls it again; meanwhile the folder's own mode keeps others out.
func makePrivate(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if de.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(dir, de.Name()), 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// Dir is the folder of the store.
func (s *Store) Dir() string { return s.dir }

// Close flushes and closes the store.
func (s *Store) Close() error {
	if s.copyOf != "" {
		defer os.RemoveAll(s.copyOf)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state store %s: %w", s.dir, err)
	}
	if s.private && s.copyOf == "" {
		if err := makePrivate(s.dir); err != nil {
			return fmt.Errorf("close state store %s: %w", s.dir, err)
		}
	}
	return nil
}

func recordKey(p string) []byte {
	dir, name := target.Split(p)
	return []byte("r" + dir + "\x00" + name)
}

func childPrefix(dir string) []byte { return []byte("r" + dir + "\x00") }

// HasRecords reports whether any record exists: a store without records is
// a first run, when pyftpsync's meta files may be imported.
func (s *Store) HasRecords() (bool, error) {
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("r"), PrefetchValues: false})
		defer it.Close()
		it.Rewind()
		found = it.Valid()
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("state store %s: %w", s.dir, err)
	}
	return found, nil
}

// Children returns the records of the direct children of dir by name. A
// record that cannot be decoded is logged and left out: the path is then
// treated as never synced, which can cost a conflict but never data.
func (s *Store) Children(dir string) (map[string]Record, error) {
	out := map[string]Record{}
	prefix := childPrefix(dir)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			name := string(item.Key()[len(prefix):])
			var rec Record
			err := item.Value(rec.UnmarshalBinary)
			if errors.Is(err, ErrCorruptRecord) {
				s.log.WithError(err).WithField("path", target.Join(dir, name)).Warn("ignoring a damaged sync record; the path counts as never synced")
				continue
			}
			if err != nil {
				return err
			}
			out[name] = rec
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state store %s: read records of %q: %w", s.dir, dir, err)
	}
	return out, nil
}

// Get returns the record of one path, or ok false.
func (s *Store) Get(p string) (rec Record, ok bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(recordKey(p))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		return it.Value(rec.UnmarshalBinary)
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("state store %s: read record of %q: %w", s.dir, p, err)
	}
	return rec, ok, nil
}

// Put stores the record of p at once, so that a run killed after this
// transfer does not redo it, and clears p's intent.
func (s *Store) Put(p string, rec Record) error {
	v, _ := rec.MarshalBinary()
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(recordKey(p), v); err != nil {
			return err
		}
		return txn.Delete(intentKey(p))
	})
	if err != nil {
		return fmt.Errorf("state store %s: record %q: %w", s.dir, p, err)
	}
	return nil
}

// PutMany stores many records in as few transactions as Badger allows.
func (s *Store) PutMany(recs map[string]Record) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for p, rec := range recs {
		v, _ := rec.MarshalBinary()
		if err := wb.Set(recordKey(p), v); err != nil {
			return fmt.Errorf("state store %s: record %q: %w", s.dir, p, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("state store %s: write records: %w", s.dir, err)
	}
	return nil
}

// Delete drops the record and intent of p and of everything below it.
func (s *Store) Delete(p string) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, k := range [][]byte{recordKey(p), intentKey(p)} {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		for _, prefix := range [][]byte{childPrefix(p), []byte("r" + p + "/"), []byte("p" + p + "\x00"), []byte("p" + p + "/")} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			var keys [][]byte
			for it.Rewind(); it.Valid(); it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close()
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state store %s: forget %q: %w", s.dir, p, err)
	}
	return nil
}

// All returns every record by path; for tests and status output.
func (s *Store) All() (map[string]Record, error) {
	out := map[string]Record{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("r"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key()[1:])
			dir, name, _ := strings.Cut(k, "\x00")
			var rec Record
			if err := it.Item().Value(rec.UnmarshalBinary); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
			out[target.Join(dir, name)] = rec
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state store %s: %w", s.dir, err)
	}
	return out, nil
}

// badgerLog passes Badger's messages to logrus: its routine info chatter
// goes to debug, so that a sync prints only what the user asked for.
type badgerLog struct{ log logrus.FieldLogger }

func (b badgerLog) Errorf(f string, a ...any) {
	b.log.Errorf("state store: "+strings.TrimSpace(f), a...)
}
func (b badgerLog) Warningf(f string, a ...any) {
	b.log.Warnf("state store: "+strings.TrimSpace(f), a...)
}
func (b badgerLog) Infof(f string, a ...any) {
	b.log.Debugf("state store: "+strings.TrimSpace(f), a...)
}
func (b badgerLog) Debugf(f string, a ...any) {
	b.log.Debugf("state store: "+strings.TrimSpace(f), a...)
}

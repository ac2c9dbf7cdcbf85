package cache

import (
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// Bundles: the write-back uploads a new folder's subtree as one staged
// folder (sync/writeback_bundle.go), thousands of operations at once.
// StartOps and FinishOps do what StartOp, FinishOp and FinishUpload do for
// each, a few hundred to a transaction rather than one each.
//
// A staging folder on the server is noted here before it is created and
// forgotten once it is renamed into place or removed, so that a mount
// killed meanwhile removes what it left on the server when it comes back.
//
//	g<path>            a staging folder that may be on the server

const prefixStaging = 'g'

// batchOps bounds the operations one transaction of StartOps or FinishOps
// holds, well within Badger's transaction limits.
const batchOps = 512

func stagingKey(p string) []byte { return append([]byte{prefixStaging}, p...) }

// StartOps starts the operations seqs as StartOp does (evenOpen false) and
// tells for each whether it started (Started.Err nil), in order.
func (c *Cache) StartOps(seqs []uint64) ([]Started, error) {
	canNote := !c.diskLow()
	out := make([]Started, 0, len(seqs))
	for len(seqs) > 0 {
		n := min(len(seqs), batchOps)
		var part []Started
		c.treeMu.Lock()
		err := c._update(func(t *tx) error {
			part = part[:0]
			for _, seq := range seqs[:n] {
				s, err := t.startOp(seq, false, canNote)
				if err != nil {
					return err
				}
				part = append(part, s)
			}
			return nil
		})
		c.treeMu.Unlock()
		if err != nil {
			return out, fmt.Errorf("start %d write-back operations: %w", n, err)
		}
		out = append(out, part...)
		seqs = seqs[n:]
	}
	return out, nil
}

// FinishOps records operations StartOps started and the runner carried
// out: uploads as FinishUpload does, the others as FinishOp.
func (c *Cache) FinishOps(fs []Finished) error {
	note := !c.diskLow()
	for len(fs) > 0 {
		n := min(len(fs), batchOps)
		c.treeMu.Lock()
		err := c._update(func(t *tx) error {
			for _, f := range fs[:n] {
				var err error
				if f.Ino == 0 {
					err = t.finish(f.Seq)
				} else {
					err = t.finishUpload(f, note)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		c.treeMu.Unlock()
		if err != nil {
			return fmt.Errorf("record %d finished write-back operations: %w", n, err)
		}
		fs = fs[n:]
	}
	return nil
}

// NoteStaging notes that the staging folder p may be on the server.
func (c *Cache) NoteStaging(p string) error {
	err := c.db.Update(func(txn *badger.Txn) error { return txn.Set(stagingKey(p), nil) })
	if err != nil {
		return fmt.Errorf("note the staging folder /%s: %w", p, err)
	}
	return nil
}

// DropStagingNote forgets the staging folder p: it is gone from the server
// (renamed into place or removed).
func (c *Cache) DropStagingNote(p string) error {
	// Deleting a key that is not there is no error in Badger.
	err := c.db.Update(func(txn *badger.Txn) error { return txn.Delete(stagingKey(p)) })
	if err != nil {
		return fmt.Errorf("forget the staging folder /%s: %w", p, err)
	}
	return nil
}

// StagingNotes returns the staging folders that may be on the server.
func (c *Cache) StagingNotes() ([]string, error) {
	var out []string
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixStaging}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, string(it.Item().Key()[1:]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the staging folder notes: %w", err)
	}
	return out, nil
}

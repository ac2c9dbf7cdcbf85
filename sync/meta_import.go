package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// maxMetaSize bounds how much of a meta file is read: pyftpsync's are a
// few hundred bytes per file in the folder, so this is far above any real one.
const maxMetaSize = 64 << 20

// pyMeta is the part of a .pyftpsync-meta.json file the import uses.
type pyMeta struct {
	Version int                                   `json:"_file_version"`
	Mtimes  map[string]pyEntry                    `json:"mtimes"`
	Peers   map[string]map[string]json.RawMessage `json:"peer_sync"`
}

// pyEntry is one file: mtime and size, and when pyftpsync wrote the entry
// (for "mtimes", right after the upload; for "peer_sync", the sync).
type pyEntry struct {
	M float64 `json:"m"`
	S int64   `json:"s"`
	U float64 `json:"u"`
}

// ImportPyftpsyncMeta reads pyftpsync's per-folder meta files and turns
// them into sync records, so that someone switching from pyftpsync does not
// see every file as new on both sides (a conflict wherever pyftpsync left
// the server's mtime at the upload time, which is always).
//
// The local side's "peer_sync" entry for this remote gives the local size
// and mtime at the last sync. The remote's own meta file, where pyftpsync
// uploaded the file, tells when it uploaded it, which is the mtime the
// server reports; otherwise (a download) the server's mtime was the one
// pyftpsync gave the local copy. The records are marked Imported: their
// times match within two seconds, as in pyftpsync.
func ImportPyftpsyncMeta(ctx context.Context, local, remote target.Target, f *Filter, log logrus.FieldLogger) (map[string]Record, error) {
	im := &importer{local: local, remote: remote, filter: f, log: log, ids: pyftpsyncIDs(remote.ID()), out: map[string]Record{}}
	if err := im.walk(ctx, "", 0); err != nil {
		return nil, err
	}
	return im.out, nil
}

type importer struct {
	local, remote target.Target
	filter        *Filter
	log           logrus.FieldLogger
	ids           []string // the keys pyftpsync may have used for this remote
	out           map[string]Record
	warned        bool
}

// maxImportDepth bounds the recursion; deeper trees are not imported.
const maxImportDepth = 256

func (im *importer) walk(ctx context.Context, dir string, depth int) error {
	if depth > maxImportDepth {
		return nil
	}
	ents, err := im.local.List(ctx, dir)
	if err != nil {
		return fmt.Errorf("import pyftpsync state: list %q: %w", dir, err)
	}
	// Only a listed meta file is read: trying to open one in every
	// folder cost a failed lookup per folder before the first transfer.
	for _, e := range ents {
		if e.Name == MetaFileName && !e.IsDir {
			if err := im.importDir(ctx, dir); err != nil {
				return err
			}
			break
		}
	}
	for _, e := range ents {
		p := target.Join(dir, e.Name)
		if e.IsDir && im.filter.Check(p, true) == Included {
			if err := im.walk(ctx, p, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (im *importer) importDir(ctx context.Context, dir string) error {
	lm, err := readPyMeta(ctx, im.local, target.Join(dir, MetaFileName))
	if err != nil || lm == nil {
		if err != nil {
			im.log.WithError(err).WithField("folder", dir).Warn("ignoring an unreadable pyftpsync meta file")
		}
		return ctx.Err()
	}
	peer := im.peer(lm, dir)
	if peer == nil {
		return nil
	}
	rm, err := readPyMeta(ctx, im.remote, target.Join(dir, MetaFileName))
	if err != nil {
		im.log.WithError(err).WithField("folder", dir).Warn("ignoring the server's unreadable pyftpsync meta file")
	}
	for name, raw := range peer {
		if strings.HasPrefix(name, ":") || target.ValidName(name) != nil || im.filter.Check(target.Join(dir, name), false) != Included {
			continue
		}
		var e pyEntry
		if json.Unmarshal(raw, &e) != nil || e.M == 0 {
			continue // a folder ("m" 0) or damaged
		}
		lt, ok1 := pyTime(e.M)
		if !ok1 || e.S < 0 {
			continue
		}
		rec := Record{Imported: true, Local: Side{Size: e.S, ModTime: lt}, Remote: Side{Size: e.S, ModTime: lt}}
		if u, ok := pyTime(e.U); ok {
			rec.SyncedAt = u
		}
		if rm != nil {
			if up, ok := rm.Mtimes[name]; ok && up.S == e.S && math.Abs(up.M-e.M) <= importTolerance.Seconds() {
				if ut, ok := pyTime(up.U); ok {
					rec.Remote.ModTime = ut
				}
			}
		}
		im.out[target.Join(dir, name)] = rec
	}
	return nil
}

// peer finds the "peer_sync" entry for our remote.
func (im *importer) peer(m *pyMeta, dir string) map[string]json.RawMessage {
	for _, id := range im.ids {
		if p, ok := m.Peers[id]; ok {
			return p
		}
	}
	if len(m.Peers) > 0 && !im.warned {
		im.warned = true
		keys := make([]string, 0, len(m.Peers))
		for k := range m.Peers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		im.log.WithFields(logrus.Fields{"folder": dir, "pyftpsync_peers": strings.Join(keys, ", "), "remote": im.ids[0]}).
			Warn("pyftpsync meta files describe other remotes; not importing them")
	}
	return nil
}

// readPyMeta reads one meta file; nil without error if there is none.
func readPyMeta(ctx context.Context, t target.Target, p string) (*pyMeta, error) {
	rc, err := t.Open(ctx, p, 0, -1)
	if errors.Is(err, target.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxMetaSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(b) > maxMetaSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, maxMetaSize)
	}
	var m pyMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if m.Version < 2 || m.Version > 3 {
		return nil, fmt.Errorf("%s: _file_version %d is not one this program reads (2 or 3)", p, m.Version)
	}
	return &m, nil
}

// pyTime converts pyftpsync's float seconds, refusing nonsense.
func pyTime(f float64) (time.Time, bool) {
	if math.IsNaN(f) || f <= 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)).UTC(), true
}

// pyftpsyncIDs lists the keys pyftpsync may have filed this remote under
// in "peer_sync": its host name and root path ("ftp.example.com/site"),
// which our FTP IDs follow, also without a port; for a folder, its path.
func pyftpsyncIDs(id string) []string {
	ids := []string{id}
	if rest, ok := strings.CutPrefix(id, "local:"); ok {
		return append(ids, rest)
	}
	hostport, root, _ := strings.Cut(id, "/")
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		ids = append(ids, strings.Trim(h, "[]")+"/"+root)
	}
	if root == "" {
		ids = append(ids, strings.TrimSuffix(id, "/"))
	}
	return ids
}

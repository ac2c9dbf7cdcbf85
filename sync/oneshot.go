package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Options configure a one-shot run. The command line fills them.
type Options struct {
	Mode   Mode
	DryRun bool // print the plan; change nothing on either side and in the store
	// Delete lets upload/download remove what the source no longer has;
	// DeleteUnmatched also removes destination entries the user's filters
	// exclude (never the default excludes). Sync always follows deletions.
	Delete          bool
	DeleteUnmatched bool
	// Force makes the source win every conflict in upload/download.
	Force   bool
	Resolve Resolution
	Asker   Asker // asked when Resolve is ResolveAsk; nil means skip
	Filter  *Filter
	Case    CaseMode
	// Parallel bounds concurrent transfers and concurrent listings.
	Parallel int
	// Store holds the last-synced state; nil means none (a dry run on a
	// pair never synced before).
	Store    *Store
	Progress *Progress          // may be nil
	Out      io.Writer          // one line per action; nil discards
	Verbose  bool               // also print paths that need nothing
	Log      logrus.FieldLogger // nil discards
	Now      func() time.Time   // nil means time.Now; tests fix it
}

// Summary counts what a run did (or, in a dry run, would do).
type Summary struct {
	FilesUp, FilesDown          int64
	BytesUp, BytesDown          int64
	DirsCreated                 int64
	DeletedLocal, DeletedRemote int64
	Conflicts                   int64 // conflicts found, resolved or not
	Skipped                     int64 // conflicts and problems left alone
	Errors                      int64
	Elapsed                     time.Duration
}

// Problems reports whether anything was left undone.
func (s Summary) Problems() bool { return s.Skipped > 0 || s.Errors > 0 }

// ErrRunFailed is returned when some paths failed; the log names them.
var ErrRunFailed = errors.New("some paths failed")

// Side names one of the two trees.
type sideID int

const (
	sideLocal sideID = iota
	sideRemote
)

func (s sideID) String() string {
	if s == sideLocal {
		return "local"
	}
	return "remote"
}

type runCounters struct {
	filesUp, filesDown, bytesUp, bytesDown, dirs atomic.Int64
	delLocal, delRemote, conflicts, skipped      atomic.Int64
	errors                                       atomic.Int64
}

// run is the state of one Run call.
type syncRun struct {
	opts    Options
	tg      [2]target.Target // read only; indexed by sideID
	log     logrus.FieldLogger
	now     func() time.Time
	listSem chan struct{} // bounds concurrent listings
	xfer    *xferQueue    // runs transfers and deletions, as many at once as opts.Parallel
	n       runCounters

	overlay map[string]map[string]Record // read only after start; imported records in a dry run

	stageID string      // read only; the staging name part of this pair (oneshot_stage.go)
	staging atomic.Bool // new remote folders are staged; off after a staged folder could not be renamed

	dirsMu gosync.Mutex           // protects dirs
	dirs   [2]map[string]*dirOnce // folders known to exist or being created, per side

	outMu gosync.Mutex // serializes lines on opts.Out
}

type dirOnce struct {
	once gosync.Once
	err  error
}

// Run makes the two trees agree as the mode says and returns what it did.
// Paths that fail are logged and counted, and the run goes on with the
// others; the error is then ErrRunFailed. A cancelled context stops the
// run between operations and returns the context's error; whatever
// finished is recorded, so that the next run goes on from there.
func Run(ctx context.Context, local, remote target.Target, opts Options) (Summary, error) {
	start := time.Now()
	r := &syncRun{opts: opts, tg: [2]target.Target{local, remote}, log: opts.Log, now: opts.Now}
	if r.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		r.log = l
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.opts.Filter == nil {
		r.opts.Filter, _ = NewFilter(nil, nil)
	}
	par := max(opts.Parallel, 1)
	r.listSem = make(chan struct{}, par)
	r.xfer = newXferQueue(ctx, par)
	defer r.xfer.close()
	r.stageID = stageName(local.ID(), remote.ID())
	r.staging.Store(!opts.DryRun && remote.Features().StagedWrites)
	for i := range r.dirs {
		r.dirs[i] = map[string]*dirOnce{}
	}
	if err := r.importMeta(ctx); err != nil {
		return r.summary(start), err
	}
	r.walkDir(ctx, "", true, true)
	sum := r.summary(start)
	if err := ctx.Err(); err != nil {
		return sum, fmt.Errorf("%s stopped: %w", opts.Mode, err)
	}
	if sum.Errors > 0 {
		return sum, fmt.Errorf("%s: %d path(s) failed: %w", opts.Mode, sum.Errors, ErrRunFailed)
	}
	return sum, nil
}

func (r *syncRun) summary(start time.Time) Summary {
	return Summary{
		FilesUp: r.n.filesUp.Load(), FilesDown: r.n.filesDown.Load(),
		BytesUp: r.n.bytesUp.Load(), BytesDown: r.n.bytesDown.Load(),
		DirsCreated:  r.n.dirs.Load(),
		DeletedLocal: r.n.delLocal.Load(), DeletedRemote: r.n.delRemote.Load(),
		Conflicts: r.n.conflicts.Load(), Skipped: r.n.skipped.Load(), Errors: r.n.errors.Load(),
		Elapsed: time.Since(start),
	}
}

// importMeta reads pyftpsync's meta files as the initial state when the
// store has no records yet.
func (r *syncRun) importMeta(ctx context.Context) error {
	if r.opts.Store != nil {
		has, err := r.opts.Store.HasRecords()
		if err != nil || has {
			return err
		}
	}
	recs, err := ImportPyftpsyncMeta(ctx, r.tg[sideLocal], r.tg[sideRemote], r.opts.Filter, r.log)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	r.log.WithField("records", len(recs)).Info("imported the last-synced state from pyftpsync's .pyftpsync-meta.json files")
	if r.opts.DryRun || r.opts.Store == nil {
		r.overlay = map[string]map[string]Record{}
		for p, rec := range recs {
			dir, name := target.Split(p)
			if r.overlay[dir] == nil {
				r.overlay[dir] = map[string]Record{}
			}
			r.overlay[dir][name] = rec
		}
		return nil
	}
	return r.opts.Store.PutMany(recs)
}

// children returns the records and unfinished transfers of dir's children.
func (r *syncRun) children(dir string) (map[string]Record, map[string]Intent, error) {
	recs, intents := map[string]Record{}, map[string]Intent{}
	if r.opts.Store != nil {
		var err error
		if recs, err = r.opts.Store.Children(dir); err != nil {
			return nil, nil, err
		}
		if intents, err = r.opts.Store.Intents(dir); err != nil {
			return nil, nil, err
		}
	}
	for name, rec := range r.overlay[dir] {
		if _, ok := recs[name]; !ok {
			recs[name] = rec
		}
	}
	return recs, intents, nil
}

// list lists one side of a folder within the listing bound.
func (r *syncRun) list(ctx context.Context, s sideID, dir string) ([]target.Entry, error) {
	select {
	case r.listSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.listSem }()
	return r.tg[s].List(ctx, dir)
}

// walkDir lists both sides of dir (a side that does not have the folder is
// not listed and counts as empty), classifies every name and starts the
// work; it returns when everything below dir is done. A listing that fails
// stops the walk of that folder: an unreadable folder must never look
// empty, or its content would be deleted on the other side.
func (r *syncRun) walkDir(ctx context.Context, dir string, haveL, haveR bool) {
	if ctx.Err() != nil {
		return
	}
	var ents [2][]target.Entry
	var errs [2]error
	var wg gosync.WaitGroup
	for s, have := range [2]bool{haveL, haveR} {
		if !have {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ents[s], errs[s] = r.list(ctx, sideID(s), dir)
		}()
	}
	wg.Wait()
	for s, err := range errs {
		if err != nil {
			r.fail(ctx, dir, fmt.Errorf("list the %s folder: %w", sideID(s), err))
			return
		}
	}
	r.walkListed(ctx, dir, ents, [2]bool{haveL, haveR})
}

// walkListed is walkDir once dir is listed on the sides it exists on.
func (r *syncRun) walkListed(ctx context.Context, dir string, ents [2][]target.Entry, have [2]bool) {
	for s := range have {
		if have[s] {
			r.markDir(sideID(s), dir)
		}
	}
	var wg gosync.WaitGroup
	recs, intents, err := r.children(dir)
	if err != nil {
		r.fail(ctx, dir, err)
		return
	}
	var m [2]map[string]*target.Entry
	for s := range m {
		m[s] = r.filterEntries(ctx, &wg, sideID(s), dir, ents[s])
	}
	leave := r.caseClashes(ctx, dir, m)
	names := map[string]bool{}
	for s := range m {
		for n := range m[s] {
			names[n] = true
		}
	}
	for n, rec := range recs {
		if !names[n] && !leave[n] && r.opts.Filter.Check(target.Join(dir, n), rec.IsDir) == Included {
			names[n] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, name := range sorted {
		if ctx.Err() != nil {
			break
		}
		p := target.Join(dir, name)
		l, rm := m[sideLocal][name], m[sideRemote][name]
		var rec *Record
		if v, ok := recs[name]; ok {
			rec = &v
		}
		if l != nil && l.IsDir || rm != nil && rm.IsDir || l == nil && rm == nil && rec != nil && rec.IsDir {
			r.handleDir(ctx, &wg, p, l, rm, rec)
		} else {
			var in *Intent
			if v, ok := intents[name]; ok {
				in = &v
			}
			r.handleFile(ctx, &wg, p, l, rm, rec, in)
		}
	}
	wg.Wait()
}

// filterEntries indexes a listing by name, leaving out what the filter
// excludes. With --delete-unmatched, destination entries the user's
// filters exclude are removed.
func (r *syncRun) filterEntries(ctx context.Context, wg *gosync.WaitGroup, s sideID, dir string, ents []target.Entry) map[string]*target.Entry {
	out := make(map[string]*target.Entry, len(ents))
	for i := range ents {
		e := &ents[i]
		p := target.Join(dir, e.Name)
		switch r.opts.Filter.Check(p, e.IsDir) {
		case Included:
			out[e.Name] = e
		case ByUser:
			if r.opts.DeleteUnmatched && r.isDestination(s) {
				r.xfer.add(wg, func() { r.removeUnmatched(ctx, s, p, e.IsDir) })
			}
		}
	}
	return out
}

func (r *syncRun) isDestination(s sideID) bool {
	return r.opts.Mode == ModeUpload && s == sideRemote || r.opts.Mode == ModeDownload && s == sideLocal
}

// handleDir decides about a folder and walks into it in the background.
func (r *syncRun) handleDir(ctx context.Context, wg *gosync.WaitGroup, p string, l, rm *target.Entry, rec *Record) {
	d := Classify(Input{Local: l, Remote: rm, Record: rec})
	o := planStep(d, r.opts.Mode, r.opts.Delete)
	if d.Conflict == TypeMismatch {
		r.skip(p, "a file on one side and a folder on the other; rename one of them")
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.dirOp(ctx, p, o, l, rm, rec)
	}()
}

func (r *syncRun) dirOp(ctx context.Context, p string, o step, l, rm *target.Entry, rec *Record) {
	switch o {
	case stepForget:
		r.forget(p)
	case stepUpload, stepDownload:
		dst := sideRemote
		if o == stepDownload {
			dst = sideLocal
		}
		if dst == sideRemote && rec == nil && r.stageDir(ctx, p) {
			return
		}
		if err := r.ensureDir(ctx, dst, p); err != nil {
			r.fail(ctx, p, err)
			return
		}
		r.recordDir(p)
		r.walkDir(ctx, p, dst == sideRemote, dst == sideLocal)
	case stepDeleteLocal, stepDeleteRemote:
		s := sideLocal
		if o == stepDeleteRemote {
			s = sideRemote
		}
		r.walkDir(ctx, p, s == sideLocal, s == sideRemote)
		r.removeEmptyDir(ctx, s, p)
	default:
		if o == stepRecord {
			r.recordDir(p)
		}
		r.walkDir(ctx, p, l != nil, rm != nil)
	}
}

// handleFile decides about a file and starts its transfer or deletion.
// An unfinished transfer (in) that did finish is recorded as such.
func (r *syncRun) handleFile(ctx context.Context, wg *gosync.WaitGroup, p string, l, rm *target.Entry, rec *Record, in *Intent) {
	l, rm = r.refine(ctx, sideLocal, p, l, rec), r.refine(ctx, sideRemote, p, rm, rec)
	if in != nil && intentDone(*in, l, rm) {
		r.put(p, NewRecord(*l, *rm, r.now()))
		if r.opts.Verbose {
			r.say("finished before", p, "")
		}
		return
	}
	d := Classify(Input{Local: l, Remote: rm, Record: rec})
	o := planStep(d, r.opts.Mode, r.opts.Delete)
	if o == stepConflict {
		r.n.conflicts.Add(1)
		if o = r.resolve(ctx, p, d, l, rm); o == stepSkip {
			return // reported by resolve
		}
	}
	switch o {
	case stepNone:
		if rec != nil && rec.Imported && l != nil && rm != nil {
			r.put(p, NewRecord(*l, *rm, r.now()))
		}
		if r.opts.Verbose {
			r.say("unchanged", p, "")
		}
	case stepRecord:
		r.put(p, NewRecord(*l, *rm, r.now()))
		if r.opts.Verbose {
			r.say("equal", p, "")
		}
	case stepForget:
		r.forget(p)
	case stepSkip:
		r.skip(p, d.Conflict.String()+"; rename one of them")
	default:
		r.xfer.add(wg, func() { r.fileOp(ctx, p, o, l, rm) })
	}
}

// mtimeRefiner is what an FTP target offers when its listing gives only minutes
// or days: the exact time of one file (MDTM).
type mtimeRefiner interface {
	RefineModTime(ctx context.Context, path string) (time.Time, error)
}

// refine asks for the exact mtime of an entry whose listed time is too
// coarse to tell a change from the record (or, both new, from the other
// side). Without the capability, or if asking fails, the listed entry is
// used as it is.
func (r *syncRun) refine(ctx context.Context, s sideID, p string, e *target.Entry, rec *Record) *target.Entry {
	if e == nil || e.IsDir || e.Precision <= time.Second {
		return e
	}
	rf, ok := r.tg[s].(mtimeRefiner)
	if !ok {
		return e
	}
	need := false
	if rec != nil && !rec.IsDir {
		side := rec.Local
		if s == sideRemote {
			side = rec.Remote
		}
		need = Ambiguous(*e, side, rec.SyncedAt)
	} else if rec == nil {
		need = true // both new: compared with the other side at its precision
	}
	if !need {
		return e
	}
	t, err := rf.RefineModTime(ctx, p)
	if err != nil {
		r.log.WithError(err).WithField("path", p).Debug("cannot refine the listed time; using the listing's")
		return e
	}
	c := *e
	c.ModTime, c.Precision = t.UTC(), time.Second
	return &c
}

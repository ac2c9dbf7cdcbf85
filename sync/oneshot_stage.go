package sync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	gosync "sync"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Staged folders. A folder the remote side does not have yet is built
// under a temporary name (target.TempName, which listings leave out): its
// subfolders under their own names inside it, its files stored straight
// under their own names (WriteOptions.Staged). Each folder is checked with
// one listing once its files are stored; what did not arrive whole is
// removed. Then the staging folder is renamed into place. No file is ever
// seen half-written under its final path, as with the temporary file, size
// check and rename of each atomic Write, for three commands per file fewer
// where the remote is an FTP server.
//
// The staging name is the same for every run of a pair of trees, so that a
// run stopped or killed before the rename leaves a folder the next run
// takes up: files there with the local size and time are kept, anything
// else is uploaded again or removed. Nothing staged is recorded until the
// folder is in place, so a path is recorded only once its file is under its
// final path.
//
// Only folders with no sync state are staged: what the store knows about is
// synced file by file, as the classification says.

// stage is one new folder being built under its staging name.
type stage struct {
	top string // the folder's final path
	tmp string // where it is built

	mu       gosync.Mutex      // protects the following
	recs     map[string]Record // to store once the folder is in place
	uploaded map[string]bool   // files uploaded by this run, for the output
	broken   bool              // something in it could not be checked: do not rename it into place
}

// at is where the path p (top or below it) is while staged.
func (st *stage) at(p string) string {
	if p == st.top {
		return st.tmp
	}
	return st.tmp + strings.TrimPrefix(p, st.top)
}

func (st *stage) record(p string, rec Record, uploaded bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.recs[p] = rec
	if uploaded {
		st.uploaded[p] = true
	}
}

func (st *stage) breakIt() {
	st.mu.Lock()
	st.broken = true
	st.mu.Unlock()
}

func (st *stage) isBroken() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.broken
}

// stageName is the staging name part for this pair of trees.
func stageName(localID, remoteID string) string { return "s" + PairHash(localID, remoteID)[:12] }

// stageDir uploads the new remote folder p, staged, and reports true; or
// reports false if p is not to be staged, and the caller creates the
// folder and walks it as usual.
func (r *syncRun) stageDir(ctx context.Context, p string) bool {
	if !r.staging.Load() {
		return false
	}
	if recs, intents, err := r.children(p); err != nil || len(recs) > 0 || len(intents) > 0 {
		return false
	}
	parent, name := target.Split(p)
	st := &stage{top: p, tmp: target.Join(parent, target.TempName(name, r.stageID)), recs: map[string]Record{}, uploaded: map[string]bool{}}
	existed, err := r.mkdirStaged(ctx, st.tmp)
	if err != nil {
		r.log.WithError(err).WithField("path", p).Debug("cannot stage the folder; uploading its files one by one")
		return false
	}
	r.stageWalk(ctx, st, p, existed)
	if ctx.Err() != nil || st.isBroken() {
		return true // what is staged waits for the next run
	}
	err = r.tg[sideRemote].Rename(ctx, st.tmp, p)
	switch {
	case err == nil || renamedAnyway(ctx, r.tg[sideRemote], st.tmp, st.top):
	case ctx.Err() != nil:
		return true
	case errors.Is(err, target.ErrTemporary):
		r.fail(ctx, p, fmt.Errorf("rename the staged folder into place (the next run does it again): %w", err))
		return true
	default:
		// A server that does not rename folders, or p appeared
		// meanwhile: file by file from now on.
		r.staging.Store(false)
		r.log.WithError(err).WithField("path", p).Warn("cannot rename a staged folder into place; uploading file by file from now on")
		r.dropStaged(ctx, st.tmp)
		return false
	}
	r.publish(st)
	return true
}

// renamedAnyway reports whether a rename that failed did happen: the reply
// was lost on the way and the retry found nothing left to rename.
// Both the one-shot upload and the mount's write-back (writeback_bundle.go)
// use it.
func renamedAnyway(ctx context.Context, tg target.Target, tmp, top string) bool {
	if _, err := tg.Stat(ctx, tmp); !errors.Is(err, target.ErrNotFound) {
		return false
	}
	e, err := tg.Stat(ctx, top)
	return err == nil && e.IsDir
}

// mkdirStaged creates a folder in the staging area, or reports that an
// earlier run left it.
func (r *syncRun) mkdirStaged(ctx context.Context, at string) (existed bool, err error) {
	err = r.tg[sideRemote].Mkdir(ctx, at)
	if errors.Is(err, target.ErrExist) {
		return true, nil
	}
	return false, err
}

// stageWalk builds the local folder dir in the staging area, where its
// folder exists (existed: since an earlier run), and returns once
// everything below it is stored and checked.
func (r *syncRun) stageWalk(ctx context.Context, st *stage, dir string, existed bool) {
	if ctx.Err() != nil {
		return
	}
	ents, err := r.list(ctx, sideLocal, dir)
	if err != nil {
		r.fail(ctx, dir, fmt.Errorf("list the local folder: %w", err))
		st.breakIt()
		return
	}
	r.markDir(sideLocal, dir)
	left := map[string]target.Entry{}
	if existed {
		staged, err := r.list(ctx, sideRemote, st.at(dir))
		if err != nil {
			r.fail(ctx, dir, fmt.Errorf("list the staging folder an earlier run left: %w", err))
			st.breakIt()
			return
		}
		for _, e := range staged {
			left[e.Name] = e
		}
	}
	var wg gosync.WaitGroup
	var mu gosync.Mutex
	sent := map[string]sentFile{} // protected by mu
	kept := map[string]sentFile{} // staged by an earlier run, matching the local file
	subdirs := map[string]bool{}
	for i := range ents {
		e := &ents[i]
		p := target.Join(dir, e.Name)
		if r.opts.Filter.Check(p, e.IsDir) != Included {
			continue
		}
		if e.IsDir {
			subdirs[e.Name] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				existed, err := r.mkdirStaged(ctx, st.at(p))
				if err != nil {
					r.fail(ctx, p, fmt.Errorf("create the remote folder: %w", err))
					st.breakIt()
					return
				}
				r.stageWalk(ctx, st, p, existed)
			}()
			continue
		}
		if s, ok := left[e.Name]; ok && !s.IsDir && SameFile(*e, s) {
			kept[e.Name] = sentFile{local: *e, size: s.Size}
			continue
		}
		r.xfer.add(&wg, func() {
			if size, ok := r.stagedUpload(ctx, st, p, e); ok {
				mu.Lock()
				sent[e.Name] = sentFile{local: *e, size: size}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	r.checkStaged(ctx, st, dir, subdirs, sent, kept)
}

// sentFile is a local file in the staging area: sent by this run, or kept
// from an earlier one.
type sentFile struct {
	local target.Entry
	size  int64 // bytes sent, or found staged
}

// stagedUpload stores the local file p, described by f, in the staging
// area and returns the bytes sent.
func (r *syncRun) stagedUpload(ctx context.Context, st *stage, p string, f *target.Entry) (int64, bool) {
	rc, err := r.tg[sideLocal].Open(ctx, p, 0, -1)
	if err != nil {
		r.fail(ctx, p, fmt.Errorf("upload: read the local file: %w", err))
		return 0, false
	}
	defer rc.Close()
	got, err := r.tg[sideRemote].Write(ctx, st.at(p), r.opts.Progress.reader(rc),
		target.WriteOptions{ModTime: f.ModTime, Size: f.Size, Staged: true})
	if err != nil {
		r.fail(ctx, p, fmt.Errorf("upload: %w", err))
		return 0, false
	}
	r.opts.Progress.fileDone()
	return got.Size, true
}

// checkStaged lists the staged folder dir and keeps the files that arrived
// whole (sent) or that an earlier run left matching the local ones (kept);
// every other entry is removed, so that nothing else goes public with the
// folder. subdirs are the folders staged in it.
func (r *syncRun) checkStaged(ctx context.Context, st *stage, dir string, subdirs map[string]bool,
	sent, kept map[string]sentFile) {
	ents, err := r.list(ctx, sideRemote, st.at(dir))
	if err != nil {
		r.fail(ctx, dir, fmt.Errorf("check the uploaded files (the next run does it again): %w", err))
		st.breakIt()
		return
	}
	now := r.now()
	listed := make(map[string]bool, len(ents))
	for _, e := range ents {
		listed[e.Name] = true
		p := target.Join(dir, e.Name)
		if e.IsDir {
			if !subdirs[e.Name] {
				r.dropStaged(ctx, st.at(p)) // staged by an earlier run; gone here since
			}
			continue
		}
		if s, ok := kept[e.Name]; ok && e.Size == s.size {
			st.record(p, NewRecord(s.local, e, now), false)
			continue
		}
		if s, ok := sent[e.Name]; ok {
			if e.Size == s.size {
				st.record(p, NewRecord(s.local, e, now), true)
				continue
			}
			r.fail(ctx, p, fmt.Errorf("upload: the server stored %d of the %d bytes sent (the transfer was cut short); the next run uploads it again", e.Size, s.size))
		}
		if err := r.tg[sideRemote].Remove(ctx, st.at(p)); err != nil && !errors.Is(err, target.ErrNotFound) {
			r.fail(ctx, p, fmt.Errorf("remove an incomplete upload from the staging folder: %w", err))
			st.breakIt()
		}
	}
	for name := range sent {
		if !listed[name] {
			r.fail(ctx, target.Join(dir, name), errors.New("upload: the server's listing does not show the uploaded file; the next run uploads it again"))
		}
	}
	st.record(dir, dirRecord(dir, now), false)
}

// publish records a staged folder now in place and prints what it made:
// its folders and the files this run uploaded.
func (r *syncRun) publish(st *stage) {
	r.markDir(sideRemote, st.top)
	if r.opts.Store != nil {
		if err := r.opts.Store.PutMany(st.recs); err != nil {
			r.n.errors.Add(1)
			r.log.WithError(err).WithField("path", st.top).Error("cannot record the sync state")
		}
	}
	paths := make([]string, 0, len(st.recs))
	for p := range st.recs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		rec := st.recs[p]
		switch {
		case rec.IsDir:
			r.n.dirs.Add(1)
			r.say("mkdir remote", p, "")
		case st.uploaded[p]:
			r.countCopy(sideLocal, rec.Local.Size)
			detail := ""
			if r.opts.Out != nil {
				detail = humanSize(rec.Local.Size)
			}
			r.say("upload", p, detail)
		case r.opts.Verbose:
			r.say("finished before", p, "")
		}
	}
}

// dropStaged removes a staging folder that cannot be renamed into place,
// with everything in it; failures are only logged.
func (r *syncRun) dropStaged(ctx context.Context, at string) {
	if err := removeStaged(ctx, r.tg[sideRemote], at); err != nil {
		r.log.WithError(err).WithField("path", at).Warn("cannot remove the staging folder")
	}
}

// removeStaged removes the staging folder at with everything in it; one
// that is not there, or an entry gone meanwhile, is fine. The one-shot
// upload and the mount's write-back both use it.
func removeStaged(ctx context.Context, tg target.Target, at string) error {
	ents, err := tg.List(ctx, at)
	if errors.Is(err, target.ErrNotFound) {
		return nil
	}
	for i := 0; err == nil && i < len(ents); i++ {
		p := target.Join(at, ents[i].Name)
		if ents[i].IsDir {
			err = removeStaged(ctx, tg, p)
		} else if err = tg.Remove(ctx, p); errors.Is(err, target.ErrNotFound) {
			err = nil
		}
	}
	if err == nil {
		if err = tg.Rmdir(ctx, at); errors.Is(err, target.ErrNotFound) {
			err = nil
		}
	}
	return err
}

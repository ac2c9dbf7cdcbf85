package sync

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// say prints one action line; in a dry run it says what would happen.
func (r *syncRun) say(verb, p, detail string) {
	if r.opts.Out == nil {
		return
	}
	if r.opts.DryRun {
		verb = "would " + verb
	}
	if p == "" {
		p = "/"
	}
	line := fmt.Sprintf("%-20s %s", verb, p)
	if detail != "" {
		line += "  (" + detail + ")"
	}
	r.outMu.Lock()
	defer r.outMu.Unlock()
	r.opts.Progress.above(func() { fmt.Fprintln(r.opts.Out, line) })
}

// fail logs and counts an error of one path. Errors caused by the run
// being cancelled are not counted: the run reports the cancellation.
func (r *syncRun) fail(ctx context.Context, p string, err error) {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return
	}
	r.n.errors.Add(1)
	if p == "" {
		p = "/"
	}
	r.log.WithError(err).WithField("path", p).Error("cannot sync this path; the next run tries again")
}

// skip reports a path left alone because of a conflict or problem.
func (r *syncRun) skip(p, why string) {
	r.n.skipped.Add(1)
	r.say("skip", p, why)
}

// put records p unless this is a dry run.
func (r *syncRun) put(p string, rec Record) {
	if r.opts.DryRun || r.opts.Store == nil {
		return
	}
	if err := r.opts.Store.Put(p, rec); err != nil {
		r.n.errors.Add(1)
		r.log.WithError(err).WithField("path", p).Error("cannot record the sync state")
	}
}

// forget drops p's record (and those below it) unless this is a dry run.
func (r *syncRun) forget(p string) {
	if r.opts.DryRun || r.opts.Store == nil {
		return
	}
	if err := r.opts.Store.Delete(p); err != nil {
		r.n.errors.Add(1)
		r.log.WithError(err).WithField("path", p).Error("cannot forget the sync state")
	}
}

func (r *syncRun) recordDir(p string) {
	r.put(p, dirRecord(p, r.now()))
}

// dirRecord is the record of a folder that both sides have.
func dirRecord(p string, now time.Time) Record {
	d := target.Entry{Name: path.Base("/" + p), IsDir: true}
	return NewRecord(d, d, now)
}

// markDir notes that a folder exists on a side (it was listed).
func (r *syncRun) markDir(s sideID, p string) {
	r.dirsMu.Lock()
	defer r.dirsMu.Unlock()
	if _, ok := r.dirs[s][p]; !ok {
		d := &dirOnce{}
		d.once.Do(func() {})
		r.dirs[s][p] = d
	}
}

// ensureDir creates a folder and its parents on a side, once per run.
func (r *syncRun) ensureDir(ctx context.Context, s sideID, p string) error {
	if p == "" {
		return nil
	}
	r.dirsMu.Lock()
	d, ok := r.dirs[s][p]
	if !ok {
		d = &dirOnce{}
		r.dirs[s][p] = d
	}
	r.dirsMu.Unlock()
	d.once.Do(func() {
		parent, _ := target.Split(p)
		if d.err = r.ensureDir(ctx, s, parent); d.err != nil {
			return
		}
		r.n.dirs.Add(1)
		r.say("mkdir "+s.String(), p, "")
		if r.opts.DryRun {
			return
		}
		err := r.tg[s].Mkdir(ctx, p)
		if err != nil && !errors.Is(err, target.ErrExist) {
			d.err = fmt.Errorf("create the %s folder: %w", s, err)
		}
	})
	return d.err
}

func (r *syncRun) dirExists(s sideID, p string) bool {
	r.dirsMu.Lock()
	defer r.dirsMu.Unlock()
	_, ok := r.dirs[s][p]
	return ok
}

// removeEmptyDir removes a folder whose content was deleted. If something
// stayed (a skipped conflict, an excluded file) the folder stays too, and
// if the other side now has it again (a kept file was copied there) it is
// recorded as synced.
func (r *syncRun) removeEmptyDir(ctx context.Context, s sideID, p string) {
	if ctx.Err() != nil {
		return
	}
	other := sideRemote
	if s == sideRemote {
		other = sideLocal
	}
	if r.dirExists(other, p) {
		r.recordDir(p)
		return
	}
	if !r.opts.DryRun {
		err := r.tg[s].Rmdir(ctx, p)
		switch {
		case errors.Is(err, target.ErrNotEmpty):
			r.say("keep "+s.String()+" folder", p, "it still holds files the run did not delete")
			return
		case err != nil && !errors.Is(err, target.ErrNotFound):
			r.fail(ctx, p, fmt.Errorf("remove the %s folder: %w", s, err))
			return
		}
	}
	r.countDelete(s)
	r.say("delete "+s.String(), p+"/", "")
	r.forget(p)
}

func (r *syncRun) countDelete(s sideID) {
	if s == sideLocal {
		r.n.delLocal.Add(1)
	} else {
		r.n.delRemote.Add(1)
	}
}

// fileOp carries out one transfer or deletion and records the result at
// once, so that a run killed afterwards does not redo it.
func (r *syncRun) fileOp(ctx context.Context, p string, o step, l, rm *target.Entry) {
	var err error
	switch o {
	case stepUpload:
		err = r.copyFile(ctx, sideLocal, p, p, l, rm)
	case stepDownload:
		err = r.copyFile(ctx, sideRemote, p, p, rm, l)
	case stepDeleteLocal:
		if err = r.goneFrom(ctx, sideRemote, p); err == nil {
			if err = r.unchangedSince(ctx, sideLocal, p, l); err == nil {
				err = r.deleteFile(ctx, sideLocal, p)
			}
		}
	case stepDeleteRemote:
		if err = r.goneFrom(ctx, sideLocal, p); err == nil {
			if err = r.unchangedSince(ctx, sideRemote, p, rm); err == nil {
				err = r.deleteFile(ctx, sideRemote, p)
			}
		}
	case stepKeepBoth:
		err = r.keepBoth(ctx, p, l, rm)
	}
	switch {
	case errors.Is(err, errChangedDuringRun):
		r.skip(p, err.Error())
	case err != nil:
		r.fail(ctx, p, err)
	}
}

// goneFrom confirms, before the other side's copy is deleted, that p is
// really gone from side s and not merely missing from its listing. An FTP
// listing travels on a data connection; one cut short at a line boundary
// while the server reports success looks complete, and trusting it would
// delete the only other copy. Stat asks again (MLST answers on the control
// connection, which has an explicit end).
func (r *syncRun) goneFrom(ctx context.Context, s sideID, p string) error {
	if r.opts.DryRun {
		return nil
	}
	_, err := r.tg[s].Stat(ctx, p)
	switch {
	case errors.Is(err, target.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("check that the %s file is gone before deleting the other copy: %w", s, err)
	}
	return fmt.Errorf("the %s listing left out %s, which is still there (an incomplete listing): nothing deleted; run again", s, p)
}

// errChangedDuringRun stops a replacement or deletion of a file that
// changed after it was listed: the change would be lost.
var errChangedDuringRun = errors.New("changed during the run; run again to sync it")

// unchangedSince checks, right before a file is replaced or deleted, that
// it is still what the listing showed: someone editing the local copy
// while a long run works through the tree must not lose the edit. A file
// that is gone meanwhile is fine: nothing is lost by writing there.
func (r *syncRun) unchangedSince(ctx context.Context, s sideID, p string, listed *target.Entry) error {
	if listed == nil || r.opts.DryRun {
		return nil
	}
	now, err := r.tg[s].Stat(ctx, p)
	switch {
	case errors.Is(err, target.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("check the %s file before changing it: %w", s, err)
	case now.IsDir || now.Size != listed.Size || !sameTime(now.ModTime, listed.ModTime, max(now.Precision, listed.Precision)):
		return fmt.Errorf("the %s file %w", s, errChangedDuringRun)
	}
	return nil
}

// copyFile copies src's file at from to the other side at to, with src's
// mtime, and records the pair as the sides report them afterwards.
func (r *syncRun) copyFile(ctx context.Context, src sideID, from, to string, e, old *target.Entry) error {
	dst, verb := sideRemote, "upload"
	if src == sideRemote {
		dst, verb = sideLocal, "download"
	}
	detail := ""
	if r.opts.Out != nil { // only say prints it
		detail = humanSize(e.Size)
		if old != nil {
			detail += ", replaces the " + dst.String() + " file"
		}
	}
	if r.opts.DryRun {
		r.countCopy(src, e.Size)
		r.say(verb, to, detail)
		return nil
	}
	parent, _ := target.Split(to)
	if err := r.ensureDir(ctx, dst, parent); err != nil {
		return err
	}
	rc, err := r.tg[src].Open(ctx, from, 0, -1)
	if err != nil {
		return fmt.Errorf("%s: read the %s file: %w", verb, src, err)
	}
	defer rc.Close()
	// As late as the interface allows: an edit during the transfer itself
	// still loses to it, but one made since the listing does not.
	if err := r.unchangedSince(ctx, dst, to, old); err != nil {
		return err
	}
	if r.opts.Store != nil {
		if err := r.opts.Store.PutIntent(to, Intent{Upload: src == sideLocal, Src: SideOf(*e)}); err != nil {
			return err
		}
	}
	got, err := r.tg[dst].Write(ctx, to, r.opts.Progress.reader(rc), target.WriteOptions{ModTime: e.ModTime, Size: e.Size})
	if err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	r.opts.Progress.fileDone()
	r.countCopy(src, e.Size)
	got.Name = e.Name
	if src == sideLocal {
		r.put(to, NewRecord(*e, got, r.now()))
	} else {
		r.put(to, NewRecord(got, *e, r.now()))
	}
	r.say(verb, to, detail)
	return nil
}

func (r *syncRun) countCopy(src sideID, n int64) {
	if src == sideLocal {
		r.n.filesUp.Add(1)
		r.n.bytesUp.Add(n)
	} else {
		r.n.filesDown.Add(1)
		r.n.bytesDown.Add(n)
	}
}

func (r *syncRun) deleteFile(ctx context.Context, s sideID, p string) error {
	if !r.opts.DryRun {
		if err := r.tg[s].Remove(ctx, p); err != nil && !errors.Is(err, target.ErrNotFound) {
			return fmt.Errorf("delete the %s file: %w", s, err)
		}
	}
	r.countDelete(s)
	r.say("delete "+s.String(), p, "")
	r.forget(p)
	return nil
}

// keepBoth settles a conflict without losing either version: the local
// file is renamed to a conflict name and uploaded under it, then the remote
// version is downloaded under the original name. The rename comes first so
// that a run killed at any point leaves both versions somewhere.
func (r *syncRun) keepBoth(ctx context.Context, p string, l, rm *target.Entry) error {
	c := ConflictName(p, r.now())
	r.say("keep both", p, "the local version becomes "+path.Base("/"+c))
	if r.opts.DryRun {
		r.countCopy(sideLocal, l.Size)
		r.countCopy(sideRemote, rm.Size)
		return nil
	}
	if err := r.tg[sideLocal].Rename(ctx, p, c); err != nil {
		return fmt.Errorf("keep both: rename the local version to %s: %w", c, err)
	}
	lc := *l
	lc.Name = path.Base("/" + c)
	if err := r.copyFile(ctx, sideRemote, p, p, rm, nil); err != nil {
		return err
	}
	return r.copyFile(ctx, sideLocal, c, c, &lc, nil)
}

// ConflictName is the name a conflicting local version is saved under:
// NAME.conflict-YYYYMMDD-HHMMSS.EXT beside the original.
func ConflictName(p string, t time.Time) string {
	dir, name := target.Split(p)
	ext := path.Ext(name)
	if ext == name || strings.HasPrefix(name, ".") && strings.Count(name, ".") == 1 {
		ext = "" // ".profile" has no extension
	}
	base := strings.TrimSuffix(name, ext)
	return target.Join(dir, base+".conflict-"+t.UTC().Format("20060102-150405")+ext)
}

// removeUnmatched deletes a destination entry the user's filters exclude
// (--delete-unmatched), a folder with everything in it.
func (r *syncRun) removeUnmatched(ctx context.Context, s sideID, p string, isDir bool) {
	if !isDir {
		if err := r.deleteFile(ctx, s, p); err != nil {
			r.fail(ctx, p, err)
		}
		return
	}
	if err := r.removeTree(ctx, s, p); err != nil {
		r.fail(ctx, p, err)
	}
}

// removeTree deletes a folder and its content on one side. Its depth is
// bounded by the tree's.
func (r *syncRun) removeTree(ctx context.Context, s sideID, p string) error {
	ents, err := r.tg[s].List(ctx, p)
	if err != nil {
		return fmt.Errorf("list the %s folder: %w", s, err)
	}
	for _, e := range ents {
		cp := target.Join(p, e.Name)
		if e.IsDir {
			err = r.removeTree(ctx, s, cp)
		} else {
			err = r.deleteFile(ctx, s, cp)
		}
		if err != nil {
			return err
		}
	}
	if !r.opts.DryRun {
		if err := r.tg[s].Rmdir(ctx, p); err != nil && !errors.Is(err, target.ErrNotFound) {
			return fmt.Errorf("remove the %s folder: %w", s, err)
		}
	}
	r.countDelete(s)
	r.say("delete "+s.String(), p+"/", "excluded by the filters")
	r.forget(p)
	return nil
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

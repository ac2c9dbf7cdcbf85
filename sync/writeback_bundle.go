package sync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Bundles: a folder the server does not have, queued with the folders and
// closed files below it (tar x, cp -r), is uploaded as one staged folder,
// as the one-shot upload does (oneshot_stage.go): the folder is built under
// a temporary name that listings leave out, its files stored straight
// under their own names in it (WriteOptions.Staged), each folder checked
// with one listing, and the whole folder renamed into place. Three FTP
// commands per file rather than seven, and still no file is seen
// half-written under its final path.
//
// A bundle takes the mkdir the scheduler picked and, after it in the
// journal, every mkdir and upload below it that could start now; a
// rename, delete or rmdir in the subtree keeps the per-operation path.
// What the bundle leaves out (a file still open, or written within Delay)
// runs after it, one operation at a time, into the folder then in place.
// If the folder appeared on the server, or the server will not rename a
// folder, the bundle falls back to the same per-operation path, which
// checks every file. The staging folder is noted in the cache before it is
// made, so that a mount killed meanwhile removes it when it comes back and
// uploads the still-queued operations again.

// bundleMax bounds the operations of one bundle; the rest follow in
// another bundle or one by one.
const bundleMax = 1 << 14

// bundle is a new folder's subtree on its way to the server as one staged
// folder. Its operations are marked running while it runs.
type bundle struct {
	top     *opState   // the folder's mkdir
	members []*opState // the mkdirs and uploads below it, in journal order
	weight  int        // transfer slots it takes
}

// _bundle returns the bundle the mkdir top (at w.order[i]) heads, or nil
// where it is to run alone; w.mu is held.
func (w *Writeback) _bundle(i int, top *opState, now time.Time) *bundle {
	if w.noStage || w.noBundle[top.op.Seq] || !w.opts.Target.Features().StagedWrites {
		return nil
	}
	prefix := top.op.Path + "/"
	dirs := map[string]bool{top.op.Path: true}
	var members []*opState
	uploads := 0
	for _, seq := range w.order[i+1:] {
		st := w.ops[seq]
		if st == nil {
			continue
		}
		if st.op.Kind == cache.OpRename && strings.HasPrefix(st.op.To, prefix) {
			return nil
		}
		if !strings.HasPrefix(st.op.Path, prefix) {
			continue
		}
		if st.running {
			return nil
		}
		parentIn := dirs[parentPath(st.op.Path)] && len(members) < bundleMax
		switch st.op.Kind {
		case cache.OpMkdir:
			if !parentIn {
				continue
			}
			dirs[st.op.Path] = true
		case cache.OpUpload:
			if !parentIn || !w._bundleReady(st, now) {
				continue
			}
			uploads++
		default:
			return nil
		}
		members = append(members, st)
	}
	if uploads == 0 {
		return nil
	}
	return &bundle{top: top, members: members, weight: max(1, w.opts.Transfers-1)}
}

// _mayBundle reports whether the mkdir st waits Delay after it was queued,
// so that files written into the folder right after join its bundle: the
// server stages folders, nothing waits for the queue (a flush, an fsync, a
// read waiting for a rename), and no bundle of it failed; w.mu is held.
func (w *Writeback) _mayBundle(st *opState) bool {
	return w.flushing == 0 && len(w.forced) == 0 && w.moving == 0 && !w.noStage && !w.noBundle[st.op.Seq] &&
		w.opts.Target.Features().StagedWrites
}

// _bundleReady reports whether the upload st could start now on its own;
// w.mu is held.
func (w *Writeback) _bundleReady(st *opState, now time.Time) bool {
	at, _, givenUp := w._dueAt(st)
	return !givenUp && !at.After(now) && !w.opts.Cache.OpenForWrite(st.op.Ino)
}

// bundleResult is what running a bundle came to.
type bundleResult struct {
	finished []cache.Finished // recorded in the cache
	gone     []uint64         // withdrawn before they started
	failed   map[uint64]error // uploads that did not arrive: tried again alone
	bytes    int64
	fallback bool // run the operations one by one (nothing was recorded)
}

// runBundle carries out a bundle and settles its operations.
func (w *Writeback) runBundle(b *bundle) {
	ctx, cancel := context.WithCancel(w.ctx)
	w.mu.Lock()
	b.top.cancel = cancel
	w.mu.Unlock()
	res, err := w.sendBundle(ctx, b)
	cancel()
	now := w.opts.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running -= b.weight
	b.top.cancel, b.top.bundle = nil, nil
	for _, st := range append([]*opState{b.top}, b.members...) {
		st.running, st.inBundle, st.progress = false, false, nil
	}
	for _, seq := range res.gone {
		w._drop(seq)
	}
	for _, f := range res.finished {
		if st := w.ops[f.Seq]; st != nil {
			w.opts.Log.WithField("seq", f.Seq).Debugf("done: %s", st.op)
		}
		w._drop(f.Seq)
		w.stats.done++
	}
	w.stats.bytes += res.bytes
	for seq, ferr := range res.failed {
		if st := w.ops[seq]; st != nil {
			w._failed(st, now, ferr)
		}
	}
	switch {
	case err != nil && (w.ctx.Err() != nil):
	case err != nil:
		// Alone from now on: the per-operation path copes with whatever
		// the bundle tripped on, one file at a time.
		w.noBundle[b.top.op.Seq] = true
		if st := w.ops[b.top.op.Seq]; st != nil {
			w._failed(st, now, err)
		}
	case res.fallback:
		w.noBundle[b.top.op.Seq] = true
	}
}

// bundleFile is one upload of a running bundle.
type bundleFile struct {
	st     *opState
	entry  cache.Entry
	sent   int64        // bytes stored; -1: not stored
	listed target.Entry // what the server's listing shows of it
	err    error        // it did not arrive whole
}

// sendBundle uploads the bundle's folder under a staging name and renames
// it into place. It reports what to record; the operations it leaves out
// (res.failed, and all of them on an error or a fallback) stay queued.
func (w *Writeback) sendBundle(ctx context.Context, b *bundle) (bundleResult, error) {
	tg, c := w.opts.Target, w.opts.Cache
	res := bundleResult{failed: map[uint64]error{}}
	top := b.top.op.Path
	if appeared, err := w.folderThere(ctx, top); err != nil || appeared {
		res.fallback = appeared
		return res, err
	}
	seqs := make([]uint64, 0, 1+len(b.members))
	seqs = append(seqs, b.top.op.Seq)
	for _, st := range b.members {
		seqs = append(seqs, st.op.Seq)
	}
	t0 := time.Now()
	started, err := c.StartOps(seqs)
	if err != nil {
		return res, err
	}
	if started[0].Err != nil {
		res.gone = append(res.gone, b.top.op.Seq)
		return res, nil // withdrawn: what is below it goes on alone
	}
	// What starts, where its folder does too, in journal order.
	dirs := map[string]bool{top: true}
	var mkdirs []string
	finished := []cache.Finished{{Seq: b.top.op.Seq}} // the folders, once in place
	var files []*bundleFile
	for i, s := range started[1:] {
		st := b.members[i]
		switch {
		case errors.Is(s.Err, cache.ErrGone):
			res.gone = append(res.gone, st.op.Seq)
		case s.Err != nil, !dirs[parentPath(st.op.Path)]:
		case st.op.Kind == cache.OpMkdir:
			dirs[st.op.Path] = true
			mkdirs = append(mkdirs, st.op.Path)
			finished = append(finished, cache.Finished{Seq: st.op.Seq})
		default:
			files = append(files, &bundleFile{st: st, entry: s.Entry, sent: -1})
		}
	}
	parent, name := target.Split(top)
	tmp := target.Join(parent, target.TempName(name, w.stageID+"-"+strconv.FormatUint(b.top.op.Seq, 36)))
	at := func(p string) string { return tmp + strings.TrimPrefix(p, top) }
	if err := c.NoteStaging(tmp); err != nil {
		return res, err
	}
	// The staging folder is removed on a context of its own: the
	// bundle's may be the reason it failed.
	drop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		w.forgetStaging(ctx, tmp)
	}
	if err := tg.Mkdir(ctx, tmp); err != nil {
		drop()
		return res, fmt.Errorf("bundle /%s: create the staging folder: %w", top, err)
	}
	fail := func(err error) (bundleResult, error) {
		drop()
		res.failed = map[uint64]error{}
		return res, err
	}
	if err := w.mkdirsStaged(ctx, b.weight, mkdirs, at); err != nil {
		return fail(fmt.Errorf("bundle /%s: %w", top, err))
	}
	t1 := time.Now()
	err = w.storeBundle(ctx, b, files, at)
	if ctx.Err() != nil {
		return res, ctx.Err() // the next mount removes the staging folder
	}
	if err != nil {
		return fail(fmt.Errorf("bundle /%s: %w", top, err))
	}
	t2 := time.Now()
	if appeared, err := w.folderThere(ctx, top); err != nil || appeared {
		res.fallback = appeared
		return fail(err)
	}
	if err := tg.Rename(ctx, tmp, top); err != nil && !renamedAnyway(ctx, tg, tmp, top) {
		if appeared, _ := w.folderThere(ctx, top); appeared {
			res.fallback = true // it appeared just now: the rename did not replace it
			return fail(nil)
		}
		if !errors.Is(err, target.ErrTemporary) && ctx.Err() == nil {
			w.opts.Log.WithError(err).WithField("path", "/"+top).Warn("cannot rename a staged folder into place; uploading file by file from now on")
			w.mu.Lock()
			w.noStage = true
			w.mu.Unlock()
			res.fallback = true
			return fail(nil)
		}
		return fail(fmt.Errorf("bundle /%s: rename the staging folder into place: %w", top, err))
	}
	if err := c.DropStagingNote(tmp); err != nil {
		w.opts.Log.WithError(err).Warn("cannot forget a staging folder now in place; the next mount looks for it in vain")
	}
	res.finished = finished
	for _, f := range files {
		if f.err != nil {
			res.failed[f.st.op.Seq] = f.err
			continue
		}
		e := f.entry
		res.finished = append(res.finished, cache.Finished{Seq: f.st.op.Seq, Ino: e.Ino, Gen: e.LocalGen,
			Local:  cache.SideState{Size: f.sent, ModTime: e.ModTime, Precision: e.Precision},
			Remote: f.listed, NotePath: f.st.op.Path})
		res.bytes += f.sent
	}
	w.notesSet()
	if err := c.FinishOps(res.finished); err != nil {
		// In place on the server but not recorded: the operations run
		// again alone and find their files there.
		res.finished = nil
		return res, err
	}
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	w.opts.Log.WithFields(logrus.Fields{"path": "/" + top, "files": len(files) - len(res.failed), "folders": 1 + len(mkdirs),
		"took": ms(time.Since(t0)), "start": ms(t1.Sub(t0)), "store": ms(t2.Sub(t1)),
		"record": ms(time.Since(t2))}).Info("uploaded a new folder whole")
	return res, nil
}

// folderThere reports whether the server has something at p.
func (w *Writeback) folderThere(ctx context.Context, p string) (bool, error) {
	_, err := w.opts.Target.Stat(ctx, p)
	switch {
	case err == nil:
		w.opts.Log.WithField("path", "/"+p).Debug("the folder is on the server already; uploading its files one by one")
		return true, nil
	case errors.Is(err, target.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("bundle /%s: %w", p, err)
}

// mkdirsStaged creates the folders (final paths, parents first) in the
// staging folder, those of one depth n at a time.
func (w *Writeback) mkdirsStaged(ctx context.Context, n int, mkdirs []string, at func(string) string) error {
	byDepth := map[int][]string{}
	depths := []int{}
	for _, d := range mkdirs {
		k := strings.Count(d, "/")
		if byDepth[k] == nil {
			depths = append(depths, k)
		}
		byDepth[k] = append(byDepth[k], d)
	}
	slices.Sort(depths)
	for _, k := range depths {
		var mu gosync.Mutex
		var firstErr error
		var wg gosync.WaitGroup
		sem := make(chan struct{}, max(1, n))
		for _, d := range byDepth[k] {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := w.opts.Target.Mkdir(ctx, at(d)); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("create /%s in the staging folder: %w", d, err)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
	}
	return nil
}

// storeBundle stores the bundle's files in the staging folder, Transfers
// at a time less the slot left for other operations, and checks each
// folder with one listing once its files are stored: the stored files the
// listing shows whole are kept, the others removed from the staging folder
// and tried again alone. A folder none of the files went to was made by
// this bundle and holds nothing to check. An error leaves nothing fit to
// go into place.
func (w *Writeback) storeBundle(ctx context.Context, b *bundle, files []*bundleFile, at func(string) string) error {
	type folder struct {
		pending atomic.Int32
		files   map[string]*bundleFile
	}
	folders := map[string]*folder{}
	for _, f := range files {
		d := parentPath(f.st.op.Path)
		fd := folders[d]
		if fd == nil {
			fd = &folder{files: map[string]*bundleFile{}}
			folders[d] = fd
		}
		fd.files[target.Base(f.st.op.Path)] = f
		fd.pending.Add(1)
	}
	var mu gosync.Mutex
	var firstErr error
	next := make(chan *bundleFile)
	var wg gosync.WaitGroup
	for range min(b.weight, max(1, len(files))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				f.sent, f.err = w.storeOne(ctx, f, at(f.st.op.Path))
				d := parentPath(f.st.op.Path)
				if folders[d].pending.Add(-1) > 0 || ctx.Err() != nil {
					continue
				}
				if err := w.checkStagedDir(ctx, at(d), folders[d].files); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("check /%s: %w", d, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range files {
		select {
		case next <- f:
		case <-ctx.Done():
			f.err = ctx.Err()
		}
	}
	close(next)
	wg.Wait()
	return firstErr
}

// storeOne stores one file of a bundle at its staged path and returns the
// bytes sent.
func (w *Writeback) storeOne(ctx context.Context, f *bundleFile, staged string) (int64, error) {
	o, e := f.st.op, f.entry
	rf, err := w.opts.Cache.OpenContent(e.Ino)
	if err != nil {
		return -1, fmt.Errorf("upload /%s: %w", o.Path, err)
	}
	defer rf.Close()
	fi, err := rf.Stat()
	if err != nil {
		return -1, fmt.Errorf("upload /%s: %w", o.Path, err)
	}
	size := fi.Size()
	counter := &uploadCounter{r: io.NewSectionReader(rf, 0, size)}
	w.mu.Lock()
	f.st.progress, f.st.size = counter, size
	w.mu.Unlock()
	if _, err := w.opts.Target.Write(ctx, staged, counter, target.WriteOptions{ModTime: e.ModTime, Size: size, Staged: true}); err != nil {
		return -1, fmt.Errorf("upload /%s: %w", o.Path, err)
	}
	return size, nil
}

// checkStagedDir checks one staged folder against the files stored in it.
func (w *Writeback) checkStagedDir(ctx context.Context, staged string, files map[string]*bundleFile) error {
	tg := w.opts.Target
	ents, err := tg.List(ctx, staged)
	if err != nil {
		return err
	}
	listed := make(map[string]bool, len(ents))
	for _, e := range ents {
		if e.IsDir {
			continue
		}
		listed[e.Name] = true
		f := files[e.Name]
		if f != nil && f.err == nil && e.Size == f.sent {
			f.listed = e
			continue
		}
		if f != nil && f.err == nil {
			f.err = fmt.Errorf("upload /%s: the server stored %d of the %d bytes sent (the transfer was cut short)", f.st.op.Path, e.Size, f.sent)
		}
		if err := tg.Remove(ctx, target.Join(staged, e.Name)); err != nil && !errors.Is(err, target.ErrNotFound) {
			return fmt.Errorf("remove an incomplete upload from the staging folder: %w", err)
		}
	}
	for name, f := range files {
		if f.err == nil && !listed[name] {
			f.err = fmt.Errorf("upload /%s: the server's listing does not show the uploaded file", f.st.op.Path)
		}
	}
	return nil
}

// forgetStaging removes a staging folder and its note; a folder that
// cannot be removed now keeps its note, and the next mount removes it.
func (w *Writeback) forgetStaging(ctx context.Context, tmp string) {
	if err := removeStaged(ctx, w.opts.Target, tmp); err != nil {
		w.opts.Log.WithError(err).WithField("path", "/"+tmp).Warn("cannot remove a staging folder; the next mount tries again")
		return
	}
	if err := w.opts.Cache.DropStagingNote(tmp); err != nil {
		w.opts.Log.WithError(err).Warn("cannot forget a removed staging folder")
	}
}

// dropLeftStaging removes the staging folders a mount killed mid-bundle
// left on the server; their operations are still queued.
func (w *Writeback) dropLeftStaging() {
	defer w.wg.Done()
	left, err := w.opts.Cache.StagingNotes()
	if err != nil {
		w.opts.Log.WithError(err).Warn("cannot look for staging folders a killed mount left")
		return
	}
	for _, tmp := range left {
		if w.ctx.Err() != nil {
			return
		}
		w.opts.Log.WithField("path", "/"+tmp).Info("removing a staging folder the last mount left")
		w.forgetStaging(w.ctx, tmp)
	}
}

// newStageID names this runner's staging folders, so that two mounts of
// one server never share one.
func newStageID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return "w" + hex.EncodeToString(b[:])
}

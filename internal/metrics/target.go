package metrics

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Metric names the target wrapper registers.
const (
	OpsName       = "ftpsync_target_operations_total"
	ErrorsName    = "ftpsync_target_errors_total"
	BytesDownName = "ftpsync_bytes_downloaded_total"
	BytesUpName   = "ftpsync_bytes_uploaded_total"
	UploadName    = "ftpsync_upload_duration_seconds"
)

// op indexes the per-operation counters: one per Target method that talks
// to the server, plus the FTP target's MDTM refinement.
type op int

const (
	opStat op = iota
	opList
	opOpen
	opWrite
	opAppend
	opRename
	opRemove
	opMkdir
	opRmdir
	opSetModTime
	opRefine
	numOps
)

// opNames are the "op" label values, by op.
var opNames = [numOps]string{"stat", "list", "open", "write", "append", "rename", "remove", "mkdir", "rmdir", "setmtime", "refine_mtime"}

// kinds maps errors to the "kind" label, first match wins. Cancellation is
// checked first: an operation the user or an unmount cancelled is not a
// server failure, whatever the target wrapped around it.
var kinds = []struct {
	err  error
	name string
}{
	{context.Canceled, "canceled"},
	{target.ErrNotFound, "not_found"},
	{target.ErrExist, "exists"},
	{target.ErrPermission, "permission"},
	{target.ErrNotEmpty, "not_empty"},
	{target.ErrNotDir, "not_dir"},
	{target.ErrIsDir, "is_dir"},
	{target.ErrUnsupported, "unsupported"},
	{target.ErrAuth, "auth"},
	{target.ErrInvalidName, "invalid_name"},
	{target.ErrShortWrite, "short_write"},
	{target.ErrTemporary, "temporary"},
	{context.DeadlineExceeded, "timeout"},
}

// ErrorKind names the kind of a target error for the "kind" label: a
// target sentinel, "canceled", "timeout", or "other".
func ErrorKind(err error) string {
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}

// targetMetrics are the series one wrapper updates, looked up once so that
// a successful call costs an atomic add, not a map lookup.
type targetMetrics struct {
	ops       [numOps]*Counter // read only after construction
	errs      *CounterVec
	bytesDown *Counter
	bytesUp   *Counter
	upload    *Histogram
}

func newTargetMetrics(r *Registry) *targetMetrics {
	opsVec := r.CounterVec(OpsName, "Calls to the remote side, by operation.", "op")
	m := &targetMetrics{
		errs:      r.CounterVec(ErrorsName, "Failed calls to the remote side, by operation and kind of error.", "op", "kind"),
		bytesDown: r.Counter(BytesDownName, "Bytes read from the remote side."),
		bytesUp:   r.Counter(BytesUpName, "Bytes sent to the remote side by writes and appends."),
		upload:    r.Histogram(UploadName, "Time to store one file on the remote side, successful writes only.", UploadBuckets),
	}
	for o, name := range opNames {
		m.ops[o] = opsVec.With(name)
	}
	return m
}

// done counts one call and, if it failed, its error by kind.
func (m *targetMetrics) done(o op, err error) {
	m.ops[o].Inc()
	if err != nil {
		m.errs.With(opNames[o], ErrorKind(err)).Inc()
	}
}

// WrapTarget returns t with every call counted in r. The wrapper keeps the
// optional interfaces callers probe with type assertions (the FTP target's
// RefineModTime, which the one-shot engine asks for when a listing gives
// only minutes), so wrapping never changes behaviour.
func WrapTarget(t target.Target, r *Registry) target.Target {
	w := &wrapped{t: t, m: newTargetMetrics(r)}
	if rf, ok := t.(mtimeRefiner); ok {
		return &wrappedRefiner{wrapped: w, rf: rf}
	}
	return w
}

// mtimeRefiner is the optional interface of sync.mtimeRefiner; the two
// must change together.
type mtimeRefiner interface {
	RefineModTime(ctx context.Context, path string) (time.Time, error)
}

type wrapped struct {
	t target.Target // read only
	m *targetMetrics
}

var _ target.Target = (*wrapped)(nil)

func (w *wrapped) Stat(ctx context.Context, p string) (target.Entry, error) {
	e, err := w.t.Stat(ctx, p)
	w.m.done(opStat, err)
	return e, err
}

func (w *wrapped) List(ctx context.Context, dir string) ([]target.Entry, error) {
	es, err := w.t.List(ctx, dir)
	w.m.done(opList, err)
	return es, err
}

func (w *wrapped) Open(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	rc, err := w.t.Open(ctx, p, offset, length)
	w.m.done(opOpen, err)
	if err != nil {
		return nil, err
	}
	return &countingReadCloser{rc: rc, m: w.m}, nil
}

func (w *wrapped) Write(ctx context.Context, p string, r io.Reader, opts target.WriteOptions) (target.Entry, error) {
	start := time.Now()
	e, err := w.t.Write(ctx, p, &countingReader{r: r, c: w.m.bytesUp}, opts)
	w.m.done(opWrite, err)
	if err == nil {
		w.m.upload.ObserveSince(start)
	}
	return e, err
}

func (w *wrapped) Append(ctx context.Context, p string, r io.Reader) (target.Entry, error) {
	e, err := w.t.Append(ctx, p, &countingReader{r: r, c: w.m.bytesUp})
	w.m.done(opAppend, err)
	return e, err
}

func (w *wrapped) Rename(ctx context.Context, from, to string) error {
	err := w.t.Rename(ctx, from, to)
	w.m.done(opRename, err)
	return err
}

func (w *wrapped) Remove(ctx context.Context, p string) error {
	err := w.t.Remove(ctx, p)
	w.m.done(opRemove, err)
	return err
}

func (w *wrapped) Mkdir(ctx context.Context, p string) error {
	err := w.t.Mkdir(ctx, p)
	w.m.done(opMkdir, err)
	return err
}

func (w *wrapped) Rmdir(ctx context.Context, p string) error {
	err := w.t.Rmdir(ctx, p)
	w.m.done(opRmdir, err)
	return err
}

func (w *wrapped) SetModTime(ctx context.Context, p string, t time.Time) error {
	err := w.t.SetModTime(ctx, p, t)
	w.m.done(opSetModTime, err)
	return err
}

func (w *wrapped) Features() target.Features { return w.t.Features() }
func (w *wrapped) String() string            { return w.t.String() }
func (w *wrapped) ID() string                { return w.t.ID() }
func (w *wrapped) Close() error              { return w.t.Close() }

// wrappedRefiner is the wrapper of a target that can refine listed times.
type wrappedRefiner struct {
	*wrapped
	rf mtimeRefiner // read only
}

var _ mtimeRefiner = (*wrappedRefiner)(nil)

func (w *wrappedRefiner) RefineModTime(ctx context.Context, p string) (time.Time, error) {
	t, err := w.rf.RefineModTime(ctx, p)
	w.m.done(opRefine, err)
	return t, err
}

// countingReader counts the bytes a target reads from an upload's source.
type countingReader struct {
	r io.Reader
	c *Counter
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.c.Add(int64(n))
	return n, err
}

// countingReadCloser counts the bytes of a download, and its first read
// error (not EOF) as an "open" error: a transfer that breaks halfway is a
// failed download even though Open succeeded.
type countingReadCloser struct {
	rc     io.ReadCloser
	m      *targetMetrics
	failed atomic.Bool
}

func (c *countingReadCloser) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.m.bytesDown.Add(int64(n))
	if err != nil && err != io.EOF && !c.failed.Swap(true) {
		c.m.errs.With(opNames[opOpen], ErrorKind(err)).Inc()
	}
	return n, err
}

func (c *countingReadCloser) Close() error { return c.rc.Close() }

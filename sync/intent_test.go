package sync

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// noMtimeServer stands for a server that can neither keep nor set mtimes:
// every upload is dated when it arrives.
type noMtimeServer struct{ target.Target }

func (n noMtimeServer) Write(ctx context.Context, p string, r io.Reader, o target.WriteOptions) (target.Entry, error) {
	o.ModTime = time.Time{}
	return n.Target.Write(ctx, p, r, o)
}

func (n noMtimeServer) SetModTime(context.Context, string, time.Time) error {
	return target.ErrUnsupported
}

func TestIntentRecognisesFinishedTransfer(t *testing.T) {
	e := newSyncEnv(t)
	const files = 6
	for i := range files {
		writeAt(t, e.ldir, "f"+string(rune('a'+i)), strings.Repeat("y", i+1), tA)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stop := &stopAfter{Target: noMtimeServer{e.remote}, n: 3, cancel: cancel}
	if _, _, err := e.runWith(ctx, e.local, stop, Options{Mode: ModeSync, Parallel: 1}); err == nil {
		t.Fatal("the interrupted run reported no error")
	}
	// The third upload finished unrecorded, with the server's own date:
	// without the intent it would be new on both sides and different.
	count := &stopAfter{Target: noMtimeServer{e.remote}, n: -1, cancel: func() {}}
	sum, out, err := e.runWith(t.Context(), e.local, count, Options{Mode: ModeSync})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Conflicts != 0 || count.writes.Load() != files-3 {
		t.Errorf("resumed run: %d writes, want %d; %+v\n%s", count.writes.Load(), files-3, sum, out)
	}
	e.sameTrees()
	st, err := OpenStore(e.stateDir, e.local.ID(), e.remote.ID(), e.log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if left, _ := st.Intents(""); len(left) != 0 {
		t.Errorf("intents left after a complete run: %v", left)
	}
}

func TestIntentCodec(t *testing.T) {
	for _, in := range []Intent{{Upload: true}, {Src: Side{Size: 9, ModTime: tA, Precision: time.Second}}} {
		var got Intent
		if err := got.unmarshal(in.marshal()); err != nil || got != in {
			t.Errorf("round trip of %+v: %+v, %v", in, got, err)
		}
	}
	for _, b := range [][]byte{nil, {1, 2, 0}, {1, 0, 0}, {1, 0, 0, 1, 0, 0, 0}, {2, 0, 0, 0, 0, 0}} {
		var in Intent
		if err := in.unmarshal(b); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%x: %v, want ErrCorruptRecord", b, err)
		}
	}
}

func TestIntentDone(t *testing.T) {
	src := fileAt(5, tA, time.Nanosecond)
	in := Intent{Upload: true, Src: SideOf(*src)}
	if !intentDone(in, src, fileAt(5, time.Now(), time.Second)) {
		t.Error("same source, destination of its size: done")
	}
	if intentDone(in, fileAt(5, tA.Add(time.Second), time.Nanosecond), fileAt(5, time.Now(), time.Second)) {
		t.Error("the source changed since: not done")
	}
	if intentDone(in, src, fileAt(4, time.Now(), time.Second)) {
		t.Error("destination of another size: not done")
	}
	if intentDone(in, src, nil) {
		t.Error("no destination: not done")
	}
}

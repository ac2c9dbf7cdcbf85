package sync

import (
	"context"
	"errors"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// gappyTarget leaves one name out of its listings, as an FTP listing cut
// short at a line boundary does, while Stat still finds it.
type gappyTarget struct {
	target.Target
	hide string // base name left out of every listing
}

func (g gappyTarget) List(ctx context.Context, dir string) ([]target.Entry, error) {
	es, err := g.Target.List(ctx, dir)
	out := es[:0]
	for _, e := range es {
		if e.Name != g.hide {
			out = append(out, e)
		}
	}
	return out, err
}

// TestIncompleteListingDeletesNothing: a file synced before and then missing
// from one side's listing, but still there, is not deleted on the other side.
func TestIncompleteListingDeletesNothing(t *testing.T) {
	for _, side := range []sideID{sideLocal, sideRemote} {
		t.Run(side.String(), func(t *testing.T) {
			e := newSyncEnv(t)
			writeAt(t, e.ldir, "keep.txt", "the only other copy", tA)
			writeAt(t, e.ldir, "other.txt", "x", tA)
			e.mustRun(Options{Mode: ModeSync})
			l, r := e.local, e.remote
			if side == sideLocal {
				l = gappyTarget{Target: l, hide: "keep.txt"}
			} else {
				r = gappyTarget{Target: r, hide: "keep.txt"}
			}
			sum, out, err := e.runWith(t.Context(), l, r, Options{Mode: ModeSync})
			if !errors.Is(err, ErrRunFailed) || sum.DeletedLocal+sum.DeletedRemote != 0 {
				t.Errorf("sync with %s listing missing a file: %+v, %v; want a failed path and no deletion\n%s", side, sum, err, out)
			}
			for _, root := range []string{e.ldir, e.rdir} {
				if got := readAt(t, root, "keep.txt"); got != "the only other copy" {
					t.Errorf("%s/keep.txt = %q", root, got)
				}
			}
			// With the whole listing back, the pair is in sync.
			e.noop(Options{Mode: ModeSync})
		})
	}
}

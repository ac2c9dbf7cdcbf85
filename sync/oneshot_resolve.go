package sync

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	gosync "sync"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Asker settles one conflict interactively. It returns a resolution other
// than ResolveAsk.
type Asker interface {
	Ask(ctx context.Context, p string, kind ConflictKind, local, remote *target.Entry) (Resolution, error)
}

// resolve turns a conflict into an operation, as --resolve (or the user)
// says. In one-way modes only the source can win; --force makes it win.
func (r *syncRun) resolve(ctx context.Context, p string, d Decision, l, rm *target.Entry) step {
	res := r.opts.Resolve
	if r.opts.Force {
		switch r.opts.Mode {
		case ModeUpload:
			res = ResolveLocal
		case ModeDownload:
			res = ResolveRemote
		}
	}
	if res == ResolveAsk {
		res = ResolveSkip
		if r.opts.Asker != nil && !r.opts.DryRun {
			var a Resolution
			var err error
			// The progress line stays away while the user reads and types.
			r.opts.Progress.above(func() { a, err = r.opts.Asker.Ask(ctx, p, d.Conflict, l, rm) })
			if err != nil {
				r.log.WithError(err).WithField("path", p).Warn("no answer; skipping the conflict")
			} else {
				res = a
			}
		}
	}
	if !r.opts.Mode.Allowed(res) {
		res = ResolveSkip
	}
	o := stepSkip
	switch res {
	case ResolveLocal:
		o = pickStep(l != nil, stepUpload, stepDeleteRemote)
	case ResolveRemote:
		o = pickStep(rm != nil, stepDownload, stepDeleteLocal)
	case ResolveNew, ResolveOld:
		if l != nil && rm != nil {
			c := compareTimes(l, rm)
			if res == ResolveOld {
				c = -c
			}
			switch {
			case c > 0:
				o = stepUpload
			case c < 0:
				o = stepDownload
			}
		}
	case ResolveKeepBoth:
		switch {
		case l != nil && rm != nil:
			o = stepKeepBoth
		case l != nil:
			o = stepUpload
		case rm != nil:
			o = stepDownload
		}
	}
	if o == stepSkip {
		r.skip(p, "conflict: "+r.conflictReason(d))
		return o
	}
	r.say("conflict", p, r.conflictReason(d)+"; resolved: "+res.String())
	return o
}

// conflictReason says what conflicts. In one-way modes a destination that
// changed while the source did not is a conflict too.
func (r *syncRun) conflictReason(d Decision) string {
	if d.Conflict != NoConflict {
		return d.Conflict.String()
	}
	if r.opts.Mode == ModeDownload {
		return "changed locally since the last sync; --force overwrites it"
	}
	return "changed on the server since the last sync; --force overwrites it"
}

func pickStep(cond bool, a, b step) step {
	if cond {
		return a
	}
	return b
}

// compareTimes is +1 if the local file is newer, -1 if the remote one is,
// 0 if they are the same at the coarser precision.
func compareTimes(l, rm *target.Entry) int {
	p := max(l.Precision, rm.Precision, time.Nanosecond)
	a, b := l.ModTime.Truncate(p), rm.ModTime.Truncate(p)
	switch {
	case a.After(b):
		return 1
	case a.Before(b):
		return -1
	}
	return 0
}

// PromptAsker asks on a terminal, one conflict at a time: L(ocal),
// R(emote), N(ewer), O(lder), S(kip), B(oth); an upper-case answer applies
// to all remaining conflicts.
type PromptAsker struct {
	mu  gosync.Mutex // protects the fields below and serializes prompts
	in  *bufio.Reader
	out io.Writer
	all Resolution // the answer for all remaining, or ResolveAsk
}

// NewPromptAsker reads answers from in and writes prompts to out.
func NewPromptAsker(in io.Reader, out io.Writer) *PromptAsker {
	return &PromptAsker{in: bufio.NewReader(in), out: out}
}

var answerKeys = map[byte]Resolution{'l': ResolveLocal, 'r': ResolveRemote, 'n': ResolveNew, 'o': ResolveOld, 's': ResolveSkip, 'b': ResolveKeepBoth}

// Ask prompts until it gets a valid answer; at most a few times, then it
// skips. End of input skips this and all remaining conflicts.
func (a *PromptAsker) Ask(ctx context.Context, p string, kind ConflictKind, l, rm *target.Entry) (Resolution, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.all != ResolveAsk {
		return a.all, nil
	}
	fmt.Fprintf(a.out, "\nConflict: %s is %s.\n  local:  %s\n  remote: %s\n", p, kind, describeEntry(l), describeEntry(rm))
	for range 5 {
		if err := ctx.Err(); err != nil {
			return ResolveSkip, err
		}
		fmt.Fprint(a.out, "Keep [L]ocal, [R]emote, [N]ewer, [O]lder, [S]kip, [B]oth (upper case: for all remaining)? ")
		line, err := a.in.ReadString('\n')
		ans := strings.TrimSpace(line)
		if err != nil && ans == "" {
			a.all = ResolveSkip
			return ResolveSkip, fmt.Errorf("reading the answer: %w", err)
		}
		if len(ans) != 1 {
			continue
		}
		res, ok := answerKeys[ans[0]|0x20]
		if !ok {
			continue
		}
		if ans[0] >= 'A' && ans[0] <= 'Z' {
			a.all = res
		}
		return res, nil
	}
	return ResolveSkip, nil
}

func describeEntry(e *target.Entry) string {
	if e == nil {
		return "deleted"
	}
	if e.IsDir {
		return "folder"
	}
	return fmt.Sprintf("%s, modified %s", humanSize(e.Size), e.ModTime.Local().Format("2006-01-02 15:04:05"))
}

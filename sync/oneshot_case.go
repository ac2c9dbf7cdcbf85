package sync

import (
	"context"
	"strings"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// caseClashes pairs names that exist on one side only and differ from a
// name on the other side only in case ("Readme.md" here, "README.md"
// there). A case-insensitive server or disk cannot hold both, so copying
// either over would clobber the other. --case decides: strict leaves the
// pair alone and reports it; local renames the remote entry to the local
// name, remote the local entry to the remote name, after which the two are
// compared as one path. It returns the names to leave alone, records
// included.
func (r *syncRun) caseClashes(ctx context.Context, dir string, m [2]map[string]*target.Entry) (leave map[string]bool) {
	leave = map[string]bool{}
	only := [2]map[string][]string{{}, {}}
	for s := range m {
		other := m[1-s]
		for name := range m[s] {
			if _, ok := other[name]; !ok {
				k := strings.ToLower(name)
				only[s][k] = append(only[s][k], name)
			}
		}
	}
	for k, ln := range only[sideLocal] {
		rn := only[sideRemote][k]
		if len(ln) != 1 || len(rn) != 1 {
			continue
		}
		lname, rname := ln[0], rn[0]
		lp, rp := target.Join(dir, lname), target.Join(dir, rname)
		le, re := m[sideLocal][lname], m[sideRemote][rname]
		mode := r.opts.Case
		if r.opts.DryRun && (le.IsDir || re.IsDir) && mode != CaseStrict {
			// A dry run cannot walk a folder under a name it only
			// pretends to have given it: show the rename, skip the walk.
			if mode == CaseLocal {
				r.say("rename remote", rp, "to "+lname+" (names differ only in case); its content is not walked in a dry run")
			} else {
				r.say("rename local", lp, "to "+rname+" (names differ only in case); its content is not walked in a dry run")
			}
			delete(m[sideLocal], lname)
			delete(m[sideRemote], rname)
			leave[lname], leave[rname] = true, true
			continue
		}
		switch mode {
		case CaseStrict:
			r.skip(lp, "differs only in case from the remote "+rname+"; use --case local or --case remote")
			delete(m[sideLocal], lname)
			delete(m[sideRemote], rname)
			leave[lname], leave[rname] = true, true
		case CaseLocal:
			if !r.caseRename(ctx, sideRemote, rp, lp) {
				delete(m[sideLocal], lname)
				delete(m[sideRemote], rname)
				leave[lname], leave[rname] = true, true
				continue
			}
			re.Name = lname
			m[sideRemote][lname] = re
			delete(m[sideRemote], rname)
		case CaseRemote:
			if !r.caseRename(ctx, sideLocal, lp, rp) {
				delete(m[sideLocal], lname)
				delete(m[sideRemote], rname)
				leave[lname], leave[rname] = true, true
				continue
			}
			le.Name = rname
			m[sideLocal][rname] = le
			delete(m[sideLocal], lname)
		}
	}
	return leave
}

// caseRename renames an entry on one side to the other side's spelling.
func (r *syncRun) caseRename(ctx context.Context, s sideID, from, to string) bool {
	r.say("rename "+s.String(), from, "to "+to+" (names differ only in case)")
	if r.opts.DryRun {
		return true
	}
	if err := r.tg[s].Rename(ctx, from, to); err != nil {
		r.fail(ctx, from, err)
		return false
	}
	r.forget(from)
	return true
}

package cache

import "sync"

// Folders made through the mount in this run hold only what was made in
// them through it, so their names are known in memory: a name looked up
// there that is not among them does not exist, with no Badger read. tar x
// looks up each name before creating it, and that read waited for the
// commits before it (Badger's snapshots). Any change to a folder's names
// other than a create in it makes the folder forget them (before the
// change), and Badger answers from then on; so does a listing of the
// server's folder.

// freshNames bounds the names kept; past it, every folder is forgotten.
const freshNames = 1 << 20

type freshDirs struct {
	mu    sync.Mutex
	dirs  map[uint64]map[string]uint64 // folder: name: inode
	names int
}

// lookup reports whether dir's names are known and, if so, name's inode
// (0: no such name).
func (f *freshDirs) lookup(dir uint64, name string) (ino uint64, known bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	names, ok := f.dirs[dir]
	if !ok {
		return 0, false
	}
	return names[name], true
}

// made records a new folder, with no names, and name in its parent.
func (f *freshDirs) made(e Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.names >= freshNames {
		f.dirs, f.names = nil, 0
	}
	if names, ok := f.dirs[e.Parent]; ok {
		if _, dup := names[e.Name]; !dup {
			f.names++
		}
		names[e.Name] = e.Ino
	}
	if e.IsDir {
		if f.dirs == nil {
			f.dirs = make(map[uint64]map[string]uint64)
		}
		f.dirs[e.Ino] = make(map[string]uint64)
	}
}

// forget makes dirs' names unknown.
func (f *freshDirs) forget(dirs ...uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range dirs {
		f.names -= len(f.dirs[d])
		delete(f.dirs, d)
	}
}

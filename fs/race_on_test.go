//go:build race

package fs

// raceSlowdown scales time limits in tests: the race detector makes the
// mount several times slower.
const raceSlowdown = 4

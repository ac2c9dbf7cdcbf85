package main

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// exitWait bounds how long unmount waits for the mount process to close its
// cache after the last upload.
const exitWait = time.Minute

// waitExit waits until process pid has exited or d has passed, and reports
// whether it exited. A pidfd becomes readable when the process ends, so
// there is no polling; a process that is already gone counts as exited.
func waitExit(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return errors.Is(err, unix.ESRCH)
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds())+1)
		switch {
		case err == nil && n > 0:
			return true
		case err != nil && !errors.Is(err, unix.EINTR):
			return false
		}
	}
}

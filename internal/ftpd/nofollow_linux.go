package ftpd

import "syscall"

// noFollow refuses to open a symlink planted in the served folder.
const noFollow = syscall.O_NOFOLLOW

//go:build unix

package layout

import "syscall"

// oNoFollow and oNonBlock are the open flags that keep a path-based open from following
// a final symlink or blocking on a FIFO; oDirectory refuses anything but a directory.
const (
	oNoFollow  = syscall.O_NOFOLLOW
	oNonBlock  = syscall.O_NONBLOCK
	oDirectory = syscall.O_DIRECTORY
)

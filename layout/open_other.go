//go:build unix && !linux

package layout

import (
	"os"
	"syscall"
)

// openNoFollow opens rel, a clean slash-separated path below the bundle root, for
// reading, through the os.Root: nothing outside the root is reached and a FIFO never
// blocks the open (O_NONBLOCK). os.Root follows a symlink that stays inside the root,
// so here the caller's check that the open file is the very regular file it expects
// (os.SameFile against what it saw or verified) is what refuses a swapped-in link.
func (t *tree) openNoFollow(rel string) (*os.File, error) {
	return t.root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

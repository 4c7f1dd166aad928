package layout

import (
	"os"
	"path"
	"strings"
	"syscall"
)

// openNoFollow opens rel, a clean slash-separated path below the bundle root, for
// reading. It walks rel one element at a time with openat(2) from the root's own
// descriptor, every element with O_NOFOLLOW (directories with O_DIRECTORY too), so no
// symlink is followed anywhere on the way and nothing outside the root is reached. The
// last element is opened with O_NONBLOCK, so a FIFO or a device swapped in never
// blocks the open; the caller fstats the result and refuses anything but the regular
// file it expects.
func (t *tree) openNoFollow(rel string) (*os.File, error) {
	elems := strings.Split(rel, "/")
	for _, e := range elems {
		if e == "" || e == "." || e == ".." {
			return nil, &os.PathError{Op: "openat", Path: rel, Err: syscall.EINVAL}
		}
	}
	rc, err := t.top.SyscallConn()
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: rel, Err: err}
	}
	fd := -1
	var operr error
	if err := rc.Control(func(dirfd uintptr) { fd, operr = openBeneath(int(dirfd), elems) }); err != nil {
		return nil, &os.PathError{Op: "openat", Path: rel, Err: err} // the root was closed
	}
	if operr != nil {
		return nil, &os.PathError{Op: "openat", Path: rel, Err: operr}
	}
	return os.NewFile(uintptr(fd), path.Join(t.dir, rel)), nil
}

// openBeneath opens elems below dirfd without following symlinks; intermediate
// descriptors are closed, dirfd is not.
func openBeneath(dirfd int, elems []string) (int, error) {
	cur := dirfd
	for i, e := range elems {
		flag := syscall.O_RDONLY | syscall.O_CLOEXEC | syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_NOCTTY
		if i < len(elems)-1 {
			flag |= syscall.O_DIRECTORY
		}
		var fd int
		var err error
		for {
			fd, err = syscall.Openat(cur, e, flag, 0)
			if err != syscall.EINTR {
				break
			}
		}
		if cur != dirfd {
			syscall.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

package layout

import (
	"io/fs"
	"syscall"
)

// fileStamp identifies a file and its last change: device and inode, size, and the
// modification and change times (ctime moves with every write, chmod, link or rename
// of the inode and cannot be set back by a user).
type fileStamp struct {
	dev, ino            uint64
	size                int64
	mtimeSec, mtimeNsec int64
	ctimeSec, ctimeNsec int64
}

func stampOf(fi fs.FileInfo) (fileStamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}, false
	}
	return fileStamp{dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size,
		mtimeSec: int64(st.Mtim.Sec), mtimeNsec: int64(st.Mtim.Nsec), ctimeSec: int64(st.Ctim.Sec), ctimeNsec: int64(st.Ctim.Nsec)}, true
}

//go:build unix

package layout

import "syscall"

const oNoFollow = syscall.O_NOFOLLOW

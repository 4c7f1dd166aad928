//go:build !unix

package archive

const (
	oNoFollow = 0
	oNonBlock = 0
)

//go:build !unix

package artifact

import "os"

// allocated is fi's size: this system does not report allocated blocks.
func allocated(fi os.FileInfo) int64 { return fi.Size() }

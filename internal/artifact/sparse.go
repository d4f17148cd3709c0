package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// SparseBlock is the granularity of holes: an aligned block of this many
// zero bytes is not written but left as a hole.
const SparseBlock = 4096

// SparseWriter writes to a file from its current offset, leaving holes
// where whole SparseBlock-aligned blocks are zero (it seeks over them).
// Reads of the file give back the exact bytes written. Finish must be
// called after the last Write: it writes what is buffered and extends the
// file to its logical size. It only suits a file that holds nothing past
// its starting offset (a new file, or one appended to).
type SparseWriter struct {
	f    *os.File
	pos  int64  // logical offset of buf[0]
	buf  []byte // pending bytes, up to the next block boundary
	skip int64  // zero bytes seeked over but not yet reached by a write
}

// NewSparseWriter returns a SparseWriter writing at f's current offset.
func NewSparseWriter(f *os.File) (*SparseWriter, error) {
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("artifact: sparse write: %w", err)
	}
	return &SparseWriter{f: f, pos: off, buf: make([]byte, 0, SparseBlock)}, nil
}

// Write implements io.Writer.
func (w *SparseWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		room := SparseBlock - int((w.pos+int64(len(w.buf)))%SparseBlock)
		k := min(room, len(p))
		if len(w.buf) == 0 && k == SparseBlock {
			// A whole aligned block: no copy.
			if err := w.block(p[:k]); err != nil {
				return n, err
			}
		} else {
			w.buf = append(w.buf, p[:k]...)
			if k == room {
				if err := w.block(w.buf); err != nil {
					return n, err
				}
				w.buf = w.buf[:0]
			}
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// block writes b, which ends at a block boundary, or skips it when it is
// a whole zero block.
func (w *SparseWriter) block(b []byte) error {
	if len(b) == SparseBlock && isZeroBlock(b) {
		w.skip += int64(len(b))
		w.pos += int64(len(b))
		return nil
	}
	if err := w.write(b); err != nil {
		return err
	}
	w.pos += int64(len(b))
	return nil
}

func (w *SparseWriter) write(b []byte) error {
	if w.skip > 0 {
		if _, err := w.f.Seek(w.skip, io.SeekCurrent); err != nil {
			return fmt.Errorf("artifact: sparse write: %w", err)
		}
		w.skip = 0
	}
	if _, err := w.f.Write(b); err != nil {
		return fmt.Errorf("artifact: sparse write: %w", err)
	}
	return nil
}

// Size is the logical number of bytes the file holds so far (its starting
// offset plus what was written).
func (w *SparseWriter) Size() int64 { return w.pos + int64(len(w.buf)) }

// Finish writes the buffered tail and sets the file's size to its logical
// size, leaving the file offset there. It may be called again after more
// writes.
func (w *SparseWriter) Finish() error {
	if len(w.buf) > 0 && !isZeroBlock(w.buf) {
		if err := w.write(w.buf); err != nil {
			return err
		}
	} else {
		w.skip += int64(len(w.buf))
	}
	w.pos += int64(len(w.buf))
	w.buf = w.buf[:0]
	if w.skip > 0 {
		if err := w.f.Truncate(w.pos); err != nil {
			return fmt.Errorf("artifact: sparse write: %w", err)
		}
		if _, err := w.f.Seek(w.pos, io.SeekStart); err != nil {
			return fmt.Errorf("artifact: sparse write: %w", err)
		}
		w.skip = 0
	}
	return nil
}

// zeroBlock is a block of zeros to compare with.
var zeroBlock [SparseBlock]byte

// isZeroBlock reports whether b (at most SparseBlock bytes) holds only zero
// bytes.
func isZeroBlock(b []byte) bool {
	return len(b) <= SparseBlock && bytes.Equal(b, zeroBlock[:len(b)])
}

// OnDiskBytes is the space the file at name takes on disk (its allocated
// blocks; a sparse file's holes take none). Where the system does not say,
// it is the file's size.
func OnDiskBytes(name string) (int64, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return 0, err
	}
	return allocated(fi), nil
}

// DiskUsage is the on-disk size of the stored artifact d (see OnDiskBytes).
func (s *Store) DiskUsage(d Digest) (int64, error) {
	if err := d.Validate(); err != nil {
		return 0, err
	}
	n, err := OnDiskBytes(s.blobPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return 0, fmt.Errorf("artifact: %s: %w", d, err)
	}
	return n, nil
}

// copySparse copies r to f from f's offset with a SparseWriter.
func copySparse(f *os.File, r io.Reader) (int64, error) {
	sw, err := NewSparseWriter(f)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(sw, r)
	if err != nil {
		return n, err
	}
	return n, sw.Finish()
}

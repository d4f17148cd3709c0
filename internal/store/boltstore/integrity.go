package boltstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/vmssd/vmssd/internal/store"
)

// Integrity.
//
// bbolt reads its file through a memory map and trusts what it finds: a
// truncated file makes it touch pages past the end of the file (SIGBUS), a
// corrupt page makes it panic or follow a page id out of the map (SIGSEGV).
// The store never lets either reach the process:
//
//   - Open checks the file's meta pages itself before bbolt maps it (a file
//     shorter than its own high-water mark is truncated), then walks every
//     record and runs bbolt's consistency check, so a damaged store is a
//     clear error before the server listens;
//   - every bbolt call runs under guard: faults on the mapped memory become
//     panics (debug.SetPanicOnFault) and panics become errors wrapping
//     store.ErrCorrupt, for damage that happens while the store is open.

// corrupt returns an error wrapping store.ErrCorrupt.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", store.ErrCorrupt, fmt.Sprintf(format, args...))
}

// guard runs fn, turning a panic or a memory fault inside it (bbolt on a
// damaged file) into an error wrapping store.ErrCorrupt; panicked reports
// that it did.
func guard(fn func() error) (err error, panicked bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err, panicked = corrupt("bbolt failed on damaged data: %v", r), true
		}
	}()
	return fn(), false
}

// A store whose bbolt calls panicked is poisoned: its data cannot be
// trusted and bbolt's own state may be inconsistent, so every later call
// fails with the first error without touching the file. A panic in a write
// transaction may also leave bbolt's writer lock held (its rollback reads
// the damaged freelist), so Close then leaves the file to the process's
// exit rather than wait forever.
type poison struct {
	mu     sync.Mutex
	err    error
	wedged bool
}

func (p *poison) get() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *poison) set(err error, write bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
	p.wedged = p.wedged || write
}

func (p *poison) isWedged() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wedged
}

func (s *Store) view(fn func(*bolt.Tx) error) error {
	return s.run(false, func() error { return s.db.View(fn) })
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	return s.run(true, func() error { return s.db.Update(fn) })
}

func (s *Store) run(write bool, fn func() error) error {
	if err := s.poison.get(); err != nil {
		return err
	}
	err, panicked := guard(fn)
	if panicked {
		s.poison.set(err, write)
	}
	return err
}

// bbolt's on-disk meta page: a 16-byte page header, then magic, version,
// page size, flags (uint32 each), the root bucket (root page id, sequence),
// the freelist page id, the high-water mark page id, the transaction id and
// an FNV-1a checksum of the preceding meta bytes (uint64 each), in the
// machine's byte order.
const (
	pageHeaderLen = 16
	metaLen       = 64
	metaSumLen    = 56
	boltMagic     = 0xED0CDAED
	boltVersion   = 2
)

type metaPage struct {
	pageSize        uint32
	root, free, hwm uint64
	txid            uint64
}

// parseMeta decodes the meta page at the start of b; ok is false if it is
// not a valid meta page.
func parseMeta(b []byte) (m metaPage, ok bool) {
	if len(b) < pageHeaderLen+metaLen {
		return m, false
	}
	b = b[pageHeaderLen : pageHeaderLen+metaLen]
	ne := binary.NativeEndian
	h := fnv.New64a()
	h.Write(b[:metaSumLen])
	if ne.Uint32(b[0:]) != boltMagic || ne.Uint32(b[4:]) != boltVersion || ne.Uint64(b[56:]) != h.Sum64() {
		return m, false
	}
	m = metaPage{pageSize: ne.Uint32(b[8:]), root: ne.Uint64(b[16:]), free: ne.Uint64(b[32:]), hwm: ne.Uint64(b[40:]), txid: ne.Uint64(b[48:])}
	if m.pageSize < 512 || m.pageSize&(m.pageSize-1) != 0 || m.pageSize > 1<<20 {
		return m, false
	}
	return m, true
}

// preflight checks the file at path before bbolt maps it: it must be absent
// (a new store; exists is false), or hold a valid meta page whose pages
// all lie inside the file.
func preflight(path string) (exists bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	return true, checkMeta(f, path)
}

func checkMeta(f *os.File, path string) error {
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() {
		return errors.New("not a regular file")
	}
	if size == 0 {
		return corrupt("the file is empty (0 bytes): truncated? Restore it from a backup, or remove it to start with an empty store")
	}
	head := make([]byte, pageHeaderLen+metaLen)
	read := func(off int64) []byte {
		if _, err := f.ReadAt(head, off); err != nil {
			return nil
		}
		return head
	}
	m0, ok0 := parseMeta(read(0))
	var m1 metaPage
	ok1 := false
	sizes := []int64{int64(os.Getpagesize()), 4096, 8192, 16384, 32768, 65536}
	if ok0 {
		sizes = []int64{int64(m0.pageSize)}
	}
	for _, ps := range sizes {
		if m1, ok1 = parseMeta(read(ps)); ok1 {
			break
		}
	}
	var m metaPage
	switch {
	case ok0 && ok1:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case ok0:
		m = m0
	case ok1:
		m = m1
	default:
		return corrupt("not a valid store file (%d bytes): both meta pages are damaged; restore it from a backup", size)
	}
	need := int64(m.hwm) * int64(m.pageSize)
	if m.hwm < 2 || m.root >= m.hwm || (m.free >= m.hwm && m.free != ^uint64(0)) {
		return corrupt("the meta page names pages beyond its high-water mark; restore the file from a backup")
	}
	if size < need {
		return corrupt("the file is truncated: %d bytes, but its pages need %d; restore it from a backup", size, need)
	}
	if m.free != ^uint64(0) {
		if err := checkFreelist(f, m); err != nil {
			return err
		}
	}
	return nil
}

// checkFreelist checks the freelist page that bbolt.Open reads: a panic
// there would leave the file open and locked in this process.
func checkFreelist(f *os.File, m metaPage) error {
	const freelistFlag = 0x10
	ps := int64(m.pageSize)
	hdr := make([]byte, pageHeaderLen+8)
	if _, err := f.ReadAt(hdr, int64(m.free)*ps); err != nil {
		return corrupt("freelist page %d: %v", m.free, err)
	}
	ne := binary.NativeEndian
	id, flags, count, overflow := ne.Uint64(hdr), ne.Uint16(hdr[8:]), uint64(ne.Uint16(hdr[10:])), uint64(ne.Uint32(hdr[12:]))
	if id != m.free || flags&freelistFlag == 0 || m.free+overflow >= m.hwm {
		return corrupt("freelist page %d has a damaged header", m.free)
	}
	off := int64(pageHeaderLen)
	if count == 0xFFFF { // the real count is the first element
		count, off = ne.Uint64(hdr[pageHeaderLen:]), off+8
	}
	if uint64(off)+count*8 > (overflow+1)*uint64(ps) {
		return corrupt("freelist page %d: %d ids do not fit", m.free, count)
	}
	ids := make([]byte, count*8)
	if _, err := f.ReadAt(ids, int64(m.free)*ps+off); err != nil {
		return corrupt("freelist page %d: %v", m.free, err)
	}
	for i := range count {
		if pid := ne.Uint64(ids[i*8:]); pid < 2 || pid >= m.hwm {
			return corrupt("freelist page %d lists page %d outside the file's pages", m.free, pid)
		}
	}
	return nil
}

// verify walks every record of the open store and runs bbolt's consistency
// check; it returns an error wrapping store.ErrCorrupt if anything is
// damaged.
func (s *Store) verify() error {
	err := s.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKV, bucketMeta, bucketLog} {
			if tx.Bucket(name) == nil {
				return corrupt("bucket %q is missing", name)
			}
		}
		rev, err := getUint(tx.Bucket(bucketMeta), keyRev)
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
			kv, err := decodeKV(k, v)
			if err != nil {
				return err
			}
			if kv.ModRevision > rev || kv.CreateRevision > kv.ModRevision {
				return corrupt("record for key %q has revisions %d/%d beyond the store's %d", k, kv.CreateRevision, kv.ModRevision, rev)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketLog).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return corrupt("log key %x", k)
			}
			r := int64(binary.BigEndian.Uint64(k))
			if r > rev {
				return corrupt("log entry for revision %d beyond the store's %d", r, rev)
			}
			_, err := decodeEvents(r, v, nil)
			return err
		})
	})
	if err != nil {
		return err
	}
	return s.run(false, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			var problems []error
			for err := range tx.Check() {
				if len(problems) < 5 {
					problems = append(problems, err)
				}
			}
			if len(problems) > 0 {
				return corrupt("consistency check: %v", errors.Join(problems...))
			}
			return nil
		})
	})
}

// verifyIf verifies the store if its file existed before Open (a new one
// has nothing to check yet).
func (s *Store) verifyIf(existed bool) error {
	if !existed {
		return nil
	}
	return s.verify()
}

// WriteTo writes a consistent copy of the whole store file to w (a hot
// backup: writers are not blocked) and returns the bytes written.
func (s *Store) WriteTo(w io.Writer) (int64, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("boltstore: backup: %w", store.ErrClosed)
	}
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("boltstore: backup: %w", err)
	}
	return n, nil
}

// Verify checks the store file at path (which must not be open) without
// changing it: what Open checks. It is for tools (restore) that vouch for a
// file before using it.
func Verify(path string) error {
	if exists, err := preflight(path); err != nil || !exists {
		return fmt.Errorf("boltstore: %s: %w", path, cmp.Or(err, fs.ErrNotExist))
	}
	var db *bolt.DB
	err, _ := guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: DefaultTimeout, ReadOnly: true})
		return err
	})
	if err != nil {
		return fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	defer db.Close()
	if err := s.verify(); err != nil {
		return fmt.Errorf("boltstore: %s: %w", path, err)
	}
	return nil
}

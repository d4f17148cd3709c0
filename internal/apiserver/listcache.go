package apiserver

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// vmCache keeps the rendered JSON of instances so that listing a large scale
// set re-renders only what changed. An entry is valid while the instance
// record (its store revision), the scale set record, and the host's
// observation (its generation) are the ones it was rendered from.
type vmCache struct {
	mu   sync.Mutex
	sets map[string]*cachedSet
	tick uint64
}

// cachedSet is the renderings of one scale set's instances.
type cachedSet struct {
	vms  map[string]*cachedVM
	used uint64 // the cache's tick when last listed
}

// maxCachedSets bounds the cache; the least recently listed set goes first.
const maxCachedSets = 256

type cachedVM struct {
	rev, setRev int64
	expand      bool
	host, vmid  string
	observed    bool
	gen         uint64
	body        []byte
}

func (c *vmCache) get(setKey string) map[string]*cachedVM {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs := c.sets[setKey]; cs != nil {
		return cs.vms
	}
	return nil
}

func (c *vmCache) put(setKey string, m map[string]*cachedVM) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets == nil {
		c.sets = map[string]*cachedSet{}
	}
	if m == nil {
		delete(c.sets, setKey)
		return
	}
	c.tick++
	c.sets[setKey] = &cachedSet{vms: m, used: c.tick}
	for len(c.sets) > maxCachedSets {
		oldest, at := "", uint64(0)
		for k, cs := range c.sets {
			if oldest == "" || cs.used < at {
				oldest, at = k, cs.used
			}
		}
		delete(c.sets, oldest)
	}
}

// bufPool recycles list response buffers (megabytes for large sets).
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// listInstances writes a page of instances, reusing cached renderings.
func (s *Server) listInstances(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	ref := s.ref(rc)
	set, setRev, err := s.loadSet(ctx, ref)
	if err != nil {
		if errs.IsKind(err, errs.NotFound) {
			s.vms.put(ref.String(), nil) // the set is gone: forget its renderings
		}
		return err
	}
	prefix := model.InstancePrefix(ref)
	start, err := pageStart(rc, prefix, validInstanceSuffix)
	if err != nil {
		return err
	}
	// Only this page's records are read; the renderings of the set's other
	// instances stay cached, those of instances gone from this page's key
	// range are dropped.
	kvs, nextKey, err := state.ListPage(ctx, s.opts.Store, prefix, start, s.opts.PageSize)
	if err != nil {
		return err
	}
	expand := expandInstanceView(rc)
	old := s.vms.get(ref.String())
	lo, hi := start, nextKey
	if lo == "" {
		lo = prefix
	}
	fresh := make(map[string]*cachedVM, max(len(old), len(kvs)))
	for k, e := range old {
		if k < lo || hi != "" && k >= hi {
			fresh[k] = e
		}
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<20 {
			bufPool.Put(buf)
		}
	}()
	buf.WriteString(`{"value":[`)
	for i, kv := range kvs {
		key := string(kv.Key)
		e, err := s.renderCached(set, setRev, kv, old[key], expand)
		if err != nil {
			return err
		}
		fresh[key] = e
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e.body)
	}
	next := ""
	if nextKey != "" {
		next = pageLink(r, prefix, nextKey)
	}
	if len(fresh) > 2*int(s.opts.MaxCapacity)+s.opts.PageSize {
		// Renderings of instances deleted outside the pages listed lately:
		// start over rather than grow.
		fresh = nil
	}
	buf.WriteString("]")
	if next != "" {
		buf.WriteString(`,"nextLink":`)
		b, _ := json.Marshal(next)
		buf.Write(b)
	}
	buf.WriteString("}\n")
	s.vms.put(ref.String(), fresh)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

func (s *Server) renderCached(set *model.ScaleSet, setRev int64, kv store.KV, e *cachedVM, expand bool) (*cachedVM, error) {
	if e != nil && e.rev == kv.ModRevision && e.setRev == setRev && e.expand == expand {
		if !expand {
			return e, nil
		}
		obs, ok := s.opts.Observer.Observe(&model.Instance{Host: e.host, VMID: e.vmid})
		if ok == e.observed && obs.Gen == e.gen {
			return e, nil
		}
	}
	inst := &model.Instance{}
	if err := json.Unmarshal(kv.Value, inst); err != nil {
		return nil, err
	}
	ne := &cachedVM{rev: kv.ModRevision, setRev: setRev, expand: expand, host: inst.Host, vmid: inst.VMID}
	if expand {
		// Read the generation before rendering: a change in between makes
		// the next list render again rather than serve a stale view.
		obs, ok := s.opts.Observer.Observe(inst)
		ne.observed, ne.gen = ok, obs.Gen
	}
	b, err := json.Marshal(s.renderInstance(set, inst, expand))
	if err != nil {
		return nil, err
	}
	ne.body = b
	return ne, nil
}

// validInstanceSuffix accepts an instance key relative to its set's prefix:
// a zero-padded id.
func validInstanceSuffix(rel string) bool {
	if len(rel) != 12 {
		return false
	}
	for _, c := range rel {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

package dashboard

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
)

// hub fans host-change notifications out to open event streams.
type hub struct {
	mu   sync.Mutex
	subs map[chan struct{}]bool
}

func (h *hub) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan struct{}]bool{}
	}
	h.subs[ch] = true
	h.mu.Unlock()
	return ch
}

func (h *hub) unsubscribe(ch chan struct{}) {
	h.mu.Lock()
	delete(h.subs, ch)
	h.mu.Unlock()
}

func (h *hub) broadcast() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default: // already woken: changes coalesce
		}
	}
}

// keepAlive is how often an idle stream sends a comment line, so proxies
// and the browser keep it open. It carries no data.
const keepAlive = 25 * time.Second

// events is the scale set page's server-sent event stream: the heatmap and
// the rollout panel, re-rendered (through the API, as the principal) when
// the store's watch reports a change to the set, its instances or its
// rollouts, or a host reports a changed observation.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	c := d.client(s)
	ref := refOf(r)
	if !ref.valid() {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if _, _, err := c.getSet(ctx, ref); err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	mref := model.SetRef{Sub: ref.Sub, RG: ref.RG, Name: ref.Name}
	wake := make(chan struct{}, 1)
	ended := make(chan struct{})
	var once sync.Once
	watch := func(prefix string, exact string) error {
		ch, err := d.opts.Store.Watch(ctx, prefix, 0)
		if err != nil {
			return err
		}
		go func() {
			for ev := range ch {
				if exact != "" && string(ev.KV.Key) != exact {
					continue
				}
				select {
				case wake <- struct{}{}:
				default:
				}
			}
			once.Do(func() { close(ended) }) // fell behind or store closed: the browser reconnects
		}()
		return nil
	}
	for _, p := range [][2]string{
		{model.InstancePrefix(mref), ""}, {model.RolloutPrefix(mref), ""},
		{model.ScaleSetKey(mref), model.ScaleSetKey(mref)}, {model.ScaleSetStatusKey(mref), model.ScaleSetStatusKey(mref)},
	} {
		if err := watch(p[0], p[1]); err != nil {
			http.Error(w, "watch: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	hostCh := d.hub.subscribe()
	defer d.hub.unsubscribe(hostCh)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func() error {
		// A render in flight finishes even if the browser leaves (its API
		// reads would otherwise fail as cancelled, logged as errors).
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer rcancel()
		hm, ro, err := d.fragments(rctx, c, ref, s.csrf)
		if err != nil {
			return err
		}
		if err := writeEvent(w, "heatmap", hm); err != nil {
			return err
		}
		if err := writeEvent(w, "rollout", ro); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send(); err != nil {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ended:
			return
		case <-d.closed:
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			continue
		case <-wake:
		case <-hostCh:
		}
		if err := send(); err != nil {
			return
		}
	}
}

// writeEvent writes one SSE event; every line of data is its own "data:"
// field.
func writeEvent(w http.ResponseWriter, name string, data template.HTML) error {
	var b strings.Builder
	b.WriteString("event: " + name + "\n")
	for _, line := range strings.Split(string(data), "\n") {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteString("\n")
	_, err := fmt.Fprint(w, b.String())
	return err
}

// hostsTable counts instances by host and state (operators only).
func (d *Dashboard) hostsTable(ctx context.Context) (Table, error) {
	t := Table{Heading: "Hosts", Cols: []string{"Host", "Instances", "Desired running", "Desired stopped/deallocated", "Sizes"}}
	insts, _, err := state.List[model.Instance](ctx, d.opts.Store, model.PrefixInstances)
	if err != nil {
		return t, err
	}
	type agg struct {
		n, run, off int
		sizes       map[string]int
	}
	by := map[string]*agg{}
	for _, in := range insts {
		a := by[in.Host]
		if a == nil {
			a = &agg{sizes: map[string]int{}}
			by[in.Host] = a
		}
		a.n++
		if in.Power == "" || strings.EqualFold(in.Power, "running") {
			a.run++
		} else {
			a.off++
		}
		a.sizes[in.Size]++
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := by[n]
		var sz []string
		for k, v := range a.sizes {
			sz = append(sz, fmt.Sprintf("%s×%d", k, v))
		}
		sort.Strings(sz)
		t.Rows = append(t.Rows, []string{cmp.Or(n, "(unplaced)"), fmt.Sprint(a.n), fmt.Sprint(a.run), fmt.Sprint(a.off), strings.Join(sz, " ")})
	}
	return t, nil
}

package deploy

import (
	"strings"

	"github.com/vmssd/vmssd/internal/template"
)

// Node states in a deployment graph.
const (
	nodePending = iota
	nodeRunning
	nodeDone
	nodeFailed
	nodeBlocked // a dependency failed (or the deployment was canceled): never started
)

// graph is the dependency graph of a template's deployed resources: each
// resource waits for the resources its DependsOn names that the template
// deploys (a dependency on a resource whose condition is false, on an
// "existing" one, or on a resource not in the template is satisfied).
type graph struct {
	res   []*template.Resource
	deps  [][]int
	state []int
}

// deployed reports whether the executor applies r.
func deployed(r *template.Resource) bool { return r.Condition && !r.Existing }

func newGraph(rs []*template.Resource) *graph {
	g := &graph{}
	idx := map[string]int{}
	for _, r := range rs {
		if !deployed(r) {
			continue
		}
		if _, dup := idx[lower(r.ID)]; dup {
			continue
		}
		idx[lower(r.ID)] = len(g.res)
		g.res = append(g.res, r)
	}
	g.deps = make([][]int, len(g.res))
	g.state = make([]int, len(g.res))
	for i, r := range g.res {
		for _, d := range r.DependsOn {
			if j, ok := idx[lower(d)]; ok && j != i {
				g.deps[i] = append(g.deps[i], j)
			}
		}
	}
	return g
}

// ready returns the pending nodes whose dependencies are all done, and
// marks blocked the pending nodes with a failed or blocked dependency
// (repeatedly, so a whole chain is blocked at once).
func (g *graph) ready() []int {
	for changed := true; changed; {
		changed = false
		for i, st := range g.state {
			if st != nodePending {
				continue
			}
			for _, j := range g.deps[i] {
				if g.state[j] == nodeFailed || g.state[j] == nodeBlocked {
					g.state[i] = nodeBlocked
					changed = true
					break
				}
			}
		}
	}
	var out []int
	for i, st := range g.state {
		if st != nodePending {
			continue
		}
		ok := true
		for _, j := range g.deps[i] {
			if g.state[j] != nodeDone {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, i)
		}
	}
	return out
}

// running counts nodes in flight.
func (g *graph) running() int {
	n := 0
	for _, st := range g.state {
		if st == nodeRunning {
			n++
		}
	}
	return n
}

// blockAll marks every pending node blocked (a cancel).
func (g *graph) blockAll() {
	for i, st := range g.state {
		if st == nodePending {
			g.state[i] = nodeBlocked
		}
	}
}

// cycle reports a dependency cycle as the names of one, or nil. A cycle
// would leave nodes pending forever.
func (g *graph) cycle() []string {
	color := make([]int, len(g.res)) // 0 white, 1 grey, 2 black
	var stack []int
	var found []int
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = 1
		stack = append(stack, i)
		for _, j := range g.deps[i] {
			if color[j] == 1 {
				for k := len(stack) - 1; k >= 0; k-- {
					found = append(found, stack[k])
					if stack[k] == j {
						break
					}
				}
				return true
			}
			if color[j] == 0 && visit(j) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = 2
		return false
	}
	for i := range g.res {
		if color[i] == 0 && visit(i) {
			names := make([]string, len(found))
			for k, n := range found {
				names[len(found)-1-k] = g.res[n].Name
			}
			return names
		}
	}
	return nil
}

// isType compares ARM resource types case-insensitively.
func isType(r *template.Resource, typ string) bool { return strings.EqualFold(r.Type, typ) }

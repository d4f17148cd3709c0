package dashboard

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Cell is one instance as the heatmap shows it.
type Cell struct {
	ID      string
	UD, FD  int
	Power   string // running, starting, stopping, stopped, deallocating, deallocated, failed, unknown
	Health  string // healthy, unhealthy, unknown
	Latest  bool   // latestModelApplied
	Version string // the image version the instance runs
	IP      string
	Prov    string // provisioning state
	// Protected is protection from scale-in or from scale set actions.
	Protected bool
}

// Glyph is the power state's shape, so that state is never told by colour
// alone.
func (c Cell) Glyph() string {
	switch c.Power {
	case "running":
		return "●"
	case "starting":
		return "▲"
	case "stopping":
		return "▼"
	case "stopped":
		return "■"
	case "deallocating":
		return "◆"
	case "deallocated":
		return "□"
	case "failed":
		return "✖"
	}
	return "?"
}

// Label is the cell's accessible description and hover text.
func (c Cell) Label() string {
	s := fmt.Sprintf("Instance %s: %s, health %s, version %s", c.ID, c.Power, c.Health, cmp.Or(c.Version, "unknown"))
	if c.IP != "" {
		s += ", private IP " + c.IP
	}
	if !c.Latest {
		s += ", not on the latest model"
	}
	if c.Protected {
		s += ", protected"
	}
	if c.Prov != "" && c.Prov != "Succeeded" {
		s += ", provisioning " + c.Prov
	}
	return s
}

// Row is one update domain: its cells by fault domain.
type Row struct {
	UD    int
	Cells [][]Cell // indexed like Grid.FDs
	IDs   []string // every instance of the row, for the row's actions
}

// Grid is the heatmap: rows are update domains, columns fault domains.
type Grid struct {
	FDs   []int
	Rows  []Row
	Count int
	// Versions counts instances by image version (the timeline's sample).
	Versions map[string]int
}

// BuildGrid arranges cells by update and fault domain, in instance id
// order within a cell. Pure.
func BuildGrid(cells []Cell) Grid {
	g := Grid{Count: len(cells), Versions: map[string]int{}}
	fdSet, udSet := map[int]bool{}, map[int]bool{}
	for _, c := range cells {
		fdSet[c.FD], udSet[c.UD] = true, true
		g.Versions[cmp.Or(c.Version, "unknown")]++
	}
	for fd := range fdSet {
		g.FDs = append(g.FDs, fd)
	}
	sort.Ints(g.FDs)
	var uds []int
	for ud := range udSet {
		uds = append(uds, ud)
	}
	sort.Ints(uds)
	sorted := slices.Clone(cells)
	slices.SortFunc(sorted, func(a, b Cell) int { return cmpID(a.ID, b.ID) })
	for _, ud := range uds {
		row := Row{UD: ud, Cells: make([][]Cell, len(g.FDs))}
		for _, c := range sorted {
			if c.UD != ud {
				continue
			}
			row.Cells[slices.Index(g.FDs, c.FD)] = append(row.Cells[slices.Index(g.FDs, c.FD)], c)
			row.IDs = append(row.IDs, c.ID)
		}
		g.Rows = append(g.Rows, row)
	}
	return g
}

// cmpID orders numeric instance ids numerically.
func cmpID(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

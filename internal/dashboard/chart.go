package dashboard

import (
	"fmt"
	"sort"
	"strings"
)

// Series is one image version's line in the timeline chart.
type Series struct {
	Version string
	Points  string // SVG polyline points
	Colour  string
	Dash    string // a dash pattern, so lines differ by more than colour
	Last    int
}

// Chart is the timeline chart: instances by image version over time.
type Chart struct {
	W, H   int
	Series []Series
	Max    int
	Span   string
}

var chartColours = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"}
var chartDashes = []string{"", "6 3", "2 2", "8 2 2 2", "4 4", "1 3"}

// BuildChart lays samples out as step lines, one per version. Pure.
func BuildChart(samples []Sample, w, h int) Chart {
	c := Chart{W: w, H: h}
	if len(samples) == 0 {
		return c
	}
	versions := map[string]bool{}
	for _, s := range samples {
		for v, n := range s.Counts {
			versions[v] = true
			c.Max = max(c.Max, n)
		}
	}
	if c.Max == 0 {
		c.Max = 1
	}
	t0, t1 := samples[0].T, samples[len(samples)-1].T
	span := t1.Sub(t0)
	c.Span = span.Round(1e9).String()
	x := func(i int) float64 {
		if span <= 0 {
			return float64(w) * float64(i) / float64(max(1, len(samples)-1))
		}
		return float64(w) * float64(samples[i].T.Sub(t0)) / float64(span)
	}
	y := func(n int) float64 { return float64(h) - float64(h-4)*float64(n)/float64(c.Max) - 2 }
	names := make([]string, 0, len(versions))
	for v := range versions {
		names = append(names, v)
	}
	sort.Strings(names)
	for i, v := range names {
		var pts []string
		prev := -1
		for j, s := range samples {
			n := s.Counts[v]
			if prev >= 0 && n != prev { // a step: hold the previous value until now
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(j), y(prev)))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(j), y(n)))
			prev = n
		}
		if len(samples) == 1 {
			pts = append(pts, fmt.Sprintf("%d,%.1f", w, y(prev)))
		}
		c.Series = append(c.Series, Series{
			Version: v, Points: strings.Join(pts, " "), Colour: chartColours[i%len(chartColours)],
			Dash: chartDashes[i%len(chartDashes)], Last: samples[len(samples)-1].Counts[v],
		})
	}
	return c
}

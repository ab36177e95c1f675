package ui

import (
	"fmt"
	"math"
)

// Chart is a bar chart drawn as SVG by the templates: one bar per value,
// scaled to the largest.
type Chart struct {
	// Title names the chart for screen readers; Max is the top of the
	// scale, said in words beside the chart.
	Title, Max string
	Bars       []Bar
	// Empty tells that every value is zero.
	Empty bool
}

// Bar is one bar, in the chart's 600×120 viewBox.
type Bar struct {
	X, Y, W, H float64
	// Label is said on hover.
	Label string
}

// Chart geometry, in viewBox units.
const (
	chartW, chartH = 600.0, 120.0
)

// NewChart scales values to bars; label(i, v) is bar i's hover text and
// unit formats the scale's top.
func NewChart(title string, values []float64, label func(i int, v float64) string, unit func(float64) string) Chart {
	c := Chart{Title: title, Empty: true}
	top := 0.0
	for _, v := range values {
		top = math.Max(top, v)
	}
	if top > 0 {
		c.Empty = false
	}
	c.Max = unit(top)
	if len(values) == 0 {
		return c
	}
	w := chartW / float64(len(values))
	for i, v := range values {
		h := 0.0
		if top > 0 {
			h = v / top * chartH
		}
		if v > 0 && h < 1 {
			h = 1 // a non-zero bar stays visible
		}
		c.Bars = append(c.Bars, Bar{X: round(float64(i) * w), Y: round(chartH - h), W: round(math.Max(w-1, 1)), H: round(h),
			Label: label(i, v)})
	}
	return c
}

func round(f float64) float64 { return math.Round(f*100) / 100 }

// Count formats a count for a chart's scale.
func Count(f float64) string { return fmt.Sprintf("%.0f", f) }

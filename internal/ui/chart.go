package ui

import (
	"fmt"
	"math"
)

// Chart is a bar chart drawn as SVG by the templates: one bar per value,
// scaled to the largest, with the values on a left axis and the bars'
// times below.
type Chart struct {
	// Title names the chart for screen readers; Max is the top of the
	// scale, said in words beside the chart.
	Title, Max string
	Bars       []Bar
	// YTicks mark the value axis (0, half the top, the top); XTicks mark
	// times along the bottom.
	YTicks, XTicks []Tick
	// Empty tells that every value is zero.
	Empty bool
}

// Bar is one bar, in the chart's viewBox (see ChartWidth, ChartHeight).
type Bar struct {
	X, Y, W, H float64
	// Label is said on hover.
	Label string
}

// Tick is one label of an axis at (X, Y) in the viewBox, the position of
// its text; a value tick's grid line runs across the plot at Y.
type Tick struct {
	X, Y   float64
	Label  string
	Anchor string // the text's anchor: start, middle or end
}

// Chart geometry, in viewBox units: the plot area is [PlotLeft,
// PlotRight] × [plotTop, PlotBottom], the value labels left of it, the
// time labels below.
const (
	ChartWidth, ChartHeight = 480.0, 150.0
	PlotLeft, PlotRight     = 56.0, 472.0
	plotTop, PlotBottom     = 8.0, 126.0
	plotW, plotH            = PlotRight - PlotLeft, PlotBottom - plotTop
	// timeTickEvery is how many bars apart the time labels are.
	timeTickEvery = 15
)

// NewChart scales values to bars. label(i, v) is bar i's hover text, unit
// formats a value for the axis and the scale's top, and at(i) names bar
// i's time for the time axis.
func NewChart(title string, values []float64, label func(i int, v float64) string, unit func(float64) string,
	at func(i int) string) Chart {
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
	for _, f := range []float64{0, 0.5, 1} {
		c.YTicks = append(c.YTicks, Tick{X: PlotLeft - 6, Y: round(PlotBottom - f*plotH), Label: unit(f * top), Anchor: "end"})
	}
	w := plotW / float64(len(values))
	for i, v := range values {
		h := 0.0
		if top > 0 {
			h = v / top * plotH
		}
		if v > 0 && h < 1 {
			h = 1 // a non-zero bar stays visible
		}
		x := PlotLeft + float64(i)*w
		c.Bars = append(c.Bars, Bar{X: round(x), Y: round(PlotBottom - h), W: round(math.Max(w-1, 1)), H: round(h),
			Label: label(i, v)})
		// Times counted back from the newest bar, which is labelled.
		if (len(values)-1-i)%timeTickEvery == 0 {
			t := Tick{X: round(x + w/2), Y: ChartHeight - 6, Label: at(i), Anchor: "middle"}
			if i == len(values)-1 {
				t.X, t.Anchor = PlotRight, "end"
			}
			c.XTicks = append(c.XTicks, t)
		}
	}
	return c
}

func round(f float64) float64 { return math.Round(f*100) / 100 }

// Count formats a count for a chart's scale.
func Count(f float64) string { return fmt.Sprintf("%.0f", f) }

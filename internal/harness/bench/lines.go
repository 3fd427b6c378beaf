package bench

import (
	"fmt"
	"strings"
)

// Series is one line of a LinePanel: Y[i] at X[i], X ascending.
type Series struct {
	Name string
	X, Y []float64
}

// LinePanel is one chart of Lines: its series share the axes, y from 0.
type LinePanel struct {
	Title  string
	Series []Series
}

// Lines renders panels as an SVG of line charts, two a row, under title;
// xLabel names the shared x axis. Used for curves over time, such as the
// long run's memory and lengths.
func Lines(title, xLabel string, panels []LinePanel) string {
	var b strings.Builder
	svgStart(&b, len(panels), title)
	for i, p := range panels {
		x := float64((i % 2) * (panelW + panelGap/2))
		y := float64(50 + (i/2)*(panelH+panelGap))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="13" font-weight="bold">%s</text>`+"\n", x+10, y+18, esc(p.Title))
		linePanel(&b, x, y, xLabel, p.Series)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// linePanel draws series on linear axes from 0, the legend below.
func linePanel(b *strings.Builder, x, y float64, xLabel string, ss []Series) {
	xTop, yTop := 0.0, 0.0
	for _, s := range ss {
		for i := range s.X {
			xTop, yTop = max(xTop, s.X[i]), max(yTop, s.Y[i])
		}
	}
	xTop, yTop = niceCeil(xTop), niceCeil(yTop)
	x0, y0 := x+marginLeft, y+marginTop
	w, h := float64(panelW-marginLeft-marginRight), float64(panelH-marginTop-marginBot)
	xOf := func(v float64) float64 { return x0 + v/xTop*w }
	yOf := func(v float64) float64 { return y0 + h - v/yTop*h }
	for i := 0; i <= 5; i++ {
		gridLine(b, x0, yOf(yTop*float64(i)/5), w, trimFloat(yTop*float64(i)/5))
		v := xTop * float64(i) / 5
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%s</text>`+"\n", xOf(v), y0+h+14, trimFloat(v))
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%s</text>`+"\n", x0+w/2, y0+h+30, esc(xLabel))
	for i, s := range ss {
		color := scenarioColors[i%len(scenarioColors)]
		pts := make([]string, len(s.X))
		for j := range s.X {
			pts[j] = fmt.Sprintf("%.1f,%.1f", xOf(s.X[j]), yOf(s.Y[j]))
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></polyline>`+"\n", strings.Join(pts, " "), color, esc(s.Name))
		lx, ly := x0+float64(i%3)*(w/3), y0+h+46+float64(i/3)*14
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f" font-size="11">%s</text>`+"\n",
			lx, ly-9, color, lx+13, ly, esc(s.Name))
	}
	axes(b, x0, y0, w, h)
}

package bench

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// Plot geometry, in SVG user units (pixels).
const (
	plotWidth   = 1000
	panelW      = 480
	panelH      = 320
	panelGap    = 40
	marginLeft  = 64
	marginRight = 12
	marginTop   = 44
	marginBot   = 84 // room for slanted scenario names
)

var (
	percentileColors = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2"}
	scenarioColors   = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac"}
)

// Plot renders summaries as an SVG: for every payload size, a throughput
// panel (median bar, min–max whisker per scenario) and, for every offered
// rate, a latency panel (p50/p90/p99/p99.9 per scenario, log scale).
func Plot(sums []Summary) string {
	type panel struct {
		title string
		draw  func(b *strings.Builder, x, y float64)
	}
	type group struct {
		fsync string
		size  int
	}
	var panels []panel
	var sizes []group
	bySize := map[group][]Summary{}
	policies := map[string]bool{}
	for _, s := range sums {
		g := group{s.Fsync, s.Size}
		if _, ok := bySize[g]; !ok {
			sizes = append(sizes, g)
		}
		bySize[g] = append(bySize[g], s)
		policies[s.Fsync] = true
	}
	for _, size := range sizes {
		var thr []Summary
		var rates []float64
		byRate := map[float64][]Summary{}
		for _, s := range bySize[size] {
			if s.Mode == ModeThroughput {
				thr = append(thr, s)
				continue
			}
			if _, ok := byRate[s.Rate]; !ok {
				rates = append(rates, s.Rate)
			}
			byRate[s.Rate] = append(byRate[s.Rate], s)
		}
		bytes := payloadLabel(bySize[size])
		if len(policies) > 1 {
			bytes += ", " + size.fsync
		}
		if len(thr) > 0 {
			panels = append(panels, panel{
				title: fmt.Sprintf("Throughput, msg/s, max (%s)", bytes),
				draw:  func(b *strings.Builder, x, y float64) { throughputPanel(b, x, y, thr) },
			})
		}
		for _, r := range rates {
			rs := byRate[r]
			panels = append(panels, panel{
				title: fmt.Sprintf("Latency, ms (log), at %g msg/s (%s)", r, bytes),
				draw:  func(b *strings.Builder, x, y float64) { latencyPanel(b, x, y, rs) },
			})
		}
	}
	var b strings.Builder
	svgStart(&b, len(panels), "End-to-end benchmark: median over repetitions")
	if len(panels) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="60">no results</text>`+"\n", marginLeft)
	}
	for i, p := range panels {
		x := float64((i % 2) * (panelW + panelGap/2))
		y := float64(50 + (i/2)*(panelH+panelGap))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="13" font-weight="bold">%s</text>`+"\n", x+10, y+18, esc(p.title))
		p.draw(&b, x, y)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// svgStart opens an SVG with room for n panels, two a row, under title.
func svgStart(b *strings.Builder, n int, title string) {
	height := 50 + (n+1)/2*(panelH+panelGap)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`+"\n",
		plotWidth, height, plotWidth, height)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(b, `<text x="%d" y="28" font-size="18" font-weight="bold">%s</text>`+"\n", marginLeft, esc(title))
}

// payloadLabel names the payload size of a group of summaries.
func payloadLabel(ss []Summary) string {
	n := 0
	for _, s := range ss {
		n = max(n, s.PayloadBytes)
	}
	if n == 0 {
		n = ss[0].Size
	}
	return fmt.Sprintf("%d B payload", n)
}

// throughputPanel draws median throughput bars with min–max whiskers.
func throughputPanel(b *strings.Builder, x, y float64, ss []Summary) {
	top := 0.0
	for _, s := range ss {
		top = max(top, s.Throughput.Max, s.Throughput.Median)
	}
	top = niceCeil(top)
	x0, y0 := x+marginLeft, y+marginTop
	w, h := float64(panelW-marginLeft-marginRight), float64(panelH-marginTop-marginBot)
	yOf := func(v float64) float64 { return y0 + h - v/top*h }
	for i := 0; i <= 5; i++ {
		v := top * float64(i) / 5
		gridLine(b, x0, yOf(v), w, fmt.Sprintf("%.0f", v))
	}
	slot := w / float64(len(ss))
	bw := math.Min(slot*0.6, 60)
	for i, s := range ss {
		cx := x0 + slot*(float64(i)+0.5)
		color := scenarioColors[i%len(scenarioColors)]
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %.0f msg/s (%.0f–%.0f)</title></rect>`+"\n",
			cx-bw/2, yOf(s.Throughput.Median), bw, y0+h-yOf(s.Throughput.Median), color, esc(s.Scenario), s.Throughput.Median, s.Throughput.Min, s.Throughput.Max)
		if s.Throughput.Max > s.Throughput.Min {
			fmt.Fprintf(b, `<path d="M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f" stroke="black" stroke-width="1.2"/>`+"\n",
				cx, yOf(s.Throughput.Min), yOf(s.Throughput.Max),
				cx-6, yOf(s.Throughput.Min), cx+6, cx-6, yOf(s.Throughput.Max), cx+6)
		}
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%.0f</text>`+"\n", cx, yOf(math.Max(s.Throughput.Max, s.Throughput.Median))-4, s.Throughput.Median)
		scenarioLabel(b, cx, y0+h, s.Scenario)
	}
	axes(b, x0, y0, w, h)
}

// latencyPanel draws p50/p90/p99/p99.9 bars per scenario on a log scale.
func latencyPanel(b *strings.Builder, x, y float64, ss []Summary) {
	lo, hi := math.Inf(1), 0.0
	for _, s := range ss {
		for _, v := range []float64{s.P50.Median, s.P90.Median, s.P99.Median, s.P999.Median} {
			if v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	x0, y0 := x+marginLeft, y+marginTop
	w, h := float64(panelW-marginLeft-marginRight), float64(panelH-marginTop-marginBot)
	yOf := func(v float64) float64 {
		if v <= 0 {
			return y0 + h
		}
		return y0 + h - (math.Log10(v)-dlo)/(dhi-dlo)*h
	}
	for d := dlo; d <= dhi; d++ {
		for _, m := range []float64{1, 2, 5} {
			// 2 and 5 between the powers of ten, unless they would crowd.
			if v := m * math.Pow(10, d); m == 1 || (d < dhi && dhi-dlo <= 2) {
				gridLine(b, x0, yOf(v), w, trimFloat(v))
			}
		}
	}
	slot := w / float64(len(ss))
	bw := math.Min(slot*0.8/4, 18)
	names := []string{"p50", "p90", "p99", "p99.9"}
	for i, s := range ss {
		cx := x0 + slot*(float64(i)+0.5)
		for j, v := range []float64{s.P50.Median, s.P90.Median, s.P99.Median, s.P999.Median} {
			bx := cx - 2*bw + float64(j)*bw
			top := yOf(v)
			fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s ms</title></rect>`+"\n",
				bx, top, bw-1, y0+h-top, percentileColors[j], esc(s.Scenario), names[j], ms(v))
		}
		scenarioLabel(b, cx, y0+h, s.Scenario)
	}
	axes(b, x0, y0, w, h)
	// Legend, top right.
	lx := x0 + w - 4*58
	for j, n := range names {
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f" font-size="11">%s</text>`+"\n",
			lx+float64(j)*58, y+27, percentileColors[j], lx+float64(j)*58+13, y+36, n)
	}
}

func gridLine(b *strings.Builder, x0, y, w float64, label string) {
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y, x0+w, y)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" font-size="11">%s</text>`+"\n", x0-5, y+4, label)
}

func axes(b *strings.Builder, x0, y0, w, h float64) {
	fmt.Fprintf(b, `<path d="M%.1f %.1fV%.1fH%.1f" stroke="black" fill="none"/>`+"\n", x0, y0, y0+h, x0+w)
}

func scenarioLabel(b *strings.Builder, cx, y float64, name string) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" font-size="11" transform="rotate(-30 %.1f %.1f)">%s</text>`+"\n",
		cx+4, y+14, cx+4, y+14, esc(name))
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string { return strings.TrimSuffix(fmt.Sprintf("%g", v), ".0") }

func esc(s string) string { return html.EscapeString(s) }

// SPDX-License-Identifier: Apache-2.0

package benchfmt

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
)

// Target is one row of the side-by-side table: an operation, the key
// CPython and multiproc share, and the floor keys of the kit's Go limits
// (the best one present is the floor). It mirrors the kit's report.py.
type Target struct {
	Op     string
	Key    string
	Floors []string
}

var (
	rtt     = []string{"rtt.socketpair.block", "rtt.pipe.block", "rtt.socketpair.rawsys", "rtt.pipe.rawsys"}
	sockRTT = []string{"rtt.socketpair.block", "rtt.socketpair.rawsys"}
	futex   = []string{"futex.pingpong", "futex.pingpong.rawsys"}
	start   = []string{"spawn.reexec.handshake"}
)

func tagged(keys []string, tag string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "@" + tag
	}
	return out
}

// Targets are the operations compared, in the kit's order, with a few of
// multiproc's own keys beside them (spawn.reexec.self, the ".forkserver"
// lifecycles and pool.replace.*), which CPython's kit does not measure.
var Targets = []Target{
	{"Process start+join, spawn", "start.spawn", start},
	{"Re-exec of the same binary, exit at once", "spawn.reexec.self", start},
	{"Process start+join, forkserver", "start.forkserver", start},
	{"Process start until its function runs, spawn", "start.spawn.ready", start},
	{"Process start until its function runs, forkserver", "start.forkserver.ready", start},
	{"Pool worker replaced after SIGKILL, spawn", "pool.replace.spawn", start},
	{"Pool worker replaced after SIGKILL, forkserver", "pool.replace.forkserver", start},
	{"Pipe round trip, 16 B", "pipe.rtt.bytes16", rtt},
	{"Pipe round trip, 16 B, same CPU", "pipe.rtt.bytes16@same", tagged(rtt, "same")},
	{"Pipe round trip, small tuple", "pipe.rtt.tuple", rtt},
	{"Pipe round trip, small tuple, pickle codec", "pipe.pickle.rtt", rtt},
	{"Pipe one-way 1 MiB", "pipe.tput.1MiB", []string{"tput.socketpair.1MiB"}},
	{"Pipe(duplex=False) one-way 1 MiB", "pipe.tput.1MiB.simplex", []string{"tput.pipe.1MiB", "tput.pipe.1MiB.bigbuf"}},
	{"Pipe one-way 64 MiB", "pipe.tput.64MiB", []string{"tput.socketpair.64MiB"}},
	{"Queue 1 producer -> 1 consumer", "queue.tput", []string{"stream.frames16.pipe", "stream.frames16.socketpair"}},
	{"Queue 1 -> 1, 1 MiB []byte items, GetBytes into a reused buffer", "queue.tput.big", []string{"memcpy"}},
	{"Queue 1 -> 1, 1 MiB []byte items, Get", "queue.tput.big.get", []string{"memcpy"}},
	{"SimpleQueue 1 -> 1", "simplequeue.tput", []string{"stream.frames16.pipe", "stream.frames16.socketpair"}},
	{"Lock acquire+release, uncontended", "lock.uncontended", []string{"lock.futexmutex.uncontended"}},
	{"Lock, 2 procs incrementing", "lock.contended2", []string{"lock.futex.contended2"}},
	// The kit's mutex in lock.contended2's own harness (syncprim's
	// BenchmarkKit): the same workload and processes, many rounds; the
	// kit's figure above is the median of five single rounds, which
	// swings with where the scheduler puts the two processes.
	{"Lock, 2 procs incrementing, against the kit's mutex in the same harness", "lock.contended2", []string{"lock.contended2.floor"}},
	{"Semaphore ping-pong", "semaphore.pingpong", futex},
	{"Semaphore ping-pong, same CPU", "semaphore.pingpong@same", tagged(futex, "same")},
	{"Event ping-pong", "event.pingpong", futex},
	{"Event ping-pong, same CPU", "event.pingpong@same", tagged(futex, "same")},
	{"Pool(2) lifecycle", "pool.lifecycle", start},
	{"Pool(2) lifecycle, forkserver", "pool.lifecycle.forkserver", start},
	{"Pool(2).map 100k, default chunks", "pool.map.default", []string{"pool.process2.frames.batched"}},
	{"Pool(2).map 100k, chunksize 1", "pool.map.chunk1", []string{"pool.process2.frames"}},
	{"Pool(2).imap_unordered 100k", "pool.imap_unordered", []string{"pool.process2.frames"}},
	{"Pool(2).map 16 x 16 MiB []byte, chunksize 1, returning an int", "pool.map.big.in", []string{"memcpy"}},
	{"Pool(2).map 16 x 16 MiB []byte, chunksize 1, echoed", "pool.map.big.echo", []string{"memcpy"}},
	{"Pool apply_async round trip", "pool.apply_async.rtt", rtt},
	{"Cluster pool, 2 local agents: map 100k, default chunks", "cluster.map.default", []string{"pool.map.default"}},
	{"Cluster pool: map 100k, chunksize 1", "cluster.map.chunk1", []string{"jetstream.tput"}},
	{"Cluster pool: apply round trip", "cluster.apply.rtt", []string{"jetstream.rtt"}},
	{"Cluster pool: map 8 x 8 MiB []byte, chunksize 1, echoed through the Object Store", "cluster.map.big", []string{"pool.map.big.echo"}},
	{"Cluster pool: agent SIGKILL to its chunk done elsewhere (AckWait 1s, 600 ms task)", "cluster.recover", nil},
	{"JetStream floor: publish, pull, ack, answer", "jetstream.rtt", nil},
	{"JetStream floor: 100k published, pulled, acked, answered", "jetstream.tput", nil},
	{"Cluster pool, 3 servers (R3), 2 local agents: map 100k, default chunks", "cluster.map.default.three", []string{"cluster.map.default"}},
	{"Cluster pool, 3 servers (R3): map 100k, chunksize 1", "cluster.map.chunk1.three", []string{"jetstream.tput.three"}},
	{"Cluster pool, 3 servers (R3): apply round trip", "cluster.apply.rtt.three", []string{"jetstream.rtt.three"}},
	{"Cluster pool, 3 servers: stream leader SIGKILL to the next task done", "cluster.failover", nil},
	{"JetStream floor, 3 servers (R3): publish, pull, ack, answer", "jetstream.rtt.three", nil},
	{"JetStream floor, 3 servers (R3): 100k published, pulled, acked, answered", "jetstream.tput.three", nil},
	{"Manager start + shutdown", "manager.lifecycle", start},
	{"Manager start + shutdown, forkserver", "manager.lifecycle.forkserver", start},
	{"Manager dict set", "manager.dict.set", sockRTT},
	{"Manager dict get", "manager.dict.get", sockRTT},
	{"Manager dict get, CPython client of a Go server", "manager.py.dict.get", sockRTT},
	{"Manager list append", "manager.list.append", sockRTT},
	{"SharedMemory create+unlink 1 MiB", "shm.create_unlink.1MiB", []string{"shm.create_unlink.1MiB"}},
	{"SharedMemory attach", "shm.attach", []string{"shm.attach"}},
	{"ShareableList(range(1000))", "shareablelist.create1000", []string{"shm.create_write1000.16KiB"}},
}

// cpythonKeyOf names, for a key CPython's benchmark does not measure under
// that name, the CPython figure it is compared with: the same operation
// where CPython is on both ends.
var cpythonKeyOf = map[string]string{
	"manager.py.dict.get": "manager.dict.get", // CPython's client against CPython's own manager
	"pipe.pickle.rtt":     "pipe.rtt.tuple",   // CPython's Connection.send/recv of the same tuple
}

// Row is one line of the report.
type Row struct {
	Op       string  `json:"op"`
	Key      string  `json:"key"`
	Unit     string  `json:"unit"`
	CPython  float64 `json:"cpython,omitempty"`
	Multi    float64 `json:"multiproc,omitempty"`
	Floor    float64 `json:"floor,omitempty"`
	FloorKey string  `json:"floor_key,omitempty"`
	// SpeedUp is how many times better multiproc is than CPython (>1 is faster).
	SpeedUp float64 `json:"speedup,omitempty"`
	// OverFloor is how many times worse multiproc is than the floor (1 = at the floor).
	OverFloor float64 `json:"over_floor,omitempty"`
}

// LoadSuites reads kit JSON files and merges their results by suite
// ("cpython", "limits", anything else = "golib") and key.
func LoadSuites(paths ...string) (map[string]map[string]Result, error) {
	out := map[string]map[string]Result{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var s Suite
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		name := s.Suite
		if name != "cpython" && name != "limits" {
			name = "golib"
		}
		if out[name] == nil {
			out[name] = map[string]Result{}
		}
		for _, r := range s.Results {
			out[name][r.Key] = r
		}
	}
	return out, nil
}

// worse reports how many times worse a is than b for the given direction.
func worse(a, b float64, better string) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	if better == "lower" {
		return a / b
	}
	return b / a
}

// Rows builds the side-by-side rows for every target multiproc measured.
func Rows(suites map[string]map[string]Result) []Row {
	var rows []Row
	for _, t := range Targets {
		m, ok := suites["golib"][t.Key]
		if !ok {
			continue
		}
		r := Row{Op: t.Op, Key: t.Key, Unit: m.Unit, Multi: m.Median}
		ck := t.Key
		if k, ok := cpythonKeyOf[t.Key]; ok {
			ck = k
		}
		if c, ok := suites["cpython"][ck]; ok {
			r.CPython = c.Median
			r.SpeedUp = worse(c.Median, m.Median, m.Better)
		}
		for _, fk := range t.Floors {
			f, ok := suites["limits"][fk]
			if !ok {
				// A floor multiproc's own benchmarks measure in the same
				// run (memcpy: a plain Go copy of 16 MiB).
				f, ok = suites["golib"][fk]
			}
			if !ok || f.Unit != m.Unit {
				continue
			}
			if r.FloorKey == "" || worse(r.Floor, f.Median, f.Better) > 1 {
				r.Floor, r.FloorKey = f.Median, fk
			}
		}
		if r.Floor != 0 {
			r.OverFloor = worse(m.Median, r.Floor, m.Better)
		}
		rows = append(rows, r)
	}
	return rows
}

// Fmt formats a figure compactly, like the kit's report.py.
func Fmt(x float64) string {
	ax := math.Abs(x)
	switch {
	case x == 0:
		return "-"
	case ax >= 1e6:
		return fmt.Sprintf("%.3gM", x/1e6)
	case ax >= 1e4:
		return fmt.Sprintf("%.3gk", x/1e3)
	case ax >= 100:
		return fmt.Sprintf("%.0f", x)
	case ax >= 10:
		return fmt.Sprintf("%.1f", x)
	case ax >= 1:
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%.3g", x)
}

func ratio(x float64) string {
	if x == 0 {
		return "-"
	}
	return Fmt(x) + "x"
}

// WriteTable prints the rows as a markdown table.
func WriteTable(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| operation | unit | CPython | multiproc | speed-up vs CPython | floor | cost vs floor (1 = at the floor, <1 = better) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		floor := Fmt(r.Floor)
		if r.FloorKey != "" {
			floor += " (" + r.FloorKey + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Op, r.Unit, Fmt(r.CPython), Fmt(r.Multi), ratio(r.SpeedUp), floor, ratio(r.OverFloor))
	}
}

// WriteSVG draws the speed-ups over CPython as horizontal bars on a log scale.
func WriteSVG(w io.Writer, rows []Row, title string) error {
	var rs []Row
	for _, r := range rows {
		if r.SpeedUp > 0 {
			rs = append(rs, r)
		}
	}
	const left, barH, gap, width = 300, 18, 6, 900
	height := 60 + len(rs)*(barH+gap) + 30
	maxV := 1.0
	for _, r := range rs {
		maxV = math.Max(maxV, r.SpeedUp)
	}
	minV := 0.5
	for _, r := range rs {
		minV = math.Min(minV, r.SpeedUp)
	}
	lo, hi := math.Log10(minV), math.Log10(maxV*1.5)
	x := func(v float64) float64 { return left + (math.Log10(v)-lo)/(hi-lo)*float64(width-left-60) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	for _, tick := range []float64{0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000} {
		if tick < minV*0.9 || tick > maxV*1.5 {
			continue
		}
		tx := x(tick)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="40" x2="%.1f" y2="%d" stroke="%s"/><text x="%.1f" y="%d" text-anchor="middle">%gx</text>`+"\n",
			tx, tx, height-25, map[bool]string{true: "#444", false: "#ddd"}[tick == 1], tx, height-10, tick)
	}
	for i, r := range rs {
		y := 45 + i*(barH+gap)
		color := "#2a7ab9"
		if r.SpeedUp < 1 {
			color = "#c0392b"
		}
		x0, x1 := x(1), x(r.SpeedUp)
		if x1 < x0 {
			x0, x1 = x1, x0
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-8, y+13, html.EscapeString(r.Op))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`, x0, y, math.Max(x1-x0, 1), barH, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", x1+4, y+13, ratio(r.SpeedUp))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

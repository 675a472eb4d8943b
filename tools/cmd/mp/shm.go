// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/multiproc/multiproc/shm"
	"github.com/spf13/cobra"
)

// shmDir is where POSIX named shared memory lives on Linux.
const shmDir = "/dev/shm"

// Prefixes of the named resources multiproc and CPython create in /dev/shm:
// shared memory segments (shm.Create and SharedMemory() without a name both
// use "psm_") and CPython's named semaphores ("sem.mp-").
var shmPrefixes = []string{"psm_", "sem.mp-"}

func shmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shm",
		Short: "Inspect and remove named shared memory in /dev/shm",
		Long: `shm lists, removes and dumps the named shared memory that multiproc and
CPython's multiprocessing create in /dev/shm: segments (psm_*, and any name
the resource tracker knows) and CPython's named semaphores (sem.mp-*).`,
	}
	cmd.AddCommand(shmLsCmd(), shmRmCmd(), shmCatCmd())
	return cmd
}

// shmEntry is one file of /dev/shm as mp shm ls shows it.
type shmEntry struct {
	Name string
	Kind string // "shm" or "sem"
	Size int64
	UID  uint32
	Mode fs.FileMode
	PIDs []int // processes mapping it
	// Trackers are the pids of the resource trackers that hold it;
	// TrackErr tells why the trackers could not be asked.
	Trackers []int
	TrackErr error
}

func shmLsCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List named segments with size, owner, mapping processes and tracker status",
		Long: `ls lists the entries of /dev/shm that multiproc and CPython create (psm_*
segments, sem.mp-* semaphores, and anything a running resource tracker holds),
or every entry with --all. For each: its kind, size, mode, owner (user and
uid), the pids of the processes that map it (read from /proc/*/maps;
processes of other users are visible only to root), and the pid of the
resource tracker that holds it ("-": none, so nobody will unlink it if its
creator dies; "?": the trackers could not be asked).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			entries, err := listShm(all)
			if err != nil {
				return err
			}
			return printShm(cmd.OutOrStdout(), entries)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "list every entry of /dev/shm, not only multiproc's and CPython's")
	return cmd
}

// listShm reads /dev/shm and the processes mapping its entries.
func listShm(all bool) ([]shmEntry, error) {
	des, err := os.ReadDir(shmDir)
	if err != nil {
		return nil, fmt.Errorf("shm ls: %w", err)
	}
	tracked, trackErr := trackedNames()
	var out []shmEntry
	for _, de := range des {
		name := de.Name()
		trackers, isTracked := tracked[name]
		if !all && !isTracked && !hasShmPrefix(name) {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if !info.Mode().IsRegular() {
			continue
		}
		e := shmEntry{Name: name, Kind: "shm", Size: info.Size(), Mode: info.Mode().Perm(), Trackers: trackers, TrackErr: trackErr}
		if strings.HasPrefix(name, "sem.") {
			e.Kind = "sem"
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			e.UID = st.Uid
		}
		out = append(out, e)
	}
	users := mappers()
	for i := range out {
		out[i].PIDs = users[out[i].Name]
	}
	return out, nil
}

func hasShmPrefix(name string) bool {
	for _, p := range shmPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// mappers scans /proc/*/maps and returns, for each /dev/shm name, the
// sorted pids of the processes that map it (also after it was unlinked:
// the kernel then appends " (deleted)", and such names are skipped since
// ls lists what is in /dev/shm). Processes whose maps cannot be read
// (other users', or gone meanwhile) are skipped.
func mappers() map[string][]int {
	res := map[string][]int{}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return res
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "maps"))
		if err != nil {
			continue
		}
		seen := map[string]bool{}
		for line := range strings.Lines(string(b)) {
			i := strings.Index(line, " "+shmDir+"/")
			if i < 0 {
				continue
			}
			name := strings.TrimRight(line[i+len(shmDir)+2:], "\n")
			if strings.HasSuffix(name, " (deleted)") || seen[name] {
				continue
			}
			seen[name] = true
			res[name] = append(res[name], pid)
		}
	}
	for _, pids := range res {
		slices.Sort(pids)
	}
	return res
}

func printShm(w io.Writer, entries []shmEntry) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSIZE\tMODE\tOWNER\tPIDS\tTRACKER")
	names := map[uint32]string{}
	for _, e := range entries {
		owner, ok := names[e.UID]
		if !ok {
			owner = strconv.FormatUint(uint64(e.UID), 10)
			if u, err := user.LookupId(owner); err == nil {
				owner = u.Username + "(" + owner + ")"
			}
			names[e.UID] = owner
		}
		trackers := pidList(e.Trackers)
		if e.TrackErr != nil {
			trackers = "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%04o\t%s\t%s\t%s\n", displayName(e.Name), e.Kind, e.Size, uint32(e.Mode), owner, pidList(e.PIDs), trackers)
	}
	return tw.Flush()
}

// pidList prints pids as "1,2,3", or "-" for none.
func pidList(pids []int) string {
	if len(pids) == 0 {
		return "-"
	}
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// displayName prints a name as it is, or Go-quoted when it holds spaces or
// unprintable bytes (a /dev/shm name may hold anything but '/' and NUL).
func displayName(name string) string {
	if q := strconv.Quote(name); q[1:len(q)-1] != name || strings.ContainsAny(name, " \t") {
		return q
	}
	return name
}

// checkShmName refuses what cannot be the name of an entry of /dev/shm,
// before anything touches the file system.
func checkShmName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("invalid segment name %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("invalid segment name %q: a name in /dev/shm holds no '/' or NUL", name)
	case len(name) > 255:
		return fmt.Errorf("invalid segment name %q: longer than 255 bytes", name)
	}
	return nil
}

func shmRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME...",
		Short: "Unlink named segments from /dev/shm",
		Long: `rm unlinks each named entry of /dev/shm (shm_unlink): processes that map it
keep their mapping, and the memory is freed when the last one goes. A name
is given as ls prints it (no leading /dev/shm/); a name holding '/' is
refused, and a missing one is an error.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				if err := checkShmName(name); err != nil {
					return fmt.Errorf("shm rm: %w", err)
				}
			}
			var errs []string
			for _, name := range args {
				if err := rmShm(name); err != nil {
					errs = append(errs, err.Error())
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("shm rm: %s", strings.Join(errs, "; "))
			}
			return nil
		},
	}
}

func rmShm(name string) error {
	path := filepath.Join(shmDir, name)
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: no such segment in %s", name, shmDir)
	}
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s: not a shared memory segment (%v)", name, info.Mode().Type())
	}
	if info.Size() == 0 {
		// shm.Open refuses an empty segment (it cannot be mapped).
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("%s: %w", name, errors.Unwrap(err))
		}
		return nil
	}
	seg, err := shm.Open(name)
	if err != nil {
		return err
	}
	defer seg.Close()
	return seg.Unlink()
}

type catOpts struct {
	offset, length int
	list           bool
}

func shmCatCmd() *cobra.Command {
	var o catOpts
	cmd := &cobra.Command{
		Use:   "cat NAME",
		Short: "Hex dump a segment, or decode it as a ShareableList",
		Long: `cat prints a hex dump of the named segment (offset, 16 bytes in hex, the
bytes as ASCII), from --offset for --length bytes (default: to the end).
With --list it decodes the segment as a CPython ShareableList (the layout of
multiprocessing.shared_memory, also written by shm.NewShareableList) and
prints each item's index, struct format and value.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkShmName(args[0]); err != nil {
				return fmt.Errorf("shm cat: %w", err)
			}
			if o.list {
				return catList(cmd.OutOrStdout(), args[0])
			}
			return catHex(cmd.OutOrStdout(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.offset, "offset", 0, "first byte to dump")
	f.IntVarP(&o.length, "length", "n", -1, "number of bytes to dump (default: to the end)")
	f.BoolVar(&o.list, "list", false, "decode the segment as a CPython ShareableList")
	return cmd
}

func catHex(w io.Writer, name string, o catOpts) error {
	seg, err := shm.Open(name)
	if err != nil {
		return err
	}
	defer seg.Close()
	b := seg.Bytes()
	if o.offset < 0 || o.offset > len(b) {
		return fmt.Errorf("shm cat: offset %d outside the segment (size %d)", o.offset, len(b))
	}
	end := len(b)
	if o.length >= 0 {
		end = min(len(b), o.offset+o.length)
	}
	return hexDump(w, b[o.offset:end], o.offset)
}

// hexDump writes b as hexdump -C does, addresses starting at base.
func hexDump(w io.Writer, b []byte, base int) error {
	var line strings.Builder
	for i := 0; i < len(b); i += 16 {
		row := b[i:min(i+16, len(b))]
		line.Reset()
		fmt.Fprintf(&line, "%08x ", base+i)
		for j := range 16 {
			if j == 8 {
				line.WriteByte(' ')
			}
			if j < len(row) {
				fmt.Fprintf(&line, " %02x", row[j])
			} else {
				line.WriteString("   ")
			}
		}
		line.WriteString("  |")
		for _, c := range row {
			if c < 0x20 || c > 0x7e {
				c = '.'
			}
			line.WriteByte(c)
		}
		line.WriteString("|\n")
		if _, err := io.WriteString(w, line.String()); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%08x\n", base+len(b))
	return err
}

func catList(w io.Writer, name string) error {
	l, err := shm.OpenShareableList(name)
	if err != nil {
		return err
	}
	defer l.Close()
	formats := splitFormats(l.Format())
	if len(formats) != l.Len() {
		return fmt.Errorf("shm cat: %s: format %q does not describe %d items", name, l.Format(), l.Len())
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tFORMAT\tVALUE")
	for i := range l.Len() {
		v, err := l.Get(i)
		if err != nil {
			return fmt.Errorf("shm cat: %s: item %d: %w", name, i, err)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", i, formats[i], pyRepr(v))
	}
	return tw.Flush()
}

// splitFormats splits a ShareableList's struct format into its items'
// formats: "q", "d", "<n>s", and the 8-byte bool and None formats
// ("xxxxxxx?", "xxxxxx?x").
func splitFormats(f string) []string {
	var out []string
	for len(f) > 0 {
		n := 1
		switch c := f[0]; {
		case c == 'x':
			n = min(8, len(f))
		case c >= '0' && c <= '9':
			n = strings.IndexByte(f, 's') + 1
			if n == 0 {
				n = len(f)
			}
		}
		out = append(out, f[:n])
		f = f[n:]
	}
	return out
}

// pyRepr prints a ShareableList item as Python's repr would.
func pyRepr(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		switch {
		case math.IsInf(v, 1):
			return "inf"
		case math.IsInf(v, -1):
			return "-inf"
		case math.IsNaN(v):
			return "nan"
		case v == math.Trunc(v) && math.Abs(v) < 1e16:
			return strconv.FormatFloat(v, 'f', 1, 64)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return strconv.Quote(v)
	case []byte:
		return "b" + strconv.Quote(string(v))
	}
	return fmt.Sprintf("%v", v)
}

// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const childArg = "__floors_child"

func floors() []floor {
	return []floor{
		{"spawn.reexec.handshake", "re-exec of this binary until it writes one byte back, then wait", "ms", "lower", 100, spawnHandshake},
		{"rtt.pipe.block", "16 B round trip over two pipes, blocking read/write", "us", "lower", 10000, rtt(false)},
		{"rtt.socketpair.block", "16 B round trip over a socketpair, blocking read/write", "us", "lower", 10000, rtt(true)},
		{"tput.socketpair.1MiB", "one-way socketpair, 1 MiB writes", "GB/s", "higher", 1024, tput(true, 1<<20, false)},
		{"tput.pipe.1MiB", "one-way pipe, 1 MiB writes", "GB/s", "higher", 1024, tput(false, 1<<20, false)},
		{"tput.pipe.1MiB.bigbuf", "one-way pipe with a 1 MiB pipe buffer, 1 MiB writes", "GB/s", "higher", 1024, tput(false, 1<<20, true)},
		{"tput.socketpair.64MiB", "one-way socketpair, 64 MiB writes", "GB/s", "higher", 16, tput(true, 64<<20, false)},
		{"stream.frames16.pipe", "16 B frames through a pipe, a write each, buffered reads", "items/s", "higher", 500000, frames(false)},
		{"stream.frames16.socketpair", "16 B frames through a socketpair, a write each, buffered reads", "items/s", "higher", 500000, frames(true)},
		{"pool.process2.frames", "2 worker processes answer 16 B task frames, a write per frame", "tasks/s", "higher", 100000, workers(false)},
		{"pool.process2.frames.batched", "2 worker processes answer 16 B task frames, buffered writes", "tasks/s", "higher", 100000, workers(true)},
		{"futex.pingpong", "futex wait/wake ping-pong between two processes, round trip", "us", "lower", 10000, futexPingPong},
		{"lock.futexmutex.uncontended", "futex mutex lock + unlock, one process (two CAS)", "ns", "lower", 10000000, futexMutexUncontended},
		{"lock.futex.contended2", "2 processes incrementing a shared counter under a futex mutex", "ops/s", "higher", 1000000, futexContended2},
		{"shm.create_unlink.1MiB", "/dev/shm segment create + ftruncate 1 MiB + mmap + munmap + close + unlink", "us", "lower", 5000, shmCreateUnlink},
		{"shm.attach", "/dev/shm segment open + fstat + mmap + munmap + close (1 MiB)", "us", "lower", 5000, shmAttach},
		{"shm.create_write1000.16KiB", "16 KiB segment create + 1000 8-byte writes + unlink", "us", "lower", 5000, shmCreateWrite},
	}
}

// --- children --------------------------------------------------------------

// startChild re-executes this binary as a child of the given role, with
// (duplicates of) fds as its descriptors 3, 4, ...; the caller keeps fds.
func startChild(role string, fds []int, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command("/proc/self/exe", append([]string{childArg, role}, args...)...)
	cmd.Stderr = os.Stderr
	for _, fd := range fds {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(d), "fd"+strconv.Itoa(fd))
		defer f.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	if cpu := os.Getenv("LIMITS_CHILD_CPU"); cpu != "" {
		cmd.Env = append(os.Environ(), "FLOORS_PIN="+cpu)
	}
	return cmd, cmd.Start()
}

// fdIO reads and writes a blocking descriptor with plain system calls.
type fdIO int

func (f fdIO) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f fdIO) Write(b []byte) (int, error) { return len(b), writeAll(int(f), b) }

func child(args []string) int {
	if cpu, err := strconv.Atoi(os.Getenv("FLOORS_PIN")); err == nil {
		var set unix.CPUSet
		set.Set(cpu)
		unix.SchedSetaffinity(0, &set)
	}
	n := 0
	if len(args) > 1 {
		n, _ = strconv.Atoi(args[1])
	}
	var err error
	switch args[0] {
	case "exit":
		_, err = unix.Write(3, []byte{1})
	case "echo": // read 16 B from fd 3, write them to fd 4, until EOF
		buf := make([]byte, 16)
		for {
			if err = readFull(3, buf); err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				break
			}
			if _, err = unix.Write(4, buf); err != nil {
				break
			}
		}
	case "sink": // read bursts of n bytes from fd 3, acknowledge each on fd 4
		buf := make([]byte, 1<<20)
		for err == nil {
			for got := 0; got < n && err == nil; {
				k, rerr := unix.Read(3, buf[:min(len(buf), n-got)])
				switch {
				case rerr == unix.EINTR:
				case rerr != nil:
					err = rerr
				case k == 0:
					return 0
				default:
					got += k
				}
			}
			if err == nil {
				_, err = unix.Write(4, []byte{1})
			}
		}
	case "frames": // read n 16-byte frames from fd 3, acknowledge on fd 4
		r := bufio.NewReaderSize(os.NewFile(3, "frames"), 64<<10)
		frame := make([]byte, 16)
		for {
			for i := 0; i < n; i++ {
				if _, err := io.ReadFull(r, frame); err != nil {
					return 0
				}
			}
			if _, err = unix.Write(4, []byte{1}); err != nil {
				break
			}
		}
	case "worker": // answer n 16-byte frames from fd 3 on fd 3; args[2] "batched" buffers the answers
		c := os.NewFile(3, "worker")
		r := bufio.NewReaderSize(c, 64<<10)
		var w io.Writer = c
		bw := bufio.NewWriterSize(c, 64<<10)
		if len(args) > 2 && args[2] == "batched" {
			w = bw
		}
		frame := make([]byte, 16)
		for i := 0; i < n && err == nil; i++ {
			if _, err = io.ReadFull(r, frame); err == nil {
				binary.LittleEndian.PutUint64(frame[4:], binary.LittleEndian.Uint64(frame[4:])*2)
				_, err = w.Write(frame)
				if r.Buffered() == 0 && err == nil {
					err = bw.Flush()
				}
			}
		}
		if err == nil {
			err = bw.Flush()
		}
	case "futex": // answer n pings on the shared words at fd 3
		var mem []byte
		if mem, err = unix.Mmap(3, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
			ping, pong := word(mem, 0), word(mem, 4)
			for i := 0; i < n; i++ {
				for atomic.LoadUint32(ping) == 0 {
					futexWait(ping, 0)
				}
				atomic.StoreUint32(ping, 0)
				atomic.StoreUint32(pong, 1)
				futexWake(pong)
			}
		}
	case "increment": // n increments under the futex mutex at fd 3, after the go word, then done
		var mem []byte
		if mem, err = unix.Mmap(3, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
			m, counter, ready, goWord, done := word(mem, 0), (*uint64)(unsafe.Pointer(&mem[8])), word(mem, 16), word(mem, 20), word(mem, 24)
			atomic.AddUint32(ready, 1)
			for atomic.LoadUint32(goWord) == 0 {
				futexWait(goWord, 0)
			}
			for i := 0; i < n; i++ {
				lock(m)
				*counter++
				unlock(m)
			}
			atomic.AddUint32(done, 1)
			futexWake(done)
		}
	default:
		err = fmt.Errorf("unknown role %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floors child:", err)
		return 1
	}
	return 0
}

func readFull(fd int, b []byte) error {
	for got := 0; got < len(b); {
		n, err := unix.Read(fd, b[got:])
		switch {
		case err == unix.EINTR:
		case err != nil:
			return err
		case n == 0:
			return io.EOF
		default:
			got += n
		}
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// channel returns a blocking, close-on-exec pair (read end, write end): a
// pipe, or the two ends of a socketpair.
func channel(socket bool) (r, w int, err error) {
	if socket {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return fds[0], fds[1], err
	}
	var p [2]int
	err = unix.Pipe2(p[:], unix.O_CLOEXEC)
	return p[0], p[1], err
}

// --- measurements ----------------------------------------------------------

func spawnHandshake(n int) (float64, error) {
	t0 := time.Now()
	for i := 0; i < n; i++ {
		r, w, err := channel(false)
		if err != nil {
			return 0, err
		}
		cmd, err := startChild("exit", []int{w})
		unix.Close(w)
		if err != nil {
			unix.Close(r)
			return 0, err
		}
		err = readFull(r, make([]byte, 1))
		unix.Close(r)
		if werr := cmd.Wait(); err == nil {
			err = werr
		}
		if err != nil {
			return 0, err
		}
	}
	return float64(time.Since(t0).Microseconds()) / float64(n) / 1e3, nil
}

func rtt(socket bool) func(int) (float64, error) {
	return func(n int) (float64, error) {
		// to the child: toR (its fd 3) <- toW; back: backR <- backW (its fd 4)
		toR, toW, err := channel(socket)
		if err != nil {
			return 0, err
		}
		backR, backW := toW, toR
		if !socket {
			if backR, backW, err = channel(false); err != nil {
				return 0, err
			}
		}
		cmd, err := startChild("echo", []int{toR, backW})
		if !socket {
			unix.Close(toR)
			unix.Close(backW)
		}
		if err != nil {
			return 0, err
		}
		msg := make([]byte, 16)
		t0 := time.Now()
		for i := 0; i < n && err == nil; i++ {
			if err = writeAll(toW, msg); err == nil {
				err = readFull(backR, msg)
			}
		}
		d := time.Since(t0)
		if socket {
			unix.Shutdown(toW, unix.SHUT_WR)
		}
		unix.Close(toW)
		if werr := cmd.Wait(); err == nil {
			err = werr
		}
		if socket {
			unix.Close(toR)
		} else {
			unix.Close(backR)
		}
		return float64(d.Nanoseconds()) / float64(n) / 1e3, err
	}
}

// oneWay starts a child of role with a data channel and an ack pipe, runs
// send, and returns its duration.
func oneWay(socket bool, bigbuf bool, role string, arg int, send func(w int) error) (time.Duration, error) {
	dr, dw, err := channel(socket)
	if err != nil {
		return 0, err
	}
	if bigbuf {
		if _, err := unix.FcntlInt(uintptr(dw), unix.F_SETPIPE_SZ, 1<<20); err != nil {
			return 0, err
		}
	}
	ar, aw, err := channel(false)
	if err != nil {
		return 0, err
	}
	cmd, err := startChild(role, []int{dr, aw}, strconv.Itoa(arg))
	unix.Close(dr)
	unix.Close(aw)
	if err != nil {
		return 0, err
	}
	ack := make([]byte, 1)
	if err = send(dw); err == nil { // warm-up burst
		err = readFull(ar, ack)
	}
	t0 := time.Now()
	if err == nil {
		if err = send(dw); err == nil {
			err = readFull(ar, ack)
		}
	}
	d := time.Since(t0)
	unix.Close(dw)
	if werr := cmd.Wait(); err == nil {
		err = werr
	}
	unix.Close(ar)
	return d, err
}

func tput(socket bool, size int, bigbuf bool) func(int) (float64, error) {
	return func(n int) (float64, error) {
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		count := max(1, n*(1<<20)/size/8) // n MiB at scale 1 is too long: an eighth
		d, err := oneWay(socket, bigbuf, "sink", count*size, func(w int) error {
			for i := 0; i < count; i++ {
				if err := writeAll(w, buf); err != nil {
					return err
				}
			}
			return nil
		})
		return float64(count*size) / d.Seconds() / 1e9, err
	}
}

func frames(socket bool) func(int) (float64, error) {
	return func(n int) (float64, error) {
		d, err := oneWay(socket, false, "frames", n, func(w int) error {
			var frame [16]byte
			for i := 0; i < n; i++ { // one write per frame, as a queue's put
				binary.LittleEndian.PutUint32(frame[:], 12)
				binary.LittleEndian.PutUint64(frame[4:], uint64(i))
				if err := writeAll(w, frame[:]); err != nil {
					return err
				}
			}
			return nil
		})
		return float64(n) / d.Seconds(), err
	}
}

// workers starts two worker processes, each on a socketpair, and gives each
// half of n tasks: 16-byte frames sent and answered, pipelined.
func workers(batched bool) func(int) (float64, error) {
	return func(n int) (float64, error) {
		per := max(1, n/2)
		mode := "single"
		if batched {
			mode = "batched"
		}
		type worker struct {
			fd  int
			cmd *exec.Cmd
		}
		var ws []worker
		for range 2 {
			mine, theirs, err := channel(true)
			if err != nil {
				return 0, err
			}
			cmd, err := startChild("worker", []int{theirs}, strconv.Itoa(per), mode)
			unix.Close(theirs)
			if err != nil {
				return 0, err
			}
			ws = append(ws, worker{mine, cmd})
		}
		errs := make(chan error, 4)
		t0 := time.Now()
		for _, w := range ws {
			go func() { // send
				var out io.Writer = fdIO(w.fd)
				bw := bufio.NewWriterSize(fdIO(w.fd), 64<<10)
				if batched {
					out = bw
				}
				var frame [16]byte
				for i := 0; i < per; i++ {
					binary.LittleEndian.PutUint32(frame[:], 12)
					binary.LittleEndian.PutUint64(frame[4:], uint64(i))
					if _, err := out.Write(frame[:]); err != nil {
						errs <- err
						return
					}
				}
				errs <- bw.Flush()
			}()
			go func() { // receive
				r := bufio.NewReaderSize(fdIO(w.fd), 64<<10)
				frame := make([]byte, 16)
				for i := 0; i < per; i++ {
					if _, err := io.ReadFull(r, frame); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		var err error
		for range 4 {
			if e := <-errs; err == nil {
				err = e
			}
		}
		d := time.Since(t0)
		for _, w := range ws {
			if e := w.cmd.Wait(); err == nil {
				err = e
			}
			unix.Close(w.fd)
		}
		return float64(2*per) / d.Seconds(), err
	}
}

// shared returns a memfd of one page, mapped.
func shared() (int, []byte, error) {
	fd, err := unix.MemfdCreate("floors", 0)
	if err != nil {
		return -1, nil, err
	}
	if err := unix.Ftruncate(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	mem, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, mem, nil
}

func word(mem []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }

func futexWait(addr *uint32, val uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), 0 /* FUTEX_WAIT */, uintptr(val), 0, 0, 0)
}

func futexWake(addr *uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), 1 /* FUTEX_WAKE */, 1<<30, 0, 0, 0)
}

// lock and unlock are Drepper's futex mutex ("Futexes are tricky", mutex 2):
// 0 free, 1 held, 2 held with waiters.
func lock(m *uint32) {
	if atomic.CompareAndSwapUint32(m, 0, 1) {
		return
	}
	for atomic.SwapUint32(m, 2) != 0 {
		futexWait(m, 2)
	}
}

func unlock(m *uint32) {
	if atomic.AddUint32(m, ^uint32(0)) != 0 {
		atomic.StoreUint32(m, 0)
		futexWake(m)
	}
}

func futexPingPong(n int) (float64, error) {
	fd, mem, err := shared()
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(mem)
	cmd, err := startChild("futex", []int{fd}, strconv.Itoa(n))
	if err != nil {
		return 0, err
	}
	ping, pong := word(mem, 0), word(mem, 4)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		atomic.StoreUint32(ping, 1)
		futexWake(ping)
		for atomic.LoadUint32(pong) == 0 {
			futexWait(pong, 0)
		}
		atomic.StoreUint32(pong, 0)
	}
	d := time.Since(t0)
	return float64(d.Nanoseconds()) / float64(n) / 1e3, cmd.Wait()
}

func futexMutexUncontended(n int) (float64, error) {
	var m uint32
	t0 := time.Now()
	for i := 0; i < n; i++ {
		lock(&m)
		unlock(&m)
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n), nil
}

func futexContended2(n int) (float64, error) {
	fd, mem, err := shared()
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(mem)
	per := max(1, n/2)
	var cmds []*exec.Cmd
	for range 2 {
		cmd, err := startChild("increment", []int{fd}, strconv.Itoa(per))
		if err != nil {
			return 0, err
		}
		cmds = append(cmds, cmd)
	}
	// As in the kit: timed from the go word until both children are done
	// (their exit and reaping are not part of the figure).
	ready, goWord, done := word(mem, 16), word(mem, 20), word(mem, 24)
	for atomic.LoadUint32(ready) < 2 {
		time.Sleep(100 * time.Microsecond)
	}
	t0 := time.Now()
	atomic.StoreUint32(goWord, 1)
	futexWake(goWord)
	for deadline := t0.Add(time.Minute); ; {
		d := atomic.LoadUint32(done)
		if d == 2 {
			break
		}
		if time.Now().After(deadline) { // a ceiling: a child died
			for _, c := range cmds {
				c.Process.Kill()
				c.Wait()
			}
			return 0, fmt.Errorf("%d of 2 children done after a minute", d)
		}
		ts := unix.NsecToTimespec(int64(100 * time.Millisecond))
		unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(done)), 0 /* FUTEX_WAIT */, uintptr(d), uintptr(unsafe.Pointer(&ts)), 0, 0)
	}
	d := time.Since(t0)
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			return 0, err
		}
	}
	if got := *(*uint64)(unsafe.Pointer(&mem[8])); got != uint64(2*per) {
		return 0, fmt.Errorf("counter %d, want %d", got, 2*per)
	}
	return float64(2*per) / d.Seconds(), nil
}

func shmName() string { return fmt.Sprintf("/dev/shm/floors_%d", os.Getpid()) }

func shmCreate(size int) (int, []byte, error) {
	fd, err := unix.Open(shmName(), unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, nil, err
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, mem, nil
}

func shmCreateUnlink(n int) (float64, error) {
	t0 := time.Now()
	for i := 0; i < n; i++ {
		fd, mem, err := shmCreate(1 << 20)
		if err != nil {
			return 0, err
		}
		unix.Munmap(mem)
		unix.Close(fd)
		if err := unix.Unlink(shmName()); err != nil {
			return 0, err
		}
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n) / 1e3, nil
}

func shmAttach(n int) (float64, error) {
	fd, mem, err := shmCreate(1 << 20)
	if err != nil {
		return 0, err
	}
	unix.Munmap(mem)
	unix.Close(fd)
	defer unix.Unlink(shmName())
	t0 := time.Now()
	for i := 0; i < n; i++ {
		fd, err := unix.Open(shmName(), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return 0, err
		}
		mem, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return 0, err
		}
		unix.Munmap(mem)
		unix.Close(fd)
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n) / 1e3, nil
}

func shmCreateWrite(n int) (float64, error) {
	n = max(1, n/10)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		fd, mem, err := shmCreate(16 << 10)
		if err != nil {
			return 0, err
		}
		for j := 0; j < 1000; j++ {
			binary.LittleEndian.PutUint64(mem[8*j:], uint64(j))
		}
		unix.Munmap(mem)
		unix.Close(fd)
		if err := unix.Unlink(shmName()); err != nil {
			return 0, err
		}
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n) / 1e3, nil
}

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""multiproc's CPython side: what Python's multiprocessing costs on this machine.

`make bench` (tools/cmd/mp bench) runs this script next to multiproc's own
benchmarks and puts the figures side by side, under shared keys
(start.spawn, pipe.rtt.bytes16, queue.tput, pool.map.chunk1, ...). It needs
nothing but python3's standard library.

    python3 tools/bench/cpython_bench.py [--repeats N] [--scale F]
                                         [--only GROUP|KEY,...] [--tag TAG]
    python3 tools/bench/cpython_bench.py --list

Each figure is measured --repeats times (default 5); a repeat times many
iterations with time.perf_counter and reports their mean. The JSON on stdout
holds, per key, the median, min, max and every repeat:

    {"suite": "cpython", "results": [{"key": ..., "desc": ..., "unit": ...,
      "better": "lower"|"higher", "median": ..., "min": ..., "max": ...,
      "values": [...], "iters": ...}], ...}

--scale multiplies iteration counts (0.1 for a smoke run); --only keeps the
groups, or the keys, whose name contains one of the words; --tag appends
"@TAG" to every key ("same" for a run pinned to one CPU with taskset -c 0).
Progress goes to stderr. Children use the fork start method unless the key
names another, as a Linux user of multiprocessing gets by default.
"""
# Module-level imports stay minimal: spawn and forkserver children import
# this module again, and what it imports would count in their start figures.
import os
import sys
import time

import multiprocessing as mp

clock = time.perf_counter


class Config:
    repeats = 5
    scale = 1.0
    tag = ""
    only = ()


RESULTS = []
GROUPS = []  # (name, function, keys it records)


def group(name, *keys):
    def add(fn):
        GROUPS.append((name, fn, keys))
        return fn
    return add


def wanted(key):
    return not Config.only or any(w in key for w in Config.only)


def iters(base, least=1):
    return max(least, int(base * Config.scale))


def record(key, desc, unit, better, values, n):
    """Adds one result; values are the per-repeat figures."""
    import statistics
    if Config.tag:
        key += "@" + Config.tag
    vals = [float(v) for v in values]
    RESULTS.append({"key": key, "desc": desc, "unit": unit, "better": better,
                    "median": statistics.median(vals), "min": min(vals),
                    "max": max(vals), "values": vals, "iters": n})
    print("  %-34s %12.4g %-8s [%.4g .. %.4g]" % (key, statistics.median(vals), unit,
                                                  min(vals), max(vals)),
          file=sys.stderr, flush=True)


def per_op(key, desc, unit, n, body, scale_to):
    """Times body(n) --repeats times; records seconds per op times scale_to."""
    if not wanted(key):
        return
    vals = []
    for _ in range(Config.repeats):
        t0 = clock()
        body(n)
        vals.append((clock() - t0) / n * scale_to)
    record(key, desc, unit, "lower", vals, n)


def rate(key, desc, unit, n, body, amount=None):
    """Times body() --repeats times; records (amount or n) per second."""
    if not wanted(key):
        return
    vals = []
    for _ in range(Config.repeats):
        t0 = clock()
        body()
        vals.append((amount or n) / (clock() - t0))
    record(key, desc, unit, "higher", vals, n)


def forked():
    return mp.get_context("fork")


# ---------------------------------------------------------------------------
# What children run: module level, so spawn and forkserver children find it.
# ---------------------------------------------------------------------------

def child_cpu():
    """MPBENCH_CHILD_CPU=N pins a child to CPU N (a cross-CPU pass)."""
    cpu = os.environ.get("MPBENCH_CHILD_CPU")
    if cpu:
        os.sched_setaffinity(0, {int(cpu)})


def nothing():
    pass


def square(x):
    return x * x


def echo_bytes(conn):
    child_cpu()
    while True:
        b = conn.recv_bytes()
        if not b:
            return
        conn.send_bytes(b)


def echo_objects(conn):
    child_cpu()
    while True:
        o = conn.recv()
        if o is None:
            return
        conn.send(o)


def drain(data, ack):
    """Reads messages; b"E" asks for an acknowledgement, b"Q" ends."""
    child_cpu()
    while True:
        m = data.recv_bytes()
        if m == b"E":
            ack.send_bytes(b"A")
        elif m == b"Q":
            return


def produce(q, n, go):
    go.wait()
    for i in range(n):
        q.put(i)


def consume(q, n, go, done):
    go.wait()
    for _ in range(n):
        q.get()
    done.send_bytes(b"done")


def add_under_lock(lock, counter, n, go, stop):
    go.wait()
    for _ in range(n):
        with lock:
            counter.value += 1
    stop.wait()


def semaphore_echo(ping, pong, n):
    child_cpu()
    for _ in range(n):
        ping.acquire()
        pong.release()


def event_echo(ping, pong, n):
    child_cpu()
    for _ in range(n):
        ping.wait()
        ping.clear()
        pong.set()


# ---------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------

def start_join(method, n, target):
    ctx = mp.get_context(method)
    warm = ctx.Process(target=target)  # also starts a forkserver's server
    warm.start()
    warm.join()

    def body(k):
        for _ in range(k):
            p = ctx.Process(target=target)
            p.start()
            p.join()
    return body


def start_from_c(repeats, scale, tag, only):
    """Runs under `python3 -c`: no __main__ file for a child to re-run, and
    the target, os.getpid, is a builtin that children import nothing for."""
    import json
    Config.repeats, Config.scale, Config.tag, Config.only = repeats, scale, tag, only
    for method, base in (("fork", 40), ("spawn", 8), ("forkserver", 40)):
        n = iters(base, 2)
        if wanted("start." + method):
            per_op("start." + method, "Process(target) start + join, " + method,
                   "ms", n, start_join(method, n, os.getpid), 1e3)
    json.dump(RESULTS, sys.stdout)


@group("start", "start.fork", "start.spawn", "start.forkserver",
       "start.spawn.script", "start.forkserver.script")
def bench_start():
    import json
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    code = ("import sys; sys.path.insert(0, %r); import cpython_bench; "
            "cpython_bench.start_from_c(%d, %r, %r, %r)"
            % (here, Config.repeats, Config.scale, Config.tag, tuple(Config.only)))
    out = subprocess.run([sys.executable, "-c", code], check=True,
                         stdout=subprocess.PIPE).stdout
    RESULTS.extend(json.loads(out))
    # With this script as __main__, which spawn and forkserver children run again.
    for method, base in (("spawn", 8), ("forkserver", 40)):
        n = iters(base, 2)
        key = "start.%s.script" % method
        if wanted(key):
            per_op(key, "Process start + join, %s, main = this script (re-run in each child)" % method,
                   "ms", n, start_join(method, n, nothing), 1e3)


def round_trips(conn, msg, n):
    send, recv = conn.send, conn.recv
    if isinstance(msg, bytes):
        send, recv = conn.send_bytes, conn.recv_bytes
    for _ in range(1000):  # warm-up
        send(msg)
        recv()

    def body(k):
        for _ in range(k):
            send(msg)
            recv()
    return body


@group("pipe", "pipe.rtt.bytes16", "pipe.rtt.tuple", "pipe.tput.1MiB",
       "pipe.tput.1MiB.simplex", "pipe.tput.64MiB")
def bench_pipe():
    ctx = forked()
    n = iters(10000, 100)
    for key, desc, target, msg, stop in (
            ("pipe.rtt.bytes16", "Pipe() round trip, 16 B send_bytes/recv_bytes",
             echo_bytes, b"0123456789abcdef", b""),
            ("pipe.rtt.tuple", "Pipe() round trip, send/recv of (42, 'ping', 3.5)",
             echo_objects, (42, "ping", 3.5), None)):
        if not wanted(key):
            continue
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=target, args=(theirs,))
        p.start()
        theirs.close()
        per_op(key, desc, "us", n, round_trips(mine, msg, n), 1e6)
        (mine.send_bytes if isinstance(stop, bytes) else mine.send)(stop)
        p.join()
        mine.close()

    for key, desc, size, count, duplex in (
            ("pipe.tput.1MiB", "Pipe() (socketpair) one-way, 1 MiB send_bytes",
             1 << 20, iters(300, 4), True),
            ("pipe.tput.1MiB.simplex", "Pipe(duplex=False) (os.pipe) one-way, 1 MiB",
             1 << 20, iters(300, 4), False),
            ("pipe.tput.64MiB", "Pipe() (socketpair) one-way, 64 MiB send_bytes",
             64 << 20, iters(8, 2), True)):
        if not wanted(key):
            continue
        rx, tx = ctx.Pipe(duplex=duplex)
        ack_rx, ack_tx = ctx.Pipe(duplex=False)
        p = ctx.Process(target=drain, args=(rx, ack_tx))
        p.start()
        rx.close()
        ack_tx.close()
        payload = os.urandom(size)

        def burst(count=count):
            for _ in range(count):
                tx.send_bytes(payload)
            tx.send_bytes(b"E")
            ack_rx.recv_bytes()
        burst(1)
        rate(key, desc, "GB/s", count, burst, amount=count * size / 1e9)
        tx.send_bytes(b"Q")
        p.join()
        tx.close()
        ack_rx.close()


@group("queue", "queue.tput", "simplequeue.tput")
def bench_queue():
    ctx = forked()
    n = iters(200000, 1000)
    for key, desc, make in (
            ("queue.tput", "Queue: 1 producer process -> 1 consumer process, int items", ctx.Queue),
            ("simplequeue.tput", "SimpleQueue: 1 producer process -> 1 consumer process", ctx.SimpleQueue)):
        if not wanted(key):
            continue
        vals = []
        for _ in range(Config.repeats):
            q, go = make(), ctx.Barrier(3)
            done_rx, done_tx = ctx.Pipe(duplex=False)
            ps = [ctx.Process(target=produce, args=(q, n, go)),
                  ctx.Process(target=consume, args=(q, n, go, done_tx))]
            for p in ps:
                p.start()
            go.wait()
            t0 = clock()
            done_rx.recv_bytes()
            vals.append(n / (clock() - t0))
            for p in ps:
                p.join()
            done_rx.close()
            done_tx.close()
        record(key, desc, "items/s", "higher", vals, n)


@group("lock", "lock.uncontended", "lock.uncontended.with", "lock.contended2")
def bench_lock():
    ctx = forked()
    lock = ctx.Lock()
    n = iters(1000000, 1000)

    def acquire_release(k):
        acq, rel = lock.acquire, lock.release
        for _ in range(k):
            acq()
            rel()

    def with_lock(k):
        for _ in range(k):
            with lock:
                pass
    per_op("lock.uncontended", "Lock acquire() + release(), one process", "ns", n, acquire_release, 1e9)
    per_op("lock.uncontended.with", "`with lock: pass`, one process", "ns", n, with_lock, 1e9)

    key = "lock.contended2"
    if wanted(key):
        n = iters(50000, 500)
        vals = []
        for _ in range(Config.repeats):
            counter = ctx.Value("q", 0, lock=False)
            go, stop = ctx.Barrier(3), ctx.Barrier(3)
            ps = [ctx.Process(target=add_under_lock, args=(lock, counter, n, go, stop))
                  for _ in range(2)]
            for p in ps:
                p.start()
            go.wait()
            t0 = clock()
            stop.wait()
            vals.append(2 * n / (clock() - t0))
            for p in ps:
                p.join()
            if counter.value != 2 * n:
                raise SystemExit("lock.contended2: counter %d, want %d" % (counter.value, 2 * n))
        record(key, "2 processes: `with lock: v.value += 1` on a shared Value",
               "ops/s", "higher", vals, 2 * n)


@group("signal", "semaphore.pingpong", "event.pingpong")
def bench_signal():
    ctx = forked()
    warm = 500
    key = "semaphore.pingpong"
    if wanted(key):
        n = iters(5000, 100)
        ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)
        p = ctx.Process(target=semaphore_echo, args=(ping, pong, warm + Config.repeats * n))
        p.start()

        def sem_round(k):
            for _ in range(k):
                ping.release()
                pong.acquire()
        sem_round(warm)
        per_op(key, "Semaphore release/acquire ping-pong, round trip", "us", n, sem_round, 1e6)
        p.join()
    key = "event.pingpong"
    if wanted(key):
        n = iters(3000, 100)
        ping, pong = ctx.Event(), ctx.Event()
        p = ctx.Process(target=event_echo, args=(ping, pong, warm + Config.repeats * n))
        p.start()

        def event_round(k):
            for _ in range(k):
                ping.set()
                pong.wait()
                pong.clear()
        event_round(warm)
        per_op(key, "Event set/wait/clear ping-pong, round trip", "us", n, event_round, 1e6)
        p.join()


@group("pool", "pool.lifecycle", "pool.map.default", "pool.map.chunk1", "pool.apply_async.rtt",
       "pool.imap_unordered", "pool.imap_unordered.chunk100")
def bench_pool():
    ctx = forked()
    n = iters(100000, 1000)

    def lifecycle(k):
        for _ in range(k):
            pool = ctx.Pool(2)
            pool.map(square, range(2))
            pool.close()
            pool.join()
    per_op("pool.lifecycle", "Pool(2) create + map(2 items) + close + join", "ms",
           iters(5), lifecycle, 1e3)

    with ctx.Pool(2) as pool:
        pool.map(square, range(10000))  # warm-up
        for key, desc, chunks in (
                ("pool.map.default", "Pool(2).map(x*x, 100k), default chunksize", None),
                ("pool.map.chunk1", "Pool(2).map(x*x, 100k), chunksize=1", 1)):
            def run_map(chunks=chunks):
                out = pool.map(square, range(n), chunks)
                assert out[-1] == (n - 1) ** 2
            rate(key, desc, "tasks/s", n, run_map)

        def apply_round(k):
            for i in range(k):
                pool.apply_async(square, (i,)).get()
        per_op("pool.apply_async.rtt", "Pool(2).apply_async(x*x).get() round trip", "us",
               iters(2000, 50), apply_round, 1e6)

        for key, desc, chunks in (
                ("pool.imap_unordered", "Pool(2).imap_unordered(x*x, 100k), chunksize=1", 1),
                ("pool.imap_unordered.chunk100", "Pool(2).imap_unordered(x*x, 100k), chunksize=100", 100)):
            def run_imap(chunks=chunks):
                assert sum(1 for _ in pool.imap_unordered(square, range(n), chunks)) == n
            rate(key, desc, "tasks/s", n, run_imap)


@group("manager", "manager.lifecycle", "manager.dict.set", "manager.dict.get", "manager.list.append")
def bench_manager():
    ctx = forked()

    def lifecycle(k):
        for _ in range(k):
            m = ctx.Manager()
            m.shutdown()
    per_op("manager.lifecycle", "Manager() start + shutdown", "ms", iters(3), lifecycle, 1e3)

    if not any(wanted(k) for k in ("manager.dict.set", "manager.dict.get", "manager.list.append")):
        return
    n = iters(3000, 100)
    with ctx.Manager() as m:
        d, lst = m.dict(), m.list()
        for i in range(300):  # warm-up
            d["k"] = i
            d["k"]

        def dict_set(k):
            for i in range(k):
                d["k"] = i

        def dict_get(k):
            for _ in range(k):
                d["k"]

        def list_append(k):
            for i in range(k):
                lst.append(i)
        per_op("manager.dict.set", "Manager dict proxy d['k'] = i", "us", n, dict_set, 1e6)
        per_op("manager.dict.get", "Manager dict proxy d['k']", "us", n, dict_get, 1e6)
        per_op("manager.list.append", "Manager list proxy .append(i)", "us", n, list_append, 1e6)


@group("shm", "shm.create_unlink.1MiB", "shm.attach", "shareablelist.create1000")
def bench_shm():
    from multiprocessing import shared_memory
    SharedMemory = shared_memory.SharedMemory
    n = iters(1000, 20)

    def create_unlink(k):
        for _ in range(k):
            s = SharedMemory(create=True, size=1 << 20)
            s.close()
            s.unlink()
    create_unlink(20)
    per_op("shm.create_unlink.1MiB", "SharedMemory(create, 1 MiB) + close + unlink", "us",
           n, create_unlink, 1e6)

    seg = SharedMemory(create=True, size=1 << 20)
    try:
        def attach(k):
            for _ in range(k):
                SharedMemory(name=seg.name).close()
        per_op("shm.attach", "SharedMemory(name=...) attach + close (1 MiB)", "us", n, attach, 1e6)
    finally:
        seg.close()
        seg.unlink()

    key = "shareablelist.create1000"
    if wanted(key):
        k = iters(100, 5)
        vals = []
        for _ in range(Config.repeats):
            spent = 0.0
            for _ in range(k):
                t0 = clock()
                sl = shared_memory.ShareableList(range(1000))
                spent += clock() - t0
                sl.shm.close()
                sl.shm.unlink()
            vals.append(spent / k * 1e6)
        record(key, "ShareableList(range(1000)) create", "us", "lower", vals, k)


@group("ppe", "ppe.map.chunk1", "ppe.map.chunk12500")
def bench_ppe():
    from concurrent.futures import ProcessPoolExecutor
    n = iters(100000, 1000)
    with ProcessPoolExecutor(2, mp_context=forked()) as ex:
        list(ex.map(square, range(2000)))  # warm-up
        for key, desc, chunks in (
                ("ppe.map.chunk1", "ProcessPoolExecutor(2).map(x*x, 100k), chunksize=1", 1),
                ("ppe.map.chunk12500", "ProcessPoolExecutor(2).map(x*x, 100k), chunksize=12500", 12500)):
            def run_map(chunks=chunks):
                assert list(ex.map(square, range(n), chunksize=chunks))[-1] == (n - 1) ** 2
            rate(key, desc, "tasks/s", n, run_map)


def machine():
    import platform
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version()}


def main():
    import argparse
    import json
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="repeats of each figure (median reported)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies iteration counts")
    ap.add_argument("--only", default="", help="comma-separated words: groups or keys to run")
    ap.add_argument("--tag", default="", help='append "@TAG" to every key')
    ap.add_argument("--list", action="store_true", help="print the groups and their keys, and exit")
    args = ap.parse_args()
    if args.list:
        for name, _, keys in GROUPS:
            print("%-8s %s" % (name, " ".join(keys)))
        return
    if args.repeats < 1 or args.scale <= 0:
        ap.error("--repeats must be at least 1 and --scale above 0")
    Config.repeats, Config.scale, Config.tag = args.repeats, args.scale, args.tag
    Config.only = tuple(w for w in args.only.split(",") if w)
    t0 = clock()
    print("cpython_bench: python %s, repeats=%d scale=%g tag=%r"
          % (sys.version.split()[0], Config.repeats, Config.scale, Config.tag), file=sys.stderr, flush=True)
    for name, fn, keys in GROUPS:
        if Config.only and not any(w in name for w in Config.only) and not any(wanted(k) for k in keys):
            continue
        if any(w in name for w in Config.only):
            saved, Config.only = Config.only, ()  # a whole group was asked for
        else:
            saved = None
        g0 = clock()
        print("[%s]" % name, file=sys.stderr, flush=True)
        try:
            fn()
        finally:
            if saved is not None:
                Config.only = saved
        print("  (%.1f s)" % (clock() - g0), file=sys.stderr, flush=True)
    json.dump({"suite": "cpython", "source": "tools/bench/cpython_bench.py",
               "repeats": Config.repeats, "scale": Config.scale, "tag": Config.tag,
               "machine": machine(), "wall_s": round(clock() - t0, 2), "results": RESULTS},
              sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()

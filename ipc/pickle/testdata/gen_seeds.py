# SPDX-License-Identifier: Apache-2.0
"""Writes the FuzzDecode seed corpus: what CPython's Connection.send
(ForkingPickler) writes for the objects multiproc exchanges with it, in
protocols 2 to 5.

Run it with each CPython (3.11, 3.12, 3.13) from ipc/pickle:
    PYENV_VERSION=3.12.1 python3 testdata/gen_seeds.py
Files are named <python version>-p<protocol>-<case>; the same bytes from
two versions are written once.
"""
import multiprocessing.managers as managers  # registers the dict view reducers
from multiprocessing.reduction import ForkingPickler
import os
import pickle
import queue
import sys

shared = "shared-string"
loop = []
loop.append(loop)
key_error = KeyError("zz")
noted = ValueError("bad")
noted.add_note("a note")
tagged = OSError(2, "No such file or directory")
tagged.extra = 1

cases = {
    "none": None,
    "bools": (True, False),
    "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -2**31, 2**31, 2**63 - 1, -2**63, 2**64, -2**64 - 1],
    "bigint": 3**500,
    "floats": [0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 1e308],
    "str": ["", "abc", "é", "日本語", "x" * 300],
    "bytes": [b"", b"\x00\xff", b"y" * 300],
    "bytearray": bytearray(b"ab\x00"),
    "list": [1, [2, [3, []]], "a"],
    "tuple": ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
    "dict": {"job": 7, "args": [1.5, None]},
    "dict-view": {"a": 1}.items(),
    "dict-keys": {1: "int", 2.5: "float", (1, "t"): "tuple", b"b": "bytes", None: "none", frozenset([1]): "fs"},
    "set": {1, 2, "three"},
    "frozenset": frozenset([(1, 2), "x"]),
    "empty-containers": [[], (), {}, set(), frozenset()],
    "shared": [shared, shared, (shared,)],
    "recursive": loop,
    "long-list": list(range(2500)),
    "long-dict": {i: str(i) for i in range(1200)},
    "token": managers.Token("dict", ("127.0.0.1", 40000), "7f0a1b2c3d40"),
    "request-create": (None, "create", ("dict",), {}),
    "request-call": ("7f0a1b2c3d40", "__setitem__", ("a", 1), {}),
    "reply-return": ("#RETURN", ("7f0a1b2c3d40", ("__contains__", "__getitem__", "get", "keys"))),
    "reply-error": ("#ERROR", key_error),
    "reply-traceback": ("#TRACEBACK", "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"),
    "reply-proxy": ("#PROXY", (("__next__", "send"), managers.Token("Iterator", "/tmp/sock", "7f01"))),
    "remote-error": managers.RemoteError("boom"),
    "queue-empty": queue.Empty(),
    "queue-full": queue.Full(),
    "exception-notes": noted,
    "exception-attrs": tagged,
}

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "fuzz", "FuzzDecode")
os.makedirs(out, exist_ok=True)
existing = set()
for name in os.listdir(out):
    with open(os.path.join(out, name)) as f:
        existing.add(f.read())
ver = "%d.%d" % sys.version_info[:2]
written = 0
for name, obj in cases.items():
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        data = bytes(ForkingPickler.dumps(obj, proto))
        body = "go test fuzz v1\n[]byte(\"" + "".join(
            "\\x%02x" % c if c < 0x20 or c >= 0x7f or c in (0x22, 0x5c) else chr(c) for c in data
        ) + "\")\n"
        if body in existing:
            continue
        existing.add(body)
        with open(os.path.join(out, "%s-p%d-%s" % (ver, proto, name)), "w") as f:
            f.write(body)
        written += 1
print("wrote", written, "seeds for", ver)

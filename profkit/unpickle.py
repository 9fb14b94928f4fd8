"""A streaming, restricted unpickler for torch memory snapshots: plain data only, trace events as columns.

`pickle.load` of a 1 GB snapshot builds about 12 million event dicts and their frames lists
(many GB). This reader runs pickle's opcodes itself (protocols 2 to 5, the opcodes plain data
needs), reading the file in 1 MiB pieces, and turns each allocator event into one row of compact
columns (action code, addr, size, time_us, top user frame code; stream is checked, not kept) as
it is appended to its trace list; the event dict, its frames list and their memo entries are
dropped there (memo entries after WINDOW more events). What stays
is the snapshot's other data (segments, settings, annotations as small Annotation objects), the distinct frames (torch's
pickle shares one dict per frame, referenced through the memo) and the columns: about 29 bytes
per event.

A frames list is a run of memo references (BINGET / LONG_BINGET) to shared frame dicts; equal
stacks are equal bytes, so the top user frame is worked out once per distinct run of bytes.

Safety is pickle's own restricted reading: any opcode that names or calls a Python object
(GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT, persistent ids, out-of-band
buffers) is refused, so nothing but dicts, lists, tuples, sets, strings, bytes, numbers,
booleans and None is ever built.
"""

from __future__ import annotations

import re
import struct
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

CHUNK = 1 << 20
_REFS = re.compile(rb"(?:h.|j....)*", re.S)  # a run of BINGET / LONG_BINGET
_CACHE_LIMIT = 200_000  # distinct stacks remembered (each a few hundred bytes)
WINDOW = 65_536
"""Memo entries of converted events and their frames lists are kept for this many more
conversions, then dropped: torch's pickle refers back to an event's frames list only from the
next event (free_completed shares free_requested's), so a reference further back is refused."""


class UnpickleError(Exception):
    """Damaged or not plain data: `named` is set when the pickle names a Python object."""

    def __init__(self, message: str, named: str | None = None) -> None:
        super().__init__(message)
        self.named = named


_ROW = object()  # first item of an event row the fast path read (no pickle can hold this object)
_REF = rb"h.|j...."
_INT = rb"K.|M..|J....|\x8a\x00|\x8a\x01.|\x8a\x02..|\x8a\x03...|\x8a\x04....|\x8a\x05.....|\x8a\x06......|" \
    rb"\x8a\x07.......|\x8a\x08........"
_FRAMES = rb"\]\x94\((?:h.|j....)+e|\]\x94|h.|j...."
_OTHER = rb"h.|j....|K.|M..|J....|N|\x88|\x89"


def _decode(b: bytes) -> int:
    """An _INT group's value, as pickle reads it."""
    op = b[0]
    if op == 0x4B:
        return b[1]
    if op == 0x4D:
        return b[1] | b[2] << 8
    if op == 0x4A:
        return int.from_bytes(b[1:], "little", signed=True)
    return int.from_bytes(b[2:], "little", signed=True)


class _Stack:
    """A frames list seen as bytes: its top user frame's code (shared by every equal stack)."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


class _Ref:
    """One frames list read through the fast path: its stack and its memo index."""

    __slots__ = ("stack", "idx")

    def __init__(self, stack: _Stack, idx: int) -> None:
        self.stack, self.idx = stack, idx


class Annotation:
    """One record_function annotation of the snapshot (a dict of stage, name, time_us and device):
    kept as this small object in its list, in place of the dict."""

    __slots__ = ("stage", "name", "time_us")

    def __init__(self, stage: str, name: str, time_us: int) -> None:
        self.stage, self.name, self.time_us = stage, name, time_us

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__slots__ else default

    def __contains__(self, key: str) -> bool:
        return key in self.__slots__

    def __getitem__(self, key: str) -> Any:
        if key not in self.__slots__:
            raise KeyError(key)
        return getattr(self, key)


_ANNOTATION_KEYS = {"stage", "name", "time_us", "device"}


@dataclass(kw_only=True)
class Trace:
    """The events of one trace list, as columns (numpy-ready arrays), in recorded order."""

    action: array = field(default_factory=lambda: array("b"))
    addr: array = field(default_factory=lambda: array("q"))
    size: array = field(default_factory=lambda: array("q"))
    time_us: array = field(default_factory=lambda: array("q"))
    frame: array = field(default_factory=lambda: array("i"))


@dataclass(kw_only=True)
class Loaded:
    """load()'s result. Each trace list in `data` is empty; its events are `traces[id(the list)]`."""

    data: Any
    traces: dict[int, Trace]
    actions: list[str]
    """Action names by code."""
    frames: list[str]
    """Top user frames by code ("" is code 0: no user frame)."""


def _int(v: Any, what: str, i: int) -> int:
    if v is None:
        return 0
    # torch writes integers; a float is read when it is a whole number (256.0), else it is damage
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise UnpickleError(f"trace entry {i} has {what} = {str(v)[:40]}: a {type(v).__name__}, not an integer")
    return v


def load(f: BinaryIO, top_frame: Callable[[Any], str]) -> Loaded:
    """Read a pickle of plain data from `f`, each allocator event (a dict with 'action' appended to a
    list) turned into a row of its list's Trace.

    Args:
        f: the open file, at the pickle's start.
        top_frame: an event's frames list -> its top user frame ("" when none).

    Raises:
        UnpickleError: truncated, damaged, an opcode outside plain data, a trace mixing events with
            other entries, a field of the wrong type, a value over 64 bits.
    """
    buf = f.read(CHUNK)
    pos = 0
    eof = len(buf) < CHUNK

    stack: list[Any] = []
    marks: list[list[Any]] = []
    memo: dict[int, Any] = {}
    memo_of: dict[int, int] = {}  # id(container) -> its memo index, for containers that may become events
    old: deque[int] = deque()  # memo indices of converted events and frames lists, oldest first
    count = 0  # MEMOIZE's next index
    traces: dict[int, Trace] = {}
    mixed: set[int] = set()
    actions: dict[str, int] = {}
    frame_codes: dict[str, int] = {"": 0}
    texts: dict[str, str] = {}  # annotations' names and stages, interned
    stack_cache: dict[bytes, _Stack] = {}
    events = 0
    fast: re.Pattern[bytes] | None = None
    fast_groups: tuple[str, ...] = ()
    learned = False
    action_refs: dict[bytes, int] = {}
    direct_level = -1  # the mark depth whose events went straight into a Trace
    event_level = -1  # the mark depth where the fast path last read events
    unpack_i = struct.Struct("<i").unpack_from
    unpack_I = struct.Struct("<I").unpack_from
    unpack_H = struct.Struct("<H").unpack_from
    unpack_Q = struct.Struct("<Q").unpack_from
    unpack_d = struct.Struct(">d").unpack_from

    def fill(n: int) -> None:
        """Up to n bytes from pos in buf, as many as the file has."""
        nonlocal buf, pos, eof
        if eof or pos + n <= len(buf):
            return
        parts = [buf[pos:]]
        have = len(parts[0])
        while have < n:
            more = f.read(max(CHUNK, n - have))
            if not more:
                eof = True
                break
            parts.append(more)
            have += len(more)
        buf = b"".join(parts)
        pos = 0

    def need(n: int) -> None:
        """At least n bytes from pos in buf, else the pickle is truncated."""
        nonlocal buf, pos, eof
        if pos + n <= len(buf):
            return
        rest = buf[pos:]
        parts = [rest]
        have = len(rest)
        while have < n and not eof:
            more = f.read(max(CHUNK, n - have))
            if len(more) == 0:
                eof = True
                break
            parts.append(more)
            have += len(more)
        buf = b"".join(parts)
        pos = 0
        if len(buf) < n:
            raise UnpickleError("pickle data was truncated")

    def code_of(frames: Any) -> int:
        if type(frames) is _Ref:
            return frames.stack.code
        name = top_frame(frames)
        c = frame_codes.get(name)
        if c is None:
            c = frame_codes[name] = len(frame_codes)
        return c

    def forget(obj: Any) -> None:
        k = obj.idx if type(obj) is _Ref else memo_of.pop(id(obj), None)
        if k is not None:
            old.append(k)
            if len(old) > WINDOW:
                memo.pop(old.popleft(), None)

    def append_items(target: Any, items: list[Any]) -> None:
        nonlocal events
        if isinstance(target, set):
            target.update(items)
            return
        if not isinstance(target, list):
            raise UnpickleError(f"APPEND onto a {type(target).__name__}")
        plain = []
        t = traces.get(id(target))
        for e in items:
            if type(e) is tuple and e and e[0] is _ROW:  # an event the fast path read
                if t is None:
                    t = new_trace(target)
                t.action.append(e[1])
                t.addr.append(e[2])
                t.size.append(e[3])
                t.time_us.append(e[5])
                t.frame.append(e[6])
                events += 1
            elif type(e) is dict and "action" in e:
                if t is None:
                    t = new_trace(target)
                if fast is None and not learned:
                    learn(e)
                i = len(t.action)
                act = e["action"]
                if not isinstance(act, str):
                    raise UnpickleError(f"trace entry {i}: action is a {type(act).__name__}, not a string")
                a = actions.get(act)
                if a is None:
                    if len(actions) >= 127:
                        raise UnpickleError("more than 127 distinct allocator actions")
                    a = actions[act] = len(actions)
                t.action.append(a)
                try:
                    t.addr.append(_int(e.get("addr"), "addr", i))
                    t.size.append(_int(e.get("size"), "size", i))
                    _int(e.get("stream"), "stream", i)  # checked, not kept
                    t.time_us.append(_int(e.get("time_us"), "time_us", i))
                except OverflowError:
                    raise UnpickleError(f"trace entry {i}: a value does not fit in 64 bits") from None
                fr = e.get("frames")
                t.frame.append(code_of(fr))
                forget(e)
                if fr is not None:
                    forget(fr)
                events += 1
            elif (type(e) is dict and "stage" in e and e.keys() <= _ANNOTATION_KEYS and type(e.get("name")) is str
                  and type(e["stage"]) is str and type(e.get("time_us")) is int):
                name, stage = e["name"], e["stage"]  # one str per distinct text (a name repeats every step)
                plain.append(Annotation(texts.setdefault(stage, stage), texts.setdefault(name, name), e["time_us"]))
                forget(e)
            else:
                plain.append(e)
        if plain:
            if id(target) in traces:
                raise UnpickleError("a trace list mixes allocator events with other entries")
            mixed.add(id(target))
            target.extend(plain)

    def new_trace(target: list[Any]) -> Trace:
        if target or id(target) in mixed:
            raise UnpickleError("a trace list mixes allocator events with other entries")
        t = traces[id(target)] = Trace()
        return t

    def learn(e: dict[Any, Any]) -> None:
        """The fast path's pattern for events shaped as this one: the same keys, in the same order,
        as memo references (torch's pickle shares the key strings)."""
        nonlocal fast, fast_groups, learned
        learned = True
        where = {id(o): k for k, o in memo.items() if type(o) is str}
        parts = [rb"\}\x94\("]
        groups: list[str] = []
        for key in e:
            k = where.get(id(key))
            if k is None or not isinstance(key, str):
                return
            parts.append(re.escape(b"h" + bytes([k]) if k < 256 else b"j" + struct.pack("<I", k)))
            if key in ("action", "addr", "size", "stream", "time_us", "frames"):
                parts.append(b"(" + {"action": _REF, "frames": _FRAMES}.get(key, _INT) + b")")
                groups.append(key)
            else:
                parts.append(b"(?:" + _OTHER + b")")
        if "action" not in groups or "frames" not in groups:
            return
        parts.append(b"u")
        fast = re.compile(b"".join(parts), re.S)
        fast_groups = tuple(groups)

    def pop_mark(appends: bool = False) -> list[Any]:
        nonlocal stack, direct_level, event_level
        if not marks:
            raise UnpickleError("unexpected MARK-consuming opcode without MARK")
        if len(marks) == direct_level:
            if not appends:
                raise UnpickleError("allocator events outside a list")
            direct_level = -1
        if len(marks) == event_level:
            event_level = -1
        items = stack
        stack = marks.pop()
        return items

    def setitems(d: Any, items: list[Any]) -> None:
        if not isinstance(d, dict):
            raise UnpickleError(f"SETITEMS onto a {type(d).__name__}")
        if len(items) % 2:
            raise UnpickleError("odd number of items for SETITEMS")
        for k in range(0, len(items), 2):
            key = items[k]
            try:
                d[key] = items[k + 1]
            except TypeError:
                raise UnpickleError(f"an unhashable dict key ({type(key).__name__})") from None

    def get(idx: int) -> Any:
        try:
            return memo[idx]
        except KeyError:
            raise UnpickleError(f"memo reference {idx} to nothing (or to a trace event, referenced twice)") from None

    def stack_of(refs: bytes) -> _Stack:
        """The stack of a frames list given as its memo references (BINGET / LONG_BINGET bytes),
        decoded once per distinct run of references."""
        st = stack_cache.get(refs)
        if st is None:
            frames = []
            j = 0
            while j < len(refs):
                if refs[j] == 0x68:
                    frames.append(get(refs[j + 1]))
                    j += 2
                else:
                    frames.append(get(unpack_I(refs, j + 1)[0]))
                    j += 5
            st = _Stack(code_of(frames))
            if len(stack_cache) >= _CACHE_LIMIT:
                stack_cache.clear()
            stack_cache[refs] = st
        return st

    def put(idx: int) -> None:
        nonlocal count
        if not stack:
            raise UnpickleError("PUT on an empty stack")
        obj = stack[-1]
        if idx in memo:
            stack_cache.clear()  # the bytes of a stack no longer name the same frames
        memo[idx] = obj
        if type(obj) is dict or type(obj) is list:
            memo_of[id(obj)] = idx

    def read_events() -> None:
        """Events in the learned shape, one after another from pos: straight into their list's Trace
        when nothing else waits at this mark (the rows are appended by the APPENDS that ends it),
        else onto the stack as rows, in order."""
        nonlocal pos, count, events, direct_level, event_level
        assert fast is not None
        event_level = len(marks)
        t = None
        below = marks[-1] if marks else None
        target = None
        if not stack and below and type(below[-1]) is list and id(below[-1]) not in mixed:
            target = below[-1]
            if target and id(target) not in traces:
                target = None
        match = fast.match
        rows = stack
        gi = {g: i for i, g in enumerate(fast_groups)}
        ia, iaddr, isize, istream, itime, ifr = (gi.get(k, -1) for k in ("action", "addr", "size", "stream",
                                                                          "time_us", "frames"))
        from_bytes = int.from_bytes
        while True:
            if pos + 8192 > len(buf):
                fill(65536)
            m = match(buf, pos)
            if m is None:
                return
            if t is None and target is not None:  # the first event here: straight into the list's Trace
                t = traces.get(id(target)) or new_trace(target)
                direct_level = len(marks)
                put_a, put_addr, put_size = t.action.append, t.addr.append, t.size.append
                put_time, put_frame = t.time_us.append, t.frame.append
            g = m.groups()
            ref = g[ia]
            a = action_refs.get(ref)
            if a is None:
                act = get(ref[1] if ref[0] == 0x68 else unpack_I(ref, 1)[0])
                if not isinstance(act, str):
                    return  # the generic path says what is wrong
                a = actions.get(act)
                if a is None:
                    if len(actions) >= 127:
                        raise UnpickleError("more than 127 distinct allocator actions")
                    a = actions[act] = len(actions)
                action_refs[ref] = a
            count += 1  # the event dict's MEMOIZE
            fr = g[ifr]
            if fr[0] == 0x5D:  # a new list: EMPTY_LIST MEMOIZE [MARK refs APPENDS]
                st = stack_of(fr[3:-1])
                if count in memo:
                    stack_cache.clear()
                memo[count] = _Ref(st, count)
                old.append(count)
                if len(old) > WINDOW:
                    memo.pop(old.popleft(), None)
                count += 1
                code = st.code
            else:  # a reference to an earlier list (free_completed shares free_requested's)
                code = code_of(get(fr[1] if fr[0] == 0x68 else unpack_I(fr, 1)[0]))
            v = g[iaddr] if iaddr >= 0 else b"K\x00"
            addr = from_bytes(v[2:], "little", signed=True) if v[0] == 0x8A else _decode(v)
            v = g[isize] if isize >= 0 else b"K\x00"
            size = from_bytes(v[2:], "little", signed=True) if v[0] == 0x8A else _decode(v)
            v = g[istream] if istream >= 0 else b"K\x00"
            strm = v[1] if v[0] == 0x4B else _decode(v)
            v = g[itime] if itime >= 0 else b"K\x00"
            tus = from_bytes(v[2:], "little", signed=True) if v[0] == 0x8A else _decode(v)
            if t is not None:
                try:
                    put_addr(addr)
                    put_size(size)
                    put_time(tus)
                except OverflowError:
                    raise UnpickleError(f"trace entry {len(t.action)}: a value does not fit in 64 bits") from None
                put_a(a)
                put_frame(code)
                events += 1
            else:
                rows.append((_ROW, a, addr, size, strm, tus, code))
            pos = m.end()

    named = {0x63: "GLOBAL", 0x93: "STACK_GLOBAL", 0x52: "REDUCE", 0x62: "BUILD", 0x69: "INST", 0x6F: "OBJ",
             0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x50: "PERSID",
             0x51: "BINPERSID", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER"}

    while True:
        if pos + 16 > len(buf):
            fill(16)
        if pos >= len(buf):
            raise UnpickleError("pickle data was truncated")
        op = buf[pos]
        pos += 1
        if op == 0x68:  # BINGET
            need(1)
            stack.append(get(buf[pos]))
            pos += 1
        elif op == 0x94:  # MEMOIZE
            if not stack:
                raise UnpickleError("MEMOIZE on an empty stack")
            obj = stack[-1]
            if count in memo:
                stack_cache.clear()
            memo[count] = obj
            if type(obj) is dict or type(obj) is list:
                memo_of[id(obj)] = count
            count += 1
        elif op == 0x8A:  # LONG1
            need(1)
            n = buf[pos]
            need(1 + n)
            stack.append(int.from_bytes(buf[pos + 1:pos + 1 + n], "little", signed=True))
            pos += 1 + n
        elif op == 0x8C:  # SHORT_BINUNICODE
            need(1)
            n = buf[pos]
            need(1 + n)
            try:
                stack.append(buf[pos + 1:pos + 1 + n].decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError as e:
                raise UnpickleError(f"a string is not UTF-8 ({e.reason})") from None
            pos += 1 + n
        elif op == 0x28:  # MARK
            marks.append(stack)
            stack = []
            if fast is not None and buf.startswith(b"}\x94(", pos):
                read_events()
        elif op == 0x7D:  # EMPTY_DICT
            if len(marks) == event_level and fast is not None and buf.startswith(b"\x94(", pos):
                pos -= 1
                read_events()
                if buf[pos] == 0x7D:  # not in the learned shape: this one the generic way
                    pos += 1
                    stack.append({})
            else:
                stack.append({})
        elif op == 0x75:  # SETITEMS
            items = pop_mark()
            if not stack:
                raise UnpickleError("SETITEMS without a dict")
            setitems(stack[-1], items)
        elif op == 0x4B:  # BININT1
            need(1)
            stack.append(buf[pos])
            pos += 1
        elif op == 0x6A:  # LONG_BINGET
            need(4)
            stack.append(get(unpack_I(buf, pos)[0]))
            pos += 4
        elif op == 0x4D:  # BININT2
            need(2)
            stack.append(unpack_H(buf, pos)[0])
            pos += 2
        elif op == 0x5D:  # EMPTY_LIST
            # a frames list: EMPTY_LIST MEMOIZE MARK (BINGET|LONG_BINGET)+ APPENDS, decided once per byte run
            m = None
            if pos + 65536 > len(buf):
                fill(65536)
            if buf.startswith(b"\x94(", pos):
                m = _REFS.match(buf, pos + 2)
            if m is not None and m.end() > pos + 2 and m.end() < len(buf) and buf[m.end()] == 0x65:
                ref = _Ref(stack_of(buf[pos + 2:m.end()]), count)
                stack.append(ref)
                if count in memo:
                    stack_cache.clear()
                memo[count] = ref
                count += 1
                pos = m.end() + 1
            else:
                stack.append([])
        elif op == 0x65:  # APPENDS
            items = pop_mark(appends=True)
            if not stack:
                raise UnpickleError("APPENDS without a list")
            append_items(stack[-1], items)
        elif op == 0x4A:  # BININT
            need(4)
            stack.append(unpack_i(buf, pos)[0])
            pos += 4
        elif op == 0x88:  # NEWTRUE
            stack.append(True)
        elif op == 0x89:  # NEWFALSE
            stack.append(False)
        elif op == 0x4E:  # NONE
            stack.append(None)
        elif op == 0x86:  # TUPLE2
            if len(stack) < 2:
                raise UnpickleError("TUPLE2 on a short stack")
            b = stack.pop()
            stack[-1] = (stack[-1], b)
        elif op == 0x85:  # TUPLE1
            if not stack:
                raise UnpickleError("TUPLE1 on an empty stack")
            stack[-1] = (stack[-1],)
        elif op == 0x87:  # TUPLE3
            if len(stack) < 3:
                raise UnpickleError("TUPLE3 on a short stack")
            c = stack.pop()
            b = stack.pop()
            stack[-1] = (stack[-1], b, c)
        elif op == 0x29:  # EMPTY_TUPLE
            stack.append(())
        elif op == 0x74:  # TUPLE
            stack.append(tuple(pop_mark()))
        elif op == 0x61:  # APPEND
            if len(stack) < 2:
                raise UnpickleError("APPEND on a short stack")
            v = stack.pop()
            append_items(stack[-1], [v])
        elif op == 0x73:  # SETITEM
            if len(stack) < 3:
                raise UnpickleError("SETITEM on a short stack")
            v = stack.pop()
            k = stack.pop()
            setitems(stack[-1], [k, v])
        elif op == 0x58:  # BINUNICODE
            need(4)
            n = unpack_I(buf, pos)[0]
            need(4 + n)
            try:
                stack.append(buf[pos + 4:pos + 4 + n].decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError as e:
                raise UnpickleError(f"a string is not UTF-8 ({e.reason})") from None
            pos += 4 + n
        elif op == 0x8D:  # BINUNICODE8
            need(8)
            n = unpack_Q(buf, pos)[0]
            if n > 1 << 31:
                raise UnpickleError("a string longer than 2 GiB")
            need(8 + n)
            try:
                stack.append(buf[pos + 8:pos + 8 + n].decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError as e:
                raise UnpickleError(f"a string is not UTF-8 ({e.reason})") from None
            pos += 8 + n
        elif op == 0x47:  # BINFLOAT
            need(8)
            stack.append(unpack_d(buf, pos)[0])
            pos += 8
        elif op == 0x8B:  # LONG4
            need(4)
            n = unpack_i(buf, pos)[0]
            if n < 0 or n > 1 << 16:
                raise UnpickleError("a LONG4 of implausible length")
            need(4 + n)
            stack.append(int.from_bytes(buf[pos + 4:pos + 4 + n], "little", signed=True))
            pos += 4 + n
        elif op == 0x43 or op == 0x42 or op == 0x8E:  # SHORT_BINBYTES, BINBYTES, BINBYTES8
            width = {0x43: 1, 0x42: 4, 0x8E: 8}[op]
            need(width)
            n = int.from_bytes(buf[pos:pos + width], "little")
            if n > 1 << 31:
                raise UnpickleError("a bytes object longer than 2 GiB")
            need(width + n)
            stack.append(bytes(buf[pos + width:pos + width + n]))
            pos += width + n
        elif op == 0x71:  # BINPUT
            need(1)
            put(buf[pos])
            pos += 1
        elif op == 0x72:  # LONG_BINPUT
            need(4)
            put(unpack_I(buf, pos)[0])
            pos += 4
        elif op == 0x95:  # FRAME: only a hint for readers; the bytes that follow are read as they come
            need(8)
            pos += 8
        elif op == 0x80:  # PROTO
            need(1)
            if not 2 <= buf[pos] <= 5:
                raise UnpickleError(f"unsupported pickle protocol {buf[pos]}")
            pos += 1
        elif op == 0x2E:  # STOP
            if len(stack) != 1 or marks:
                raise UnpickleError("STOP with a malformed stack")
            break
        elif op == 0x30:  # POP
            if stack:
                stack.pop()
            else:
                pop_mark()
        elif op == 0x31:  # POP_MARK
            pop_mark()
        elif op == 0x32:  # DUP
            if not stack:
                raise UnpickleError("DUP on an empty stack")
            stack.append(stack[-1])
        elif op == 0x8F:  # EMPTY_SET
            stack.append(set())
        elif op == 0x90:  # ADDITEMS
            items = pop_mark()
            if not stack or not isinstance(stack[-1], set):
                raise UnpickleError("ADDITEMS without a set")
            try:
                stack[-1].update(items)
            except TypeError:
                raise UnpickleError("an unhashable set item") from None
        elif op == 0x91:  # FROZENSET
            try:
                stack.append(frozenset(pop_mark()))
            except TypeError:
                raise UnpickleError("an unhashable frozenset item") from None
        elif op == 0x6C:  # LIST
            stack.append(list(pop_mark()))
        elif op == 0x64:  # DICT
            items = pop_mark()
            d: dict[Any, Any] = {}
            setitems(d, items)
            stack.append(d)
        elif op in named:
            what = named[op]
            if op == 0x63:  # GLOBAL: module\nname\n
                end = buf.find(b"\n", pos)
                end2 = buf.find(b"\n", end + 1) if end >= 0 else -1
                if end2 > 0:
                    what = (buf[pos:end] + b"." + buf[end + 1:end2]).decode("utf-8", "replace")
            elif op == 0x93 and len(stack) >= 2 and isinstance(stack[-1], str) and isinstance(stack[-2], str):
                what = f"{stack[-2]}.{stack[-1]}"
            raise UnpickleError(f"the pickle names a Python object ({what})", named=what)
        else:
            raise UnpickleError(f"opcode {op:#04x} is not plain pickle data")
    return Loaded(data=stack[0], traces=traces, actions=sorted(actions, key=actions.__getitem__),
                  frames=sorted(frame_codes, key=frame_codes.__getitem__))

"""The program `iterpref.sandbox.run_unittest` runs inside the sandbox: a judge and a solution.

Started as ``python -P -S judge.pyc CONFIG_JSON`` (standard library only; the pipeline never
runs it in-process): bytecode the host compiled once, and no ``site`` at start-up, whose import
path, prefixes and ``exit``/``quit``/``help`` the host passes in the config (`_site`); together
about 10 ms of CPU per run less than ``python judge.py``. It imports what both processes need
(unittest included) and forks once, before any candidate code exists in memory:

* the **solution process** drops to the candidate's uid (when started as root), closes every
  inherited descriptor but its ends of two pipes (requests in, answers out), compiles
  ``solution.py`` and runs it as the module ``solution`` (what ``import solution`` does), then
  only answers requests;
* the **judge process** drops to the judge's uid, imports the unittest module
  ``test_solution.py`` (by its path: the judge's folder is never on ``sys.path``, so a module the
  tests import late cannot be one planted beside them) with ``solution`` bound to a proxy module
  whose names forward calls to the solution process, runs the tests and writes the verdict, as
  one JSON line, to a pipe the host handed to it alone (``verdict_fd``).

Values cross the boundary as JSON with a few tags (`encode` / `decode`): None, bool, int, float,
str, list, tuple, dict, set, frozenset, bytes, bytearray, complex, datetime's date, datetime,
time and timedelta, nested freely; subclasses of these arrive as the base type. Anything else
stays in the solution process and crosses as a handle: calling it, its attributes, ``len``,
indexing, ``in``, iteration, ``str``/``repr``, ``bool``, ``int``/``float``/``index`` are forwarded,
but equality, ordering and hashing of a handle are by identity, so an object of the candidate's
cannot decide a comparison. An exception raised by the solution is raised in the test as the
same builtin type (``assertRaises(ValueError)`` works); the solution's own exception classes
become judge-side classes with the same name and nearest builtin base; ``StopIteration`` only
ends iterations (raised from a plain call it arrives as an ordinary exception, so it cannot cut
a ``map`` short).

A solution that dies, closes its pipe or sends anything but well-formed answers ends its
run as ``crashed``: that mark is sticky, whatever the tests catch afterwards.

Time: the code may use ``cpu_s`` of CPU time in its import and again in each test (a profiling
timer, ``ITIMER_PROF``, the judge has the solution process re-arm as each test starts; its
``SIGPROF`` ends the process), so a test that loops is stopped in that test whatever CPU time the
tests before it used, on a loaded machine as on an idle one. Each process's RLIMIT_CPU,
``total_cpu_s``, caps the whole run (also for code that ignores ``SIGPROF``). Either way the
verdict says only that the code ran out of CPU time and whether that was at import: for tests that
each use nearly ``cpu_s``, which limit comes first, in which test, varies from run to run (the CPU
time of the same code does), and the feedback must not.
"""

from __future__ import annotations

import builtins
import gc
import importlib
import importlib.util
import json
import os
import signal
import sys
import time
import traceback
import types
import unittest

# Imports are what a run costs most. unittest is imported before the fork: importing it after,
# in the judge, wrote to more pages the two processes shared (about 240 more copied on write)
# than using it does. datetime is imported only when a date crosses (no candidate holds a date
# without importing it).
SCRIPT = sys._getframe().f_code.co_filename  # judge.py's path, also when run from its bytecode
HIDDEN = (os.path.join(os.path.dirname(os.__file__), "unittest") + os.sep,
          os.path.dirname(importlib.__file__) + os.sep, "<frozen importlib")
TRACEBACK_LIMIT = 20000
MAX_MESSAGE = 64 * 1024 * 1024
DATE_TAGS = ("datetime", "date", "time", "timedelta")  # subclasses first


# --------------------------------------------------------------------------- wire format

def encode(obj, handle):
    """``obj`` as JSON-able data; ``handle(obj)`` encodes what is not plain data (or raises)."""
    t = type(obj)
    if obj is None or t is bool or t is str or t is int or t is float:
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, list):
        return [encode(x, handle) for x in list.__iter__(obj)]
    if isinstance(obj, tuple):
        return {"$": "tuple", "v": [encode(x, handle) for x in tuple.__iter__(obj)]}
    if isinstance(obj, dict):
        return {"$": "dict", "v": [[encode(k, handle), encode(v, handle)] for k, v in dict.items(obj)]}
    if isinstance(obj, (set, frozenset)):
        tag = "frozenset" if isinstance(obj, frozenset) else "set"
        return {"$": tag, "v": [encode(x, handle) for x in (frozenset.__iter__ if tag == "frozenset" else set.__iter__)(obj)]}
    if isinstance(obj, (bytes, bytearray)):
        return {"$": "bytearray" if isinstance(obj, bytearray) else "bytes", "v": bytes(obj).hex()}
    if isinstance(obj, complex):
        return {"$": "complex", "v": [obj.real, obj.imag]}
    dt = sys.modules.get("datetime")
    for tag in DATE_TAGS if dt is not None else ():
        cls = getattr(dt, tag)
        if isinstance(obj, cls):
            v = [obj.days, obj.seconds, obj.microseconds] if tag == "timedelta" else cls.isoformat(obj)
            return {"$": tag, "v": v}
    return handle(obj)


def decode(data, handle):
    """The value `encode` wrote; ``handle(dict)`` turns a ``{"$": "ref", ...}`` into an object.

    Strict: anything that is not exactly what `encode` writes raises ValueError or TypeError.
    """
    t = type(data)
    if data is None or t is bool or t is str or t is int or t is float:
        return data
    if t is list:
        return [decode(x, handle) for x in data]
    if t is not dict or not isinstance(data.get("$"), str):
        raise ValueError(f"not an encoded value: {type(data).__name__}")
    tag, v = data["$"], data.get("v")
    if tag == "ref":
        return handle(data)
    if tag in ("tuple", "set", "frozenset"):
        items = [decode(x, handle) for x in _list(v)]
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict":
        out = {}
        for pair in _list(v):
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("a dict item is not a [key, value] pair")
            out[decode(pair[0], handle)] = decode(pair[1], handle)
        return out
    if tag in ("bytes", "bytearray") and type(v) is str:
        return (bytes if tag == "bytes" else bytearray).fromhex(v)
    if tag == "complex" and type(v) is list and len(v) == 2 and all(type(x) in (int, float) for x in v):
        return complex(v[0], v[1])
    if tag == "timedelta" and type(v) is list and len(v) == 3 and all(type(x) is int for x in v):
        import datetime

        return datetime.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
    if tag in DATE_TAGS and type(v) is str:
        import datetime

        return getattr(datetime, tag).fromisoformat(v)
    raise ValueError(f"unknown or malformed tag {tag!r}")


def _list(v):
    if type(v) is not list:
        raise ValueError("expected a list")
    return v


class unlimited_digits:
    """Big ints cross whole: lift the int/str conversion limit while (de)serialising."""

    def __enter__(self) -> None:
        self.digits = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)

    def __exit__(self, *exc) -> None:
        sys.set_int_max_str_digits(self.digits)


def send(wfile, message) -> None:
    wfile.write(json.dumps(message).encode("utf-8") + b"\n")
    wfile.flush()


def _relative(path: str, root: str) -> str:
    return path[len(root) + 1:] if path.startswith(root + os.sep) else path


# --------------------------------------------------------------------------- the solution process

class SolutionServer:
    """Runs in the solution process: imports the candidate and answers the judge's requests."""

    OPS = {"len": len, "getitem": lambda o, k: o[k], "setitem": lambda o, k, v: o.__setitem__(k, v),
           "delitem": lambda o, k: o.__delitem__(k), "contains": lambda o, k: k in o, "iter": iter,
           "next": next, "str": str, "repr": repr, "bool": bool, "int": int, "float": float,
           "index": lambda o: o.__index__()}

    def __init__(self, rfile, wfile, work: str, cpu_s: float) -> None:
        self.rfile, self.wfile = rfile, wfile
        self.work, self.cpu_s = work, cpu_s
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}

    def ref(self, obj) -> dict:
        key = id(obj)
        if key not in self.ids:
            self.ids[key] = len(self.objects)
            self.objects[self.ids[key]] = obj
        return {"$": "ref", "id": self.ids[key]}

    def handle(self, obj) -> dict:
        ref = self.ref(obj)
        if isinstance(obj, type):
            exc = issubclass(obj, BaseException)
            ref.update(kind="exception_class" if exc else "class", name=obj.__name__,
                       base=_builtin_base(obj) if exc else None)
        else:
            ref.update(kind="object", name=type(obj).__name__, cls=self.handle(type(obj))["id"])
        return ref

    def lookup(self, data: dict):
        return self.objects[data["id"]]

    def encode(self, obj):
        return encode(obj, self.handle)

    def describe(self, exc: BaseException) -> dict:
        frames = [[_relative(fs.filename, self.work), fs.lineno, fs.name, fs.line]
                  for fs in traceback.extract_tb(exc.__traceback__)
                  if fs.filename != SCRIPT and not fs.filename.startswith(HIDDEN)]
        try:
            args = self.encode(list(exc.args))
        except BaseException:
            args = None
        try:
            message = str(exc)
        except BaseException:
            message = f"<{type(exc).__name__}: str() failed>"
        cls = None if type(exc).__module__ == "builtins" else self.handle(type(exc))["id"]
        return {"name": type(exc).__name__, "base": _builtin_base(type(exc)), "cls": cls, "args": args,
                "message": message, "frames": frames}

    def parse(self, line: bytes) -> tuple:
        with unlimited_digits():
            request = json.loads(line)
            return request[0], self.lookup(request[1]), [decode(a, self.lookup) for a in request[2:]]

    def dumps(self, kind: str, value) -> bytes:
        with unlimited_digits():
            payload = self.encode(value) if kind == "ok" else self.describe(value)
            return json.dumps([kind, payload]).encode("utf-8") + b"\n"

    def answer(self, op: str, target, args: list):
        if op == "getattr":
            return getattr(target, args[0])
        if op == "setattr":
            return setattr(target, args[0], args[1])
        if op == "delattr":
            return delattr(target, args[0])
        if op == "call":
            return target(*args[0], **dict(args[1]))
        if op == "op":
            return self.OPS[args[0]](target, *args[1:])
        if op == "budget":  # a test starts: its own CPU time from now
            signal.setitimer(signal.ITIMER_PROF, self.cpu_s)
            return None
        raise ValueError(f"unknown request {op!r}")

    def serve(self, module) -> None:
        self.ref(module)  # id 0: the module
        send(self.wfile, ["ready"])
        while True:
            line = self.rfile.readline()
            if not line:
                os._exit(0)
            try:
                reply = self.dumps("ok", self.answer(*self.parse(line)))
            except BaseException as exc:  # everything the candidate raises goes back
                reply = self.dumps("raise", exc)
            self.wfile.write(reply)
            self.wfile.flush()


def _builtin_base(cls: type) -> str:
    return next((c.__name__ for c in cls.__mro__ if c.__module__ == "builtins"), "BaseException")


def solution_main(fds: tuple[int, int], cfg: dict) -> None:
    """The forked child: confine itself, import the candidate, then serve. Never returns.

    ``fds``: the pipes it reads requests from and writes answers to."""
    low = 3
    for fd in sorted(fds):  # close the verdict pipe and all else the judge holds
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
    if cfg["solution_uid"] is not None:
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["solution_uid"], cfg["solution_uid"], cfg["solution_uid"])
    work = cfg["work"]
    os.chdir(work)
    sys.path.insert(0, work)
    server = SolutionServer(os.fdopen(fds[0], "rb"), os.fdopen(fds[1], "wb"), work, cfg["cpu_s"])
    path = os.path.join(work, "solution.py")
    signal.setitimer(signal.ITIMER_PROF, server.cpu_s)  # the import's CPU time
    try:
        with open(path, "rb") as fh:
            code = compile(fh.read(), path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        send(server.wfile, ["syntax_error", server.describe(e), _format_exception(e, work)])
        os._exit(0)
    # What `import solution` does, with the code compiled above (importing compiled it again).
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location("solution", path))
    sys.modules["solution"] = module
    try:
        exec(code, module.__dict__)
    except BaseException as e:
        send(server.wfile, ["import_error", server.describe(e), _format_exception(e, work)])
        os._exit(0)
    server.serve(module)


def _format_exception(e: BaseException, work: str) -> str:
    te = traceback.TracebackException.from_exception(e, compact=True)
    _strip(te)
    return "".join(te.format()).replace(work + os.sep, "")


def _strip(te: traceback.TracebackException) -> None:
    """Drop judge, unittest and importlib frames in the whole chain."""
    todo, seen = [te], set()
    while todo:
        t = todo.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list(
            [fs for fs in t.stack if fs.filename != SCRIPT and not fs.filename.startswith(HIDDEN)])
        todo += [t.__cause__, t.__context__]


# --------------------------------------------------------------------------- the judge process

class SolutionGone(BaseException):
    """The solution process died or broke the protocol (a BaseException: ``assertRaises(Exception)``
    and ``except Exception`` in a test cannot swallow it)."""


CHANNEL = None  # the judge's one `Channel`, set in judge_main


def _forward(op: str):
    """A special method of `Remote` that applies ``op`` to the object in the solution process."""
    def method(self, *args):
        return CHANNEL.op(op, self, *args)

    method.__name__ = f"__{op}__"
    return method


class Remote:
    """A handle to an object that lives in the solution process. Identity semantics for ``==``,
    ordering and ``hash``: the candidate's code never decides a comparison."""

    __slots__ = ("_iterpref_id",)

    def __new__(cls, *args, **kwargs):
        if "_iterpref_class_id" not in cls.__dict__:
            raise TypeError(f"cannot create {cls.__name__} objects in the judge")
        return CHANNEL.request("call", {"$": "ref", "id": cls._iterpref_class_id}, list(args), _kwargs(kwargs))

    def __init__(self, *args, **kwargs) -> None:
        pass  # the solution process constructed it in __new__

    def __getattr__(self, name):
        return CHANNEL.request("getattr", self, name)

    def __setattr__(self, name, value):
        CHANNEL.request("setattr", self, name, value)

    def __delattr__(self, name):
        CHANNEL.request("delattr", self, name)

    def __call__(self, *args, **kwargs):
        return CHANNEL.request("call", self, list(args), _kwargs(kwargs))

    # Forwarded to the object in the solution process (comparisons and hash are not: see above).
    __len__ = _forward("len")
    __getitem__ = _forward("getitem")
    __setitem__ = _forward("setitem")
    __delitem__ = _forward("delitem")
    __contains__ = _forward("contains")
    __iter__ = _forward("iter")
    __next__ = _forward("next")
    __str__ = _forward("str")
    __repr__ = _forward("repr")
    __bool__ = _forward("bool")
    __int__ = _forward("int")
    __float__ = _forward("float")
    __index__ = _forward("index")

    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__


class RemoteClass(type):
    """Metaclass of the judge-side stand-ins for the candidate's classes: class attributes
    (static and class methods, constants) are fetched from the solution process."""

    def __getattr__(cls, name):
        if name.startswith("__") or "_iterpref_class_id" not in cls.__dict__:
            raise AttributeError(name)
        return CHANNEL.request("getattr", {"$": "ref", "id": cls._iterpref_class_id}, name)


def _kwargs(kwargs: dict) -> list:
    return [[k, v] for k, v in kwargs.items()]


class Channel:
    """The judge's ends of the pipes: requests out, strictly decoded answers back."""

    def __init__(self, rfile, wfile, pid: int, cfg: dict) -> None:
        self.rfile, self.wfile = rfile, wfile
        self.pid, self.cfg = pid, cfg
        self.gone: str | None = None  # why the solution can no longer be trusted, once it happened
        self.out_of_cpu = False  # it was gone because it used up its CPU time (in a test or in all)
        self.running: str | None = None  # the test being run
        self.gone_in: str | None = None  # the test that was running when the solution went
        self.handles: dict[int, Remote] = {}
        self.classes: dict[tuple[int, str], type] = {}

    # -- values
    def encode_arg(self, obj):
        def handle(o):
            cid = o.__dict__.get("_iterpref_class_id") if isinstance(o, type) else None
            if isinstance(o, Remote):
                return {"$": "ref", "id": object.__getattribute__(o, "_iterpref_id")}
            if cid is not None:
                return {"$": "ref", "id": cid}
            raise TypeError(f"a {type(o).__name__} cannot be passed to the solution (it runs in another process; "
                            "plain data and objects the solution returned can)")
        return encode(obj, handle)

    def handle(self, data: dict):
        ref, kind, name = data.get("id"), data.get("kind"), data.get("name")
        if type(ref) is not int or type(name) is not str:
            raise ValueError("malformed handle")
        if kind == "object":
            if ref not in self.handles:
                cls = self.klass(data.get("cls"), "class", name, None)
                obj = object.__new__(cls)
                object.__setattr__(obj, "_iterpref_id", ref)
                self.handles[ref] = obj
            return self.handles[ref]
        if kind in ("class", "exception_class"):
            return self.klass(ref, kind, name, data.get("base"))
        raise ValueError(f"unknown handle kind {kind!r}")

    def klass(self, ref, kind: str, name: str, base) -> type:
        if type(ref) is not int:
            raise ValueError("malformed class handle")
        if (ref, kind) not in self.classes:
            if kind == "exception_class":
                self.classes[ref, kind] = type(name, (_exception_base(base, name),),
                                         {"__module__": "solution", "_iterpref_class_id": ref})
            else:
                self.classes[ref, kind] = RemoteClass(name, (Remote,), {"__slots__": (), "__module__": "solution",
                                                                  "_iterpref_class_id": ref})
        return self.classes[ref, kind]

    def exception(self, info: dict, stop_allowed: bool) -> BaseException:
        name, base, cls_id = info.get("name"), info.get("base"), info.get("cls")
        message, frames = info.get("message"), info.get("frames")
        if type(name) is not str or type(message) is not str or type(frames) is not list:
            raise ValueError("malformed exception")
        builtin = getattr(builtins, name, None)
        if cls_id is None and isinstance(builtin, type) and issubclass(builtin, Exception) and builtin.__name__ == name \
                and (stop_allowed or not issubclass(builtin, (StopIteration, StopAsyncIteration))):
            cls = builtin
        elif cls_id is None:
            cls = type(name, (_exception_base(base, name, stop_allowed),), {"__module__": "solution"})
        else:
            cls = self.klass(cls_id, "exception_class", name, base)
            if not stop_allowed and issubclass(cls, (StopIteration, StopAsyncIteration)):
                cls = type(name, (Exception,), {"__module__": "solution"})
        try:
            exc = cls(*decode(info["args"], self.handle)) if type(info.get("args")) is list else cls(message)
        except Exception:
            exc = cls.__new__(cls)
            exc.args = (message,)
        exc._iterpref_frames = [traceback.FrameSummary(str(f[0]), int(f[1]), str(f[2]), line=str(f[3] or ""))
                                for f in frames]
        return exc

    # -- requests
    def op(self, name: str, target, *args):
        return self.request("op", target, name, *args)

    def request(self, op: str, target, *args):
        if self.gone:
            raise SolutionGone(self.gone)
        with unlimited_digits():
            ref = target if type(target) is dict else self.encode_arg(target)  # a raw ref, a handle or a class
            message = [op, ref, *(self.encode_arg(a) for a in args)]
            try:
                send(self.wfile, message)
                line = self.rfile.readline(MAX_MESSAGE)
            except OSError as e:
                self.fail(f"the solution process closed the connection ({e})")
            if not line:
                self.fail(self.exit_status())
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("answer too long")
                kind, payload = json.loads(line)
                if kind == "ok":
                    return decode(payload, self.handle)
                if kind != "raise" or type(payload) is not dict:
                    raise ValueError(f"unexpected answer kind {kind!r}")
                exc = self.exception(payload, stop_allowed=op == "op" and args[0] == "next")
            except (ValueError, TypeError, KeyError, IndexError, RecursionError, MemoryError, OverflowError) as e:
                self.fail(f"the solution process broke the protocol: {type(e).__name__}: {e}")
        raise exc

    def fail(self, why: str):
        self.gone, self.gone_in = why, self.running
        raise SolutionGone(why)

    def start(self, test: str) -> None:
        """``test`` starts: the solution's CPU time is counted afresh (unless it is gone)."""
        self.running = test
        if not self.gone:
            try:
                self.request("budget", {"$": "ref", "id": 0})
            except SolutionGone:
                pass  # recorded in `gone`; the test itself will meet it

    def exit_status(self) -> str:
        """Why the answers pipe closed: the solution's exit status when it is gone within
        `EXIT_WAIT_S`. Out of CPU time (`out_of_cpu`): in one test, killed by SIGPROF; over the
        run, killed by SIGXCPU at RLIMIT_CPU's soft limit, or by SIGKILL at the hard one (a second
        later, when it ignored SIGXCPU) having used the limit."""
        deadline = time.monotonic() + EXIT_WAIT_S
        while time.monotonic() < deadline:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                if os.WIFSIGNALED(status):
                    sig = os.WTERMSIG(status)
                    used = usage.ru_utime + usage.ru_stime
                    if sig in (signal.SIGPROF, signal.SIGXCPU) or (sig == signal.SIGKILL and used >= self.cfg["total_cpu_s"]):
                        self.out_of_cpu = True
                        return (f"the code used up its CPU time limit ({self.cfg['cpu_s']} s in a test, "
                                f"{self.cfg['total_cpu_s']} s in all)")
                    return f"the solution process was killed by signal {sig}"
                return f"the solution process exited with code {os.WEXITSTATUS(status)}"
            time.sleep(0.01)
        return "the solution process closed the connection"


EXIT_WAIT_S = 5.0  # a process that closed its pipe and is not gone by then is "crashed"


def _exception_base(base, name: str, stop_allowed: bool = True) -> type:
    cls = getattr(builtins, base, None) if type(base) is str else None
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return Exception
    if not stop_allowed and issubclass(cls, (StopIteration, StopAsyncIteration)):
        return Exception
    return cls




class SolutionModule(types.ModuleType):
    """``solution`` on the judge side: every public name is fetched from the solution process."""

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return CHANNEL.request("getattr", {"$": "ref", "id": 0}, name)


def run_tests(module, announce):
    """Run ``module``'s tests; the result keeps the first failure and the first error."""

    class Result(unittest.TestResult):
        """Keeps the first failure and the first error; announces each test on the verdict pipe."""

        first_failure = first_error = None

        def __init__(self, announce) -> None:
            super().__init__()
            self.announce = announce

        def startTest(self, test):
            self.announce({"running": test.id()})
            CHANNEL.start(test.id())
            super().startTest(test)

        def note(self, test, err):
            if issubclass(err[0], test.failureException):
                self.first_failure = self.first_failure or err
            else:
                self.first_error = self.first_error or err

        def addFailure(self, test, err):
            self.note(test, err)
            super().addFailure(test, err)

        def addError(self, test, err):
            self.note(test, err)
            super().addError(test, err)

        def addSubTest(self, test, subtest, err):
            if err is not None:
                self.note(test, err)
            super().addSubTest(test, subtest, err)

    result = Result(announce)
    unittest.defaultTestLoader.loadTestsFromModule(module).run(result)
    return result


def describe(exc_type, exc, tb, root: str) -> tuple[str, str]:
    """Name and cleaned traceback; the solution's own frames follow the test's."""
    te = traceback.TracebackException(exc_type, exc, tb, compact=True)
    todo, seen = [(te, exc)], set()
    while todo:
        t, e = todo.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        kept = [fs for fs in t.stack if fs.filename != SCRIPT and not fs.filename.startswith(HIDDEN)]
        t.stack = traceback.StackSummary.from_list(kept + list(getattr(e, "_iterpref_frames", [])))
        todo += [(t.__cause__, getattr(e, "__cause__", None)), (t.__context__, getattr(e, "__context__", None))]
    text = "".join(te.format()).replace(root + os.sep, "")
    text = text if len(text) <= TRACEBACK_LIMIT else text[: TRACEBACK_LIMIT // 2] + "\n...\n" + text[-TRACEBACK_LIMIT // 2:]
    return exc_type.__name__, text


def judge_main(cfg: dict) -> None:
    """Start the solution process, run the tests against it, write the verdict. Never returns."""
    _site(cfg)
    verdict = os.fdopen(cfg["verdict_fd"], "w", encoding="utf-8")

    def announce(message: dict) -> None:
        verdict.write(json.dumps(message) + "\n")
        verdict.flush()

    def report(status, tests_run=0, failures=0, errors=0, error_type=None, tb=""):
        if CHANNEL.out_of_cpu:  # whatever the tests made of it; not which test, nor when
            where = "" if CHANNEL.gone_in else ", before any test started (at import)"
            status, error_type, tb = "timeout", "TimeoutError", f"TimeoutError: {CHANNEL.gone}{where}"
        elif CHANNEL.gone and status != "crashed":
            status, error_type, tb = "crashed", "SolutionCrashed", CHANNEL.gone
        announce({"verdict": {"status": status, "tests_run": tests_run, "failures": failures, "errors": errors,
                              "error_type": error_type, "traceback": tb}})
        verdict.close()
        os._exit(0)  # don't wait for threads or atexit handlers

    if cfg["judge_uid"] is None:
        _not_dumpable()  # same uid as the solution: keep it out of /proc/<judge>/fd and ptrace
    requests, answers = os.pipe(), os.pipe()
    gc.freeze()  # fewer pages copied on write after the fork
    pid = os.fork()
    if pid == 0:
        solution_main((requests[0], answers[1]), cfg)
    os.close(requests[0])
    os.close(answers[1])
    if cfg["judge_uid"] is not None:
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["judge_uid"], cfg["judge_uid"], cfg["judge_uid"])
    global CHANNEL
    CHANNEL = Channel(os.fdopen(answers[0], "rb"), os.fdopen(requests[1], "wb"), pid, cfg)
    root = cfg["judge"]
    os.chdir(root)  # not on sys.path: what the tests import late comes from the interpreter's own path
    line = CHANNEL.rfile.readline(MAX_MESSAGE)
    try:
        hello = json.loads(line) if line.endswith(b"\n") else None
    except ValueError:
        hello = None
    if not hello:
        CHANNEL.gone = CHANNEL.exit_status() if not line else "the solution process broke the protocol at start-up"
        report("crashed", error_type="SolutionCrashed", tb=CHANNEL.gone)
    if isinstance(hello, list) and len(hello) == 3 and hello[0] in ("syntax_error", "import_error") \
            and isinstance(hello[1], dict):
        name = str(hello[1].get("name"))
        status = "memory" if name == "MemoryError" else hello[0]
        report(status, error_type=name, tb=str(hello[2]))
    if hello != ["ready"]:
        CHANNEL.gone = "the solution process broke the protocol at start-up"
        report("crashed", error_type="SolutionCrashed", tb=CHANNEL.gone)

    sys.modules["solution"] = SolutionModule("solution")
    try:
        spec = importlib.util.spec_from_file_location("test_solution", os.path.join(root, "test_solution.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["test_solution"] = module
        spec.loader.exec_module(module)
    except BaseException as e:
        name, tb = describe(type(e), e, e.__traceback__, root)
        report("memory" if isinstance(e, MemoryError) else "import_error", error_type=name, tb=tb)
    result = run_tests(module, announce)
    failures = len(result.failures) + len(result.unexpectedSuccesses)
    counts = dict(tests_run=result.testsRun, failures=failures, errors=len(result.errors))
    if result.testsRun == 0:
        report("error", error_type="NoTestsRan", tb="unittest found no tests in test_solution.py", **counts)
    if result.first_error is not None:
        name, tb = describe(*result.first_error, root)
        report("memory" if name == "MemoryError" else "error", error_type=name, tb=tb, **counts)
    if result.first_failure is not None:
        report("failed", error_type=result.first_failure[0].__name__, tb=describe(*result.first_failure, root)[1],
               **counts)
    if failures:
        report("failed", error_type="UnexpectedSuccess", tb="a test marked expectedFailure passed", **counts)
    report("passed", **counts)


def _site(cfg: dict) -> None:
    """What ``site`` does at start-up, from the host's ``cfg`` (the judge starts with ``-S``):
    the import path and prefixes (venv, ``.pth`` entries) and the ``exit``/``quit``/``help``
    builtins. Not done: code lines of ``.pth`` files (setuptools' distutils shim)."""
    import site

    sys.path[:] = cfg["path"]
    sys.prefix, sys.exec_prefix = cfg["prefix"]
    site.setquit()
    site.setcopyright()
    site.sethelper()


def _not_dumpable() -> None:
    import ctypes

    PR_SET_DUMPABLE = 4
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE) failed")


if __name__ == "__main__":
    judge_main(json.loads(sys.argv[1]))

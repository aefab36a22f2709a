"""What crosses between the tests (judge process) and the code under test (its own process)."""

from __future__ import annotations

import math
import warnings

import pytest

from iterpref.sandbox import SandboxConfig, bwrap_usable, run_unittest
from iterpref.sandbox.judge import decode, encode

BWRAP_OK, _ = bwrap_usable()
BACKEND = "bwrap" if BWRAP_OK else "rlimit"

CODE = '''
import datetime
class Insufficient(ValueError):
    pass
def echo(x):
    return x
def values():
    return {"i": 10 ** 5000, "s": "\\udc80é", "l": [1, [2, (3, {4})]], "t": (None, True, 1.5), "f": frozenset({1}),
            "b": b"\\x00\\xff", "ba": bytearray(b"x"), "c": 1 + 2j, "nan": float("nan"), "inf": -float("inf"),
            "d": datetime.date(2024, 2, 29), "dt": datetime.datetime(2024, 1, 1, 12, 30),
            "td": datetime.timedelta(days=1, seconds=2), (1, 2): "tuple key"}
def withdraw(amount):
    raise Insufficient(f"cannot take {amount}")
def lookup(d, k):
    return d[k]
def gen(n):
    yield from range(n)
class Stack:
    LIMIT = 3
    def __init__(self):
        self.items = []
    def push(self, x):
        self.items.append(x)
    def __len__(self):
        return len(self.items)
    def __iter__(self):
        return iter(self.items)
    def __eq__(self, other):
        return True
    @staticmethod
    def of(*xs):
        s = Stack()
        s.items = list(xs)
        return s
def size(stack):
    return len(stack.items)
'''

TESTS = '''
import datetime, math, unittest
from solution import Insufficient, Stack, echo, gen, lookup, size, values, withdraw

class T(unittest.TestCase):
    def test_values(self):
        v = values()
        self.assertEqual(v["i"], 10 ** 5000)
        self.assertEqual(v["l"], [1, [2, (3, {4})]])
        self.assertIs(type(v["l"][1][1]), tuple)
        self.assertEqual(v["t"], (None, True, 1.5))
        self.assertIs(v["t"][1], True)
        self.assertEqual((v["f"], v["b"], v["ba"], v["c"]), (frozenset({1}), b"\\x00\\xff", bytearray(b"x"), 1 + 2j))
        self.assertTrue(math.isnan(v["nan"]) and v["inf"] == -math.inf)
        self.assertEqual((v["d"], v["dt"], v["td"]), (datetime.date(2024, 2, 29), datetime.datetime(2024, 1, 1, 12, 30),
                                                       datetime.timedelta(days=1, seconds=2)))
        self.assertEqual(v[(1, 2)], "tuple key")
        self.assertEqual(v["s"], "\\udc80é")

    def test_arguments_round_trip(self):
        x = {"a": [1, (2, 3)], 4: {5}, "d": datetime.date(2020, 1, 1)}
        self.assertEqual(echo(x), x)
        self.assertEqual(echo(x=[None]), [None])

    def test_exceptions(self):
        with self.assertRaises(KeyError):
            lookup({}, "k")
        with self.assertRaisesRegex(Insufficient, "cannot take 5"):
            withdraw(5)
        with self.assertRaises(ValueError):
            withdraw(1)

    def test_objects(self):
        s = Stack()
        s.push(1)
        s.push("two")
        self.assertEqual(len(s), 2)
        self.assertEqual(list(s), [1, "two"])
        self.assertEqual(s.items, [1, "two"])
        self.assertEqual(size(s), 2)
        self.assertIsInstance(s, Stack)
        self.assertEqual(Stack.LIMIT, 3)
        self.assertEqual(Stack.of(7, 8).items, [7, 8])
        self.assertEqual(list(gen(3)), [0, 1, 2])
        self.assertNotEqual(s, Stack())  # the candidate's __eq__ never decides

    def test_functions_cannot_cross(self):
        with self.assertRaises(TypeError):
            echo(lambda: 1)
'''


def test_codec_round_trip_and_strictness():
    value = [1, 2.5, "s", None, True, (1, [2]), {"k": {3}}, frozenset(), b"\x01", complex(1, -1)]
    assert decode(encode(value, repr), repr) == value
    assert math.isinf(decode(encode(float("inf"), repr), repr))
    for bad in [{"$": "eval", "v": "1"}, {"a": 1}, {"$": "dict", "v": [[1]]}, {"$": "tuple", "v": 3}, ("x",)]:
        with pytest.raises((ValueError, TypeError)):
            decode(bad, lambda ref: ref)


def test_values_objects_and_exceptions_cross_the_boundary():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = run_unittest(CODE, TESTS, SandboxConfig(backend=BACKEND, timeout_s=10))
    assert out.status == "passed" and out.tests_run == 5, out.traceback

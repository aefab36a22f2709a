"""Bugs a mutation can inject into a reference solution: the AST operators, and how a mutation
is named, enumerated and applied.

How a mutation is identified. Every version is rendered the same way: a fresh
``ast.parse(reference)``, a subset of mutations applied, then ``ast.unparse``. A mutation names
its target by the node's position in ``ast.walk`` order of that fresh parse, the operator and
the operator's variant at that node, so applying a subset is a pure function of
``(reference, subset)`` and two versions differ only on the lines of the mutations that one has
and the other does not. The final version (nothing applied) is ``ast.unparse`` of the
reference.

Operators (each a function ``node, tree -> list[Edit]`` listing the ways it can break ``node``):

    off_by_one       range args, slice bounds, subscript indices: ``n -> n - 1``, ``i - 1 -> i``
    flip_comparison  ``< <-> <=``, ``> <-> >=``, ``== <-> !=``, ``in <-> not in``, ``is <-> is not``,
                     ``not x -> x``
    wrong_operator   ``+ <-> -``, ``* -> +``, ``// <-> /``, ``% -> //``, ``and <-> or`` (also in ``+=``...)
    wrong_constant   int ``c -> c + 1 / c - 1``, ``True <-> False``
    swap_args        two adjacent positional call arguments swapped
    drop_branch      a guard ``if`` that returns/raises/continues/breaks removed, an ``elif`` or
                     ``else`` dropped
    wrong_builtin    ``min <-> max``, ``any <-> all``, ``sum <-> len``, ``sorted``/``.sort`` reverse
                     flipped, ``lower <-> upper``, ``startswith <-> endswith``, ``find <-> rfind``,
                     ``lstrip <-> rstrip``, ``keys <-> values``, ``pop() <-> pop(0)``, ``popleft -> pop``
"""

from __future__ import annotations

import ast
import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_PARSING = threading.Lock()


def parse(source: str) -> ast.Module:
    """``ast.parse``, one thread at a time. The debug stage writes trajectories in threads, and
    CPython 3.11 keeps the AST builder's recursion depth per interpreter, not per thread: when a
    garbage collection inside one parse runs a finalizer and another thread parses meanwhile, one
    of them fails with ``SystemError: AST constructor recursion depth mismatch`` (python/cpython#106905;
    seen in our suite, reproduced by tests/test_mutation_teacher.py)."""
    with _PARSING:
        return ast.parse(source)

# -----------------------------------------------------------------------------
# The tree a mutation is applied to: a fresh parse plus the parent links edits need.


class Tree:
    """A fresh parse of ``source``: nodes in ``ast.walk`` order and each node's parent."""

    def __init__(self, source: str):
        self.root = parse(source)
        self.nodes = list(ast.walk(self.root))
        self.index = {node: i for i, node in enumerate(self.nodes)}
        self.parent = {child: node for node in self.nodes for child in ast.iter_child_nodes(node)}
        # nodes inside type annotations are never mutated (`list[int]` is not an index)
        self.in_annotation = set()
        for node in self.nodes:
            for name in ("annotation", "returns"):
                sub = getattr(node, name, None)
                if isinstance(sub, ast.AST):
                    self.in_annotation.update(ast.walk(sub))

    def replace(self, old: ast.AST, new: ast.AST) -> None:
        """Put ``new`` where ``old`` is in its parent (a field or an item of a list field)."""
        parent = self.parent[old]
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return
        raise ValueError(f"{ast.dump(old)[:60]} is not a child of its parent")

    def remove(self, stmt: ast.stmt) -> None:
        """Delete a statement from its block (a block left empty gets a ``pass``)."""
        parent = self.parent[stmt]
        for _, value in ast.iter_fields(parent):
            if isinstance(value, list) and any(item is stmt for item in value):
                value[:] = [item for item in value if item is not stmt] or [ast.Pass()]
                return
        raise ValueError("statement is not in a block of its parent")

    def block_of(self, stmt: ast.stmt) -> list[ast.stmt]:
        """The statement list that holds ``stmt``."""
        for _, value in ast.iter_fields(self.parent[stmt]):
            if isinstance(value, list) and any(item is stmt for item in value):
                return value
        return []


@dataclass
class Edit:
    """One concrete way an operator can break a node of a `Tree`.

    ``targets`` are the nodes the edit replaces or removes (two edits conflict when their
    targets' subtrees share a node); ``apply`` performs the edit on the tree.
    """

    text: str  # e.g. "range stop n -> n - 1"
    undo_text: str  # e.g. "range stop n - 1 -> n"
    targets: list[ast.AST]
    apply: Callable[[], None]


def _src(node: ast.AST, limit: int = 60) -> str:
    """Short one-line source of a node for notes."""
    text = " ".join(line.strip() for line in ast.unparse(node).splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _replacement(tree: Tree, old: ast.AST, new: ast.AST, label: str = "") -> Edit | None:
    """An edit putting ``new`` in place of ``old``; None when it renders the same."""
    before, after = _src(old), _src(new)
    if ast.unparse(old) == ast.unparse(new):
        return None
    return Edit(f"{label}{before} -> {after}", f"{label}{after} -> {before}", [old],
                lambda: tree.replace(old, new))


def _with(node: ast.AST, **fields) -> ast.AST:
    """A shallow copy of ``node`` with some fields changed."""
    new = copy.copy(node)
    for name, value in fields.items():
        setattr(new, name, value)
    return new


def _int_value(node: ast.AST) -> int | None:
    """The value of an int literal (``3`` or ``-1``), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _int_value(node.operand)
        return None if value is None else -value
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _is_int(node: ast.AST) -> bool:
    return _int_value(node) is not None


# -----------------------------------------------------------------------------
# Operators. Each lists the edits it can make at one node (usually none).

INDEX_NAMES = {"i", "j", "k", "n", "m", "l", "r", "idx", "index", "mid", "lo", "hi", "left",
               "right", "start", "end", "pos", "low", "high"}


def index_position(node: ast.AST, tree: Tree) -> str | None:
    """Where ``node`` sits if it is an index-like expression: ``range stop``, ``slice upper``..."""
    parent = tree.parent.get(node)
    if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) \
            and parent.func.id == "range" and not parent.keywords and node in parent.args:
        names = {1: ["stop"], 2: ["start", "stop"], 3: ["start", "stop", "step"]}
        return "range " + names.get(len(parent.args), ["?"] * 9)[parent.args.index(node)]
    if isinstance(parent, ast.Slice):
        return "slice " + next(n for n in ("lower", "upper", "step") if getattr(parent, n) is node)
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return "index"
    return None


def _shifted(expr: ast.expr) -> list[ast.expr]:
    """The realistic off-by-one variants of an index expression."""
    if _is_int(expr):
        return [ast.Constant(_int_value(expr) + 1), ast.Constant(_int_value(expr) - 1)]
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, (ast.Add, ast.Sub)) and _is_int(expr.right):
        sign = 1 if isinstance(expr.op, ast.Add) else -1
        variants = []
        for delta in (-1, 1):  # n - 1 -> n / n - 2 ; n + 1 -> n / n + 2
            c = sign * expr.right.value + delta
            if c == 0:
                variants.append(expr.left)
            else:
                variants.append(_with(expr, op=ast.Add() if c > 0 else ast.Sub(), right=ast.Constant(abs(c))))
        return variants
    return [ast.BinOp(expr, ast.Sub(), ast.Constant(1)), ast.BinOp(expr, ast.Add(), ast.Constant(1))]


def off_by_one(node: ast.AST, tree: Tree) -> list[Edit]:
    """Shift a range argument, a slice bound or a subscript index by one."""
    if not isinstance(node, ast.expr) or node in tree.in_annotation:
        return []
    where = index_position(node, tree)
    if where is None or where.endswith("step") or where.endswith("?"):
        return []
    if where == "index":  # only integer-ish indices, not dict keys or tuple slices
        simple = _is_int(node) or (isinstance(node, ast.Name) and node.id in INDEX_NAMES)
        offset = isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) and (
            _is_int(node.right) or _is_int(node.left))
        if not (simple or offset):
            return []
    edits = [_replacement(tree, node, new, f"{where} ") for new in _shifted(node)]
    return [e for e in edits if e]


FLIPPED = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


def flip_comparison(node: ast.AST, tree: Tree) -> list[Edit]:
    """Flip one comparison operator (``<`` -> ``<=``...) or drop a ``not``."""
    if isinstance(node, ast.Compare):
        edits = []
        for i, op in enumerate(node.ops):
            ops = list(node.ops)
            ops[i] = FLIPPED[type(op)]()
            edits.append(_replacement(tree, node, _with(node, ops=ops)))
        return [e for e in edits if e]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return [e for e in [_replacement(tree, node, node.operand)] if e]
    return []


WRONG_OPERATOR = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Div,
                  ast.Div: ast.FloorDiv, ast.Mod: ast.FloorDiv, ast.And: ast.Or, ast.Or: ast.And}
SEQUENCE_LITERALS = (ast.List, ast.Tuple, ast.ListComp, ast.JoinedStr, ast.Dict, ast.Set)


def _numeric_looking(*operands: ast.expr) -> bool:
    """False when an operand is visibly a string or sequence (``"-" * n``, ``s + "x"``)."""
    for e in operands:
        if isinstance(e, SEQUENCE_LITERALS) or (isinstance(e, ast.Constant) and isinstance(e.value, (str, bytes))):
            return False
    return True


def wrong_operator(node: ast.AST, tree: Tree) -> list[Edit]:
    """Swap an arithmetic operator (``+`` -> ``-``...) or ``and`` <-> ``or``."""
    if isinstance(node, ast.BinOp) and type(node.op) in WRONG_OPERATOR \
            and _numeric_looking(node.left, node.right):
        new = _with(node, op=WRONG_OPERATOR[type(node.op)]())
    elif isinstance(node, ast.AugAssign) and type(node.op) in WRONG_OPERATOR and _numeric_looking(node.value):
        new = _with(node, op=WRONG_OPERATOR[type(node.op)]())
    elif isinstance(node, ast.BoolOp):
        new = _with(node, op=WRONG_OPERATOR[type(node.op)]())
    else:
        return []
    edit = _replacement(tree, node, new)
    return [edit] if edit else []


def wrong_constant(node: ast.AST, tree: Tree) -> list[Edit]:
    """Change an int literal by one, or flip ``True`` / ``False``."""
    if node in tree.in_annotation:
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return [e for e in [_replacement(tree, node, ast.Constant(not node.value))] if e]
    value, parent = _int_value(node), tree.parent.get(node)
    if value is None or (isinstance(parent, ast.UnaryOp) and _is_int(parent)):  # -1 is one literal
        return []
    # index positions belong to off_by_one; steps (range(.., .., -1), [::-1]) are not bugs worth making
    if index_position(node, tree) or (isinstance(parent, ast.BinOp) and index_position(parent, tree)):
        return []
    edits = [_replacement(tree, node, ast.Constant(value + d)) for d in (1, -1)]
    return [e for e in edits if e]


NO_SWAP = {"print", "min", "max", "range", "isinstance", "issubclass", "hasattr", "getattr",
           "setattr", "set", "dict", "list", "tuple", "str", "int", "float"}


def swap_args(node: ast.AST, tree: Tree) -> list[Edit]:
    """Swap two adjacent positional arguments of a call."""
    if not isinstance(node, ast.Call) or len(node.args) < 2:
        return []
    name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
    if name in NO_SWAP or any(isinstance(a, ast.Starred) for a in node.args):
        return []
    edits = []
    for i in range(len(node.args) - 1):
        args = list(node.args)
        args[i], args[i + 1] = args[i + 1], args[i]
        edits.append(_replacement(tree, node, _with(node, args=args), "arguments "))
    return [e for e in edits if e]


def _header(stmt: ast.If) -> str:
    """``if cond: first-body-line`` for notes."""
    return f"if {_src(stmt.test, 40)}: {_src(stmt.body[0], 30)}"


MAX_DROPPED_LINES = 4  # an "edge case" is a short branch, not half the function


def _lines(stmts: list[ast.stmt]) -> int:
    """How many source lines a run of statements spans."""
    return (stmts[-1].end_lineno or stmts[-1].lineno) - stmts[0].lineno + 1


def drop_branch(node: ast.AST, tree: Tree) -> list[Edit]:
    """Drop an edge case: a short guard ``if`` that exits, an ``elif`` or an ``else`` branch."""
    if not isinstance(node, ast.If):
        return []
    edits = []
    exits = (ast.Return, ast.Raise, ast.Continue, ast.Break)
    if not node.orelse and isinstance(node.body[-1], exits) and len(tree.block_of(node)) > 1 \
            and _lines([node]) <= MAX_DROPPED_LINES:
        text = f"edge case `{_header(node)}`"
        edits.append(Edit(f"dropped {text}", f"restored {text}", [node], lambda: tree.remove(node)))
    if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
        inner = node.orelse[0]
        if 1 + _lines(inner.body) <= MAX_DROPPED_LINES:
            text = f"branch `el{_header(inner)}`"

            def drop_elif(node=node, inner=inner):
                node.orelse = inner.orelse
            edits.append(Edit(f"dropped {text}", f"restored {text}", [inner], drop_elif))
    elif node.orelse and 1 + _lines(node.orelse) <= MAX_DROPPED_LINES:
        text = f"`else: {_src(node.orelse[0], 40)}` of `if {_src(node.test, 40)}`"

        def drop_else(node=node):
            node.orelse = []
        edits.append(Edit(f"dropped {text}", f"restored {text}", list(node.orelse), drop_else))
    return edits


SWAPPED_FUNCTIONS = {"min": "max", "max": "min", "any": "all", "all": "any"}
SWAPPED_METHODS = {"lower": "upper", "upper": "lower", "startswith": "endswith", "endswith": "startswith",
                   "find": "rfind", "rfind": "find", "lstrip": "rstrip", "rstrip": "lstrip",
                   "keys": "values", "values": "keys", "popleft": "pop", "appendleft": "append"}


def _flip_reverse(call: ast.Call) -> ast.Call:
    """``sorted(x)`` -> ``sorted(x, reverse=True)``; an existing ``reverse=`` is negated."""
    keywords = [k for k in call.keywords if k.arg != "reverse"]
    reverse = next((k.value for k in call.keywords if k.arg == "reverse"), ast.Constant(False))
    if isinstance(reverse, ast.Constant):
        if not reverse.value:
            keywords.append(ast.keyword("reverse", ast.Constant(True)))
    else:
        keywords.append(ast.keyword("reverse", ast.UnaryOp(ast.Not(), reverse)))
    return _with(call, keywords=keywords)


def wrong_builtin(node: ast.AST, tree: Tree) -> list[Edit]:
    """Call the wrong builtin or method: ``min`` for ``max``, ``upper`` for ``lower``..."""
    if not isinstance(node, ast.Call):
        return []
    func, new = node.func, None
    if isinstance(func, ast.Name):
        if func.id in SWAPPED_FUNCTIONS:
            new = _with(node, func=ast.Name(SWAPPED_FUNCTIONS[func.id], ast.Load()))
        elif func.id in ("sum", "len") and len(node.args) == 1 and not node.keywords:
            new = _with(node, func=ast.Name("len" if func.id == "sum" else "sum", ast.Load()))
        elif func.id == "sorted":
            new = _flip_reverse(node)
    elif isinstance(func, ast.Attribute):
        if func.attr in SWAPPED_METHODS:
            new = _with(node, func=_with(func, attr=SWAPPED_METHODS[func.attr]))
        elif func.attr == "sort" and not node.args:
            new = _flip_reverse(node)
        elif func.attr == "pop" and not node.keywords and (
                not node.args or (len(node.args) == 1 and _is_int(node.args[0]) and node.args[0].value == 0)):
            new = _with(node, args=[] if node.args else [ast.Constant(0)])
    if new is None:
        return []
    edit = _replacement(tree, node, new)
    return [edit] if edit else []


OPERATORS: dict[str, Callable[[ast.AST, Tree], list[Edit]]] = {
    "off_by_one": off_by_one,
    "flip_comparison": flip_comparison,
    "wrong_operator": wrong_operator,
    "wrong_constant": wrong_constant,
    "swap_args": swap_args,
    "drop_branch": drop_branch,
    "wrong_builtin": wrong_builtin,
}

# -----------------------------------------------------------------------------
# Mutations: stable names for edits, enumerated on and applied to fresh parses.

@dataclass(frozen=True)
class Mutation:
    """A bug that can be injected into a reference solution.

    Attributes:
        index: position of the target node in ``ast.walk(ast.parse(reference))``.
        operator: the operator's name (a key of `OPERATORS`).
        variant: which of the operator's edits at that node.
        line: the target's line in the reference source.
        text: what the bug does, e.g. ``range stop n -> n - 1``.
        undo_text: what reverting it does, e.g. ``range stop n - 1 -> n``.
        covered: indices of every node the edit touches (for overlap checks).
        lines: reference lines the edit touches.
    """

    index: int
    operator: str
    variant: int
    line: int
    text: str
    undo_text: str
    covered: frozenset[int] = field(repr=False, compare=False)
    lines: frozenset[int] = field(repr=False, compare=False)

    def overlaps(self, other: Mutation) -> bool:
        """True when one mutation touches a node inside (or equal to) the other's."""
        return bool(self.covered & other.covered)


# the parser shares one instance of each of these (every Load() is the same object)
SHARED_NODES = (ast.expr_context, ast.operator, ast.boolop, ast.unaryop, ast.cmpop)


def find_mutations(source: str, operators: Sequence[str] | None = None) -> list[Mutation]:
    """Every mutation the operators can make in ``source``, in a deterministic order.

    Raises:
        SyntaxError: ``source`` does not parse.
    """
    names = list(OPERATORS) if operators is None else list(operators)
    tree = Tree(source)
    found = []
    for index, node in enumerate(tree.nodes):
        for name in names:
            for variant, edit in enumerate(OPERATORS[name](node, tree)):
                covered = frozenset(tree.index[n] for t in edit.targets for n in ast.walk(t)
                                    if not isinstance(n, SHARED_NODES))
                lines = frozenset(ln for t in edit.targets
                                  for ln in range(t.lineno, (t.end_lineno or t.lineno) + 1))
                found.append(Mutation(index, name, variant, min(lines), edit.text, edit.undo_text,
                                      covered, lines))
    return found


def apply_mutations(source: str, mutations: Sequence[Mutation]) -> str:
    """``source`` with ``mutations`` applied, rendered by ``ast.unparse``.

    The mutations must not overlap. With no mutations this is ``ast.unparse`` of the source, so
    every version of a trajectory is rendered the same way.
    """
    tree = Tree(source)
    # list every edit on the untouched tree first: operators look at parents and siblings
    edits = [OPERATORS[m.operator](tree.nodes[m.index], tree)[m.variant] for m in mutations]
    for edit in edits:
        edit.apply()
    return ast.unparse(tree.root)

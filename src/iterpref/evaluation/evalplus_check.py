"""evalplus 0.3.1's output check of one phase (base or plus), rule for rule as
``evalplus.eval.unsafe_execute`` applies it, in the standard library.

The cross-process judge runs this source judge-side (`confirm.OutputsProgram`): ``fn`` is the
solution's function behind the proxy, so each output is plain data the judge holds, or a handle
that equals only itself. For each input in order, stopping at the first failure as evalplus does:

* ``out == expected``;
* MBPP+'s special oracles, by entry point (``oracle`` holds evalplus's ``_special_oracle``):
  ``are_equivalent`` always passes; ``sum_div`` also passes 0; ``surface_Area`` also passes within
  ``atol`` of its oracle, ``digit_distance_nums`` its oracle's answer; the
  ``MBPP_OUTPUT_SET_EQ_TASKS`` compare ``set(out) == set(expected)`` instead; the
  ``MBPP_OUTPUT_NOT_NONE_TASKS`` compare a bool output with the expected one and anything else by
  whether it is not None (their expected outputs are those booleans already);
* HumanEval+'s ``find_zero``: ``abs(_poly(*input, out)) <= atol`` and nothing else, but evalplus
  0.3.1 then ``continue``s past the line that records the input as passed, so a phase with any
  input never passes (HumanEval+/32 cannot pass there, nor here);
* an output that is not equal passes only with a tolerance: the task's ``atol``, or ``1e-6`` once
  an expected output was floats while ``atol`` was 0 (evalplus keeps that for the phase's later
  inputs), the same type as the expected output, the same length for a list or tuple, and
  ``numpy.allclose(out, expected, rtol=1e-07, atol=atol)``.

numpy never sees an object of the solution's: an output that is not plain data (builtin
scalars, lists and tuples) is not close to anything, and is not compared with an expected
output holding numpy values.
"""

import sys

SCALARS = (bool, int, float, complex, str, bytes, type(None))
SHOWN_CHARS = 200


def plain(x) -> bool:
    """Whether ``x`` is builtin scalars in lists and tuples, nothing else."""
    if type(x) in SCALARS:
        return True
    if type(x) in (list, tuple):
        return all(plain(i) for i in x)
    return False


def holds_numpy(x) -> bool:
    """Whether ``x`` (an expected output) holds a numpy value anywhere."""
    if type(x).__module__ == "numpy":
        return True
    if isinstance(x, dict):
        return any(holds_numpy(k) or holds_numpy(v) for k, v in x.items())
    if isinstance(x, (list, tuple, set, frozenset)):
        return any(holds_numpy(i) for i in x)
    return False


def is_floats(x) -> bool:
    """evalplus's ``is_floats``: a float, a non-empty list or tuple of floats, or a float ndarray."""
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    np = sys.modules.get("numpy")  # an expected ndarray was unpickled with numpy
    if np is not None and isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False


def shown(x) -> str:
    text = repr(x) if plain(x) else f"<{type(x).__name__}>"
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def phase_failure(dataset: str, entry_point: str, fn, inputs: list, expected: list, atol, oracle: dict):
    """None when ``fn`` passes evalplus's check on every input of the phase, else why not.

    Args:
        dataset: ``humaneval`` or ``mbpp``.
        entry_point: the task's function name (the special oracles are keyed by it).
        fn: the solution's function.
        inputs: the phase's inputs, as evalplus passes them (``fn(*input)``).
        expected: the canonical solution's outputs on them (evalplus's ground truth).
        atol: the task's tolerance.
        oracle: the namespace of evalplus's ``_special_oracle`` module.
    """
    for i, inp in enumerate(inputs):
        out = fn(*inp)
        exp = expected[i]

        def failure(why: str) -> str:
            return f"input {i} {shown(tuple(inp))}: {why}; got {shown(out)}, expected {shown(exp)}"

        exact_match = False if not plain(out) and holds_numpy(exp) else out == exp
        if dataset == "mbpp":
            if entry_point == "are_equivalent":
                exact_match = exact_match or True
            elif entry_point == "sum_div":
                exact_match = exact_match or out == 0
            elif entry_point == "surface_Area":
                exact_match = exact_match or abs(out - oracle["_surface_Area"](*inp)) <= atol
            elif entry_point == "digit_distance_nums":
                exact_match = exact_match or out == oracle["_digit_distance_nums"](*inp)
            elif entry_point in oracle["MBPP_OUTPUT_SET_EQ_TASKS"]:
                exact_match = set(out) == set(exp)
            elif entry_point in oracle["MBPP_OUTPUT_NOT_NONE_TASKS"]:
                exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
        if dataset == "humaneval" and entry_point == "find_zero":
            if not abs(oracle["_poly"](*inp, out)) <= atol:
                return failure(f"not a root within atol={atol}")
            return failure("a root, but evalplus 0.3.1 never counts a find_zero input as passed (its `continue` "
                           "skips recording it), so the phase fails there")

        if atol == 0 and is_floats(exp):
            atol = 1e-6
        if exact_match:
            continue
        if atol == 0:
            return failure("not equal")
        if type(out) != type(exp):  # noqa: E721 (evalplus's own test, exact types)
            return failure(f"not equal, and not the expected type within atol={atol}")
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return failure("not equal, and not the expected length")
        if not plain(out):
            return failure(f"not equal, and not plain data to compare within atol={atol}")
        import numpy

        try:
            close = numpy.allclose(out, exp, rtol=1e-07, atol=atol)
        except Exception as e:  # noqa: BLE001 - evalplus fails the input on any error here too
            return failure(f"numpy.allclose raised {type(e).__name__}: {e}")
        if not close:
            return failure(f"not within atol={atol}")
    return None

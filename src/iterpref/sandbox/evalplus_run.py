"""The program `iterpref.evaluation.evalplus` runs inside the sandbox: evalplus 0.3.1's own evaluator.

``python evalplus_run.py MODE DATASET WORKERS`` in the run's work folder (a copy of this file),
MODE ``groundtruth`` (compute and cache the canonical outputs and timings, no candidate code) or
``evaluate`` (score ``samples.jsonl`` with evalplus's defaults, from ``groundtruth.pkl`` when
given). It ends with ``os._exit``: evalplus's non-daemon "stucking_checker" thread would hold the
interpreter at exit.
"""

import os
import shutil
import sys
import traceback


def main(mode, dataset, workers):
    if dataset == "humaneval":
        from evalplus.data import get_human_eval_plus as problems
        from evalplus.data import get_human_eval_plus_hash as digest
        not_none = []
    else:
        from evalplus.data import get_mbpp_plus as problems
        from evalplus.data import get_mbpp_plus_hash as digest
        from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS as not_none
    from evalplus.data.utils import CACHE_DIR
    from evalplus.evaluate import evaluate, get_groundtruth

    if mode == "groundtruth":  # what evaluate() computes before scoring, and caches
        get_groundtruth(problems(), digest(), not_none)
        return
    if os.path.exists("groundtruth.pkl"):
        os.makedirs(CACHE_DIR, exist_ok=True)
        shutil.copyfile("groundtruth.pkl", os.path.join(CACHE_DIR, digest() + ".pkl"))
    evaluate(dataset=dataset, samples="samples.jsonl", parallel=workers)


if __name__ == "__main__":
    code = 0
    try:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: evalplus's non-daemon stucking_checker thread would hold us

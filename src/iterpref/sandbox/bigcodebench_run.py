"""The program `iterpref.evaluation.bigcodebench` runs inside the sandbox: bigcodebench 0.2.5's own CLI.

``python bigcodebench_run.py MODE ARGS...`` in the run's work folder (a copy of this file), MODE
``groundtruth`` (``--check_gt_only``: run the canonical solutions, keep their timings as
``groundtruth.pkl`` and ``groundtruth.json``) or ``evaluate`` (score, from ``groundtruth.pkl`` when
given); ARGS are ``bigcodebench.evaluate``'s own. ``ITERPREF_BCB_TASK_TIMEOUT``, when set, replaces
bigcodebench's per-task ``TIMEOUT_LIMIT``. It ends with ``os._exit``, so no thread or manager
process left behind keeps it alive.
"""

import json
import os
import pickle
import shutil
import sys
import traceback


def main(mode, args):
    limit = os.environ.get("ITERPREF_BCB_TASK_TIMEOUT")
    if limit:
        import bigcodebench.eval
        bigcodebench.eval.TIMEOUT_LIMIT = float(limit)  # untrusted_check reads it at call time
    from bigcodebench.data import get_bigcodebench_hash
    from bigcodebench.data.utils import CACHE_DIR
    from bigcodebench.evaluate import main as cli

    subset = args[args.index("--subset") + 1]
    cached = os.path.join(CACHE_DIR, get_bigcodebench_hash(subset=subset) + ".pkl")
    if mode == "evaluate" and os.path.exists("groundtruth.pkl"):
        os.makedirs(CACHE_DIR, exist_ok=True)
        shutil.copyfile("groundtruth.pkl", cached)
    sys.argv = ["bigcodebench.evaluate", *args]
    cli()  # fire parses sys.argv, exactly as `python -m bigcodebench.evaluate`
    if mode == "groundtruth":  # --check_gt_only computed the pickle (written when any task passed)
        times = None
        if os.path.exists(cached):
            shutil.copyfile(cached, "groundtruth.pkl")
            with open(cached, "rb") as fh:
                times = pickle.load(fh)
        with open("groundtruth.json", "w") as fh:
            json.dump({"times": times}, fh)


if __name__ == "__main__":
    code = 0
    try:
        main(sys.argv[1], sys.argv[2:])
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # nothing left behind (threads, manager processes) may keep the run alive

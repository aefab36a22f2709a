"""Stage `model`: the student as a loadable HF folder in models/student/.
Stage `teacher_model` (`python stages/model.py teacher`): the model in `teacher.materialize`, if
any, in models/teacher/ (otherwise the folder holds only a note: the teacher needs no local model).
"""

import json
import sys
from pathlib import Path

from iterpref import params as P
from iterpref import runtime
from iterpref.cli import command
from iterpref.models import ModelConfig, materialize


@command
def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else "student"
    params = P.load()
    section, where = (params["model"], "model") if role == "student" else (params["teacher"].get("materialize"),
                                                                            "teacher.materialize")
    out = Path("models") / role
    if section is None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "iterpref_model.json").write_text(json.dumps(
            {"note": f"teacher.kind={params['teacher']['kind']} uses no local model (teacher.materialize is null)"}) + "\n")
        print(f"{role}: no model to build")
    else:
        materialize(P.build(ModelConfig, section, where), out)
        print(f"{role}: {section['name']} -> {out} (peak RSS {runtime.peak_rss_gib()} GiB)")


if __name__ == "__main__":
    main()

"""Stage `model`: the student as a loadable HF folder in models/student/."""

from iterpref import params as P
from iterpref.models import ModelConfig, materialize

if __name__ == "__main__":
    params = P.load()
    out = materialize(P.build(ModelConfig, params["model"], "model"), "models/student")
    print(f"model {params['model']['name']} -> {out}")

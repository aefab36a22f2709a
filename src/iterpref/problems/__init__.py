"""Problem sources and the checks every problem passes before the debug stage sees it.

One module per source (evalplus style), each with a ``Config`` dataclass and
``harvest(cfg, limit) -> base.Harvest``:

| source | module | what |
|---|---|---|
| ``seed`` | `seed` | the problems shipped in data/seed/ |
| ``synthesize`` | `synthesize` | a teacher model writes instruction, reference and unittest module |
| ``codeio`` | `codeio` | reasoning-gym's CodeI/O problems; tests observed in the sandbox |
| ``hf`` | `hf` | a datasets-hub dataset with code and tests, through a column mapping |

`build` runs a source, then `dedup`, `decontaminate` and `validate` (in the sandbox).
"""

from iterpref.problems.seed import load_seed

__all__ = ["load_seed"]

"""The `synthesize` source: a teacher model writes problems from a list of features.

A feature is a seed topic (``interval scheduling``) or a code snippet to build a task around,
as in EpiCoder's feature trees. For each feature and sample the teacher, through the shared
generation interface (`iterpref.llm.from_config`: an in-process hf model or any
OpenAI-compatible server), gets the prompt template of the feature's kind and answers with an
instruction, an entry point, a reference solution and a unittest module in the reply format the
templates ask for (`parse_reply`).

Each request is its own call through the on-disk response cache (keyed by backend, model,
messages and sampling, the same cache and keys as the debug stage's teacher), so a reply is
stored the moment it arrives: a killed run, restarted, pays for no request already answered.
A request that fails for good or a reply that does not parse is a drop, counted by reason;
401, 403 and 404 (key, permissions, model name) stop the stage.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from tqdm import tqdm

from iterpref.config.fields import spec
from iterpref.llm.cache import CachedGenerator
from iterpref.llm.openai_api import CONFIG_ERRORS, OpenAIRequestError
from iterpref.problems.base import Candidate, Dropped, Harvest, signature_of
from iterpref.prompts import code_blocks
from iterpref.records import Problem

INSTRUCTION = re.compile(r"Instruction:\s*(.*?)\n\s*Entry point:", re.DOTALL | re.IGNORECASE)
ENTRY = re.compile(r"Entry point:\s*`?([A-Za-z_]\w*)`?", re.IGNORECASE)


@dataclass
class Config:
    """The `synthesize` source.

    Parameters:
        teacher (`dict`):
            The generator: the keys of an LLM teacher config (``backend``, ``model``,
            ``base_url``, ``api_key_env``, ``max_concurrency``, ``timeout_s``, ``max_retries``,
            ``device``, ``dtype``, ``materialize``), ``cache_dir`` (the response cache; null:
            none) and ``sampling`` (a `SamplingConfig`; each sample adds its index to the seed).
        features (`list[dict]`):
            ``{kind: topic | snippet, text: ...}`` each; extend the list to widen the data.
        prompts (`dict`):
            ``system`` (may be empty) and one user template per feature kind, each with a
            ``{feature}`` placeholder; they must ask for the reply format `parse_reply` reads.
        samples_per_feature (`int`):
            Problems asked per feature (different sampling seeds).
    """

    teacher: dict
    features: list[dict]
    prompts: dict
    samples_per_feature: int = spec(2, ge=1)


def parse_reply(reply: str) -> tuple[str, str, str, str]:
    """``(instruction, entry point, reference, tests)`` from a reply of the form::

        Instruction:
        <statement>
        Entry point: <name>
        ```python
        <reference solution>
        ```
        ```python
        <unittest module>
        ```

    Raises:
        ValueError: naming the part that is missing.
    """
    m = INSTRUCTION.search(reply)
    if not m or not m.group(1).strip():
        raise ValueError("no 'Instruction:' section before 'Entry point:'")
    entry = ENTRY.search(reply)
    if not entry:
        raise ValueError("no 'Entry point: <name>' line")
    blocks = [b.strip("\n") for b in code_blocks(reply[entry.end():])]
    if len(blocks) < 2:
        raise ValueError(f"{len(blocks)} code block(s) after the entry point; need the solution and the tests")
    return m.group(1).strip(), entry.group(1), blocks[0] + "\n", blocks[1] + "\n"


def _conversation(cfg: Config, feature: dict, where: str) -> list[dict[str, str]]:
    kind = feature.get("kind")
    if kind not in cfg.prompts or kind == "system" or not isinstance(feature.get("text"), str):
        raise ValueError(f"{where}: a feature is {{kind: one of {sorted(set(cfg.prompts) - {'system'})}, "
                         f"text: ...}}, got {feature!r}")
    system = cfg.prompts.get("system") or ""
    user = {"role": "user", "content": cfg.prompts[kind].format(feature=feature["text"].strip())}
    return ([{"role": "system", "content": system}] if system else []) + [user]


def harvest(cfg: Config, limit: int | None = None) -> Harvest:
    """Ask the teacher for each (feature, sample), the first ``limit`` requests when given, and
    parse the replies into candidates."""
    from iterpref.llm import from_config

    jobs = [(i, j, _conversation(cfg, f, f"problems.synthesize.features[{i}]"))
            for i, f in enumerate(cfg.features) for j in range(cfg.samples_per_feature)][:limit]
    generator, sampling = from_config(cfg.teacher)
    workers = max(1, int(cfg.teacher.get("max_concurrency") or sampling.batch_size))

    def ask(job) -> str | OpenAIRequestError:
        i, j, conversation = job
        try:
            return generator.chat([conversation], replace(sampling, seed=sampling.seed + j))[0]
        except OpenAIRequestError as err:
            if err.cause in CONFIG_ERRORS:
                raise
            return err

    with ThreadPoolExecutor(max_workers=workers) as pool:
        replies = list(tqdm(pool.map(ask, jobs), total=len(jobs), desc="synthesize problems"))
    candidates, dropped = [], []
    for (i, j, _), reply in zip(jobs, replies):
        task_id = f"synthesize/{i:04d}-{j}"
        where = f"problems.synthesize.features[{i}] sample {j}"
        if isinstance(reply, OpenAIRequestError):
            dropped.append(Dropped(task_id, "teacher_fault", f"{where}: {reply.cause}: {reply}"))
            continue
        try:
            instruction, entry, reference, tests = parse_reply(reply)
            signature = signature_of(reference, entry)
        except (ValueError, SyntaxError) as e:
            dropped.append(Dropped(task_id, "unparseable_reply", f"{where}: {e}; reply: {reply[:300]!r}"))
            continue
        problem = Problem(task_id=task_id, instruction=instruction, signature=signature or "",
                          entry_point=entry, reference=reference, tests=tests, source=f"synthesize:{generator.name}")
        candidates.append(Candidate(problem, where))
    stats = {"requests": len(jobs)}
    if isinstance(generator, CachedGenerator):
        stats["teacher_cache"] = generator.stats()
    return Harvest(candidates, dropped, stats=stats)

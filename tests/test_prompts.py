"""The student sees one prompt format: the user turn of a training pair and of a benchmark task
are built by the same function, and TRL renders the training prompt exactly as the generator
renders the evaluation prompt."""

from iterpref import prompts
from iterpref.evaluation import registry
from iterpref.evaluation.benchmark import Task
from iterpref.pairs.build import PairConfig, make_pair
from iterpref.records import Attempt, Outcome, Problem, Trajectory
from iterpref.training.recipe import pairs_dataset

PROBLEM = Problem(
    task_id="t/1", instruction="Return the sum of a and b.", signature="def add(a: int, b: int) -> int:",
    entry_point="add", reference="def add(a, b):\n    return a + b\n",
    tests="import unittest\nfrom solution import add\n",
)


def _pair():
    fail = Attempt(0, "def add(a, b):\n    return a - b\n", Outcome(False, "failed", error_type="AssertionError"))
    ok = Attempt(1, "def add(a, b):\n    return a + b\n", Outcome(True, "passed"))
    traj = Trajectory("t/1#0", "t/1", "mutation", 0, [fail, ok], True)
    return make_pair(PROBLEM, traj, fail, PairConfig())


def test_training_prompt_equals_evaluation_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    train_prompt = pairs_dataset([_pair()])[0]["prompt"]
    task = Task("t/1", PROBLEM.instruction, PROBLEM.signature, PROBLEM.entry_point)
    assert train_prompt == task.conversation()
    # TRL tokenises the conversational prompt with add_generation_prompt=True; HFGenerator renders
    # the evaluation prompt the same way.
    rendered = tok.apply_chat_template(task.conversation(), tokenize=False, add_generation_prompt=True)
    assert rendered == tok.apply_chat_template(train_prompt, tokenize=False, add_generation_prompt=True)
    assert PROBLEM.signature in rendered and rendered.endswith("<|im_start|>assistant\n")


def test_completions_are_fenced_code_and_extract_back():
    pair = _pair()
    assert pair.chosen.startswith(prompts.FENCE_OPEN) and pair.chosen.endswith(prompts.FENCE_CLOSE)
    assert prompts.extract_code(pair.chosen) == "def add(a, b):\n    return a + b"


def test_humaneval_tasks_use_the_same_user_turn():
    task = registry.get("humaneval").load(limit=1)[0]
    (message,) = task.conversation()
    assert message["role"] == "user"
    assert message["content"] == prompts.user_message(task.instruction, task.record["prompt"])
    assert "def has_close_elements" in message["content"]


def test_a_task_without_code_header_gets_no_empty_fence():
    message = prompts.user_message("Write a function f. Your code should pass this test:\nassert f(1) == 2", "")
    assert "```" not in message and message.endswith("Write a complete, self-contained Python solution.")

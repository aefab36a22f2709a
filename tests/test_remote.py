"""Artifacts and experiments that travel through a DVC remote: a real S3-compatible server (moto's
server mode, a subprocess on 127.0.0.1, checking every request's signature against one IAM key
pair), the smoke pipeline run and pushed from one clone and pulled into another with nothing to
re-run, a sweep's experiments through `dvc exp push` / `dvc exp pull`, and the faults: a closed
port, a server that never answers and wrong credentials fail within a bounded time and leave the
local cache and outputs as they were."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import processes
import pytest
import yaml
from dvc_repo import CHEAP, ran_stages, sh
from silent_server import silent_server
from test_pipeline import changed_stages
from test_sweeps import dvc, experiments, metrics

from iterpref.llm.served import free_port

pytestmark = pytest.mark.slow

BUCKET = "artifacts"
REMOTE_URL = f"s3://{BUCKET}/iterpref"
# moto lets this many requests through unauthenticated (the IAM user, its policy, its key, the
# bucket); every later one must be signed with that user's key
SETUP_REQUESTS = 4
# what docs/remote.md recommends for a bounded failure: per-request timeouts in .dvc/config.local,
# botocore's attempts from the environment
FAIL_FAST_OPTIONS = {"connect_timeout": "2", "read_timeout": "1"}
FAIL_FAST_ENV = {"AWS_MAX_ATTEMPTS": "1"}
# a failing push or pull must end within this (with DVC's defaults a silent server holds it for minutes)
FAILURE_BOUND_S = 45
# the run pushed: the smoke experiment as the suite's seed runs it (its shared stages come from DVC's
# run cache), one variant on one benchmark, no W&B runs (not what this tests)
PUBLISHED = [*CHEAP, "train.run=[dpo]", "eval.benchmarks=[humaneval]", "logging=disabled"]


README_WIDTH = 30  # columns the README's comparison command may print


def readme_comparison_fits_a_terminal(root: Path, env: dict, changed: str) -> None:
    """The README's `dvc exp show --only-changed --drop ...` in ``root``, which holds experiments
    over the committed run they started from: the ``changed`` param and the metrics within
    `README_WIDTH` columns, no dependency or output hashes."""
    import csv
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = {ln.split(" # ")[0].strip() for ln in readme.splitlines() if ln.startswith("dvc exp show")}
    assert lines
    for line in lines:
        out = sh([sys.executable, "-m", *shlex.split(line), "--csv"], root, env)
        header = next(csv.reader(out.splitlines()))
        assert len(header) <= README_WIDTH, (line, header)
        assert changed in header, (line, header)
        assert not [c for c in header if c.startswith(("data/", "models/", "reports/"))], (line, header)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key: str
    secret: str


@dataclass(frozen=True)
class Published:
    """The repository that ran the smoke pipeline, its git remote (a bare repository) and the
    digests of the outputs it pushed."""
    root: Path
    env: dict
    origin: Path
    outputs: dict[str, str]


def wait_listening(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server with one bucket and one IAM user allowed s3:*, whose key pair it returns."""
    port = free_port("127.0.0.1")
    log = tmp_path_factory.mktemp("moto") / "server.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_listening(port)
        endpoint = f"http://127.0.0.1:{port}"
        setup = {"endpoint_url": endpoint, "region_name": "us-east-1",
                 "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="ci")
        iam.put_user_policy(UserName="ci", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="ci")["AccessKey"]
        boto3.client("s3", **setup).create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.terminate()
        server.wait(timeout=30)
        processes.end_group(server)


def with_credentials(env: dict, s3: S3Server, secret: str | None = None) -> dict:
    """``env`` holding the key pair (``secret`` in place of the right one), and no AWS profile files."""
    missing = "/nonexistent/aws"
    return {**env, "AWS_ACCESS_KEY_ID": s3.key, "AWS_SECRET_ACCESS_KEY": secret or s3.secret,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": missing, "AWS_SHARED_CREDENTIALS_FILE": missing}


def add_remote(root: Path, env: dict, name: str, endpoint: str, **options: str) -> None:
    """A remote at REMOTE_URL served by ``endpoint``: the URL in .dvc/config, the rest in .dvc/config.local."""
    sh(dvc("remote", "add", "-f", name, REMOTE_URL), root, env)
    for option, value in {"endpointurl": endpoint, **options}.items():
        sh(dvc("remote", "modify", "--local", name, option, value), root, env)


def clone(published: Published, dst: Path, s3: S3Server) -> tuple[Path, dict]:
    """A git clone of ``published``'s origin whose `store` remote points at the server (credentials in the env)."""
    sh(["git", "clone", "-q", "-b", "main", str(published.origin), str(dst)], dst.parent, published.env)
    env = with_credentials({**published.env, "PYTHONPATH": str(dst / "src")}, s3)
    sh(dvc("remote", "modify", "--local", "store", "endpointurl", s3.endpoint), dst, env)
    return dst, env


def lock_outputs(root: Path) -> list[str]:
    """Every output path dvc.lock records."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return sorted({out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])})


def digests(root: Path, rels: list[str]) -> dict[str, str]:
    """sha256 of every file under each of ``rels`` (a file or a folder), by path."""
    files = [p for rel in rels for p in ([root / rel] if (root / rel).is_file() else (root / rel).rglob("*"))
             if p.is_file()]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def local_files(root: Path) -> dict[str, str]:
    """The DVC cache and the pipeline's outputs in the workspace, as digests."""
    return digests(root, [".dvc/cache", "models", "data", "reports"])


def timed_failure(cmd: list[str], cwd: Path, env: dict) -> tuple[str, float]:
    """Run ``cmd``, which must fail; its output and how long it took."""
    start = time.monotonic()
    proc = processes.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    assert proc.returncode != 0, f"{' '.join(cmd)} succeeded:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr, seconds


@pytest.fixture(scope="module")
def published(seeded_dvc_repo, s3, tmp_path_factory) -> Published:
    """The smoke pipeline (its dpo variant on HumanEval: fewer stages to run, the same kinds of outputs) run
    in one clone, committed, pushed to a bare git repository and to the S3 remote."""
    root, env = seeded_dvc_repo
    # what docs/remote.md says to run once per project, and once per clone for a non-AWS endpoint
    sh(dvc("remote", "add", "-d", "store", REMOTE_URL), root, env)
    sh(dvc("remote", "modify", "--local", "store", "endpointurl", s3.endpoint), root, env)
    assert "endpointurl" not in (root / ".dvc/config").read_text()
    sh(["git", "check-ignore", "-q", ".dvc/config.local"], root, env)

    sh(dvc("exp", "run", *[a for o in PUBLISHED for a in ("-S", o)]), root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "smoke run"], root, env)
    origin = tmp_path_factory.mktemp("origin") / "iterpref.git"
    sh(["git", "init", "-q", "--bare", str(origin)], root, env)
    sh(["git", "remote", "add", "origin", str(origin)], root, env)
    sh(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], root, env)

    out = sh(dvc("push"), root, with_credentials(env, s3))
    assert "pushed" in out, out
    return Published(root, env, origin, digests(root, lock_outputs(root)))


@pytest.fixture(scope="module")
def partial_clone(published, s3, tmp_path_factory) -> tuple[Path, dict]:
    """A clone that has pulled the student model only."""
    repo, env = clone(published, tmp_path_factory.mktemp("partial") / "repo", s3)
    sh(dvc("pull", "models/student"), repo, env)
    assert (repo / "models/student").is_dir() and not (repo / "models/trained").exists()
    return repo, env


def test_push_then_pull_in_a_fresh_clone_leaves_nothing_to_rerun(published, s3, tmp_path):
    repo, env = clone(published, tmp_path / "clone", s3)
    assert not (repo / "models").exists()
    sh(dvc("pull"), repo, env)
    assert digests(repo, lock_outputs(repo)) == published.outputs
    assert changed_stages(repo, env) == set()
    assert "Data and pipelines are up to date" in sh(dvc("status"), repo, env)
    log = sh(dvc("repro"), repo, env)
    assert ran_stages(log) == set() and "Data and pipelines are up to date" in log, log


def test_exp_push_and_pull_carry_a_sweep_through_the_remote(published, s3, tmp_path):
    """Two experiments (one variant on one benchmark, two betas: train, probe, evaluate and report
    re-run) pushed from one clone and pulled into another, with their params, metrics and
    cached outputs."""
    root, env = published.root, with_credentials(published.env, s3)
    betas = {"beta-low": 0.05, "beta-high": 0.2}
    for name, beta in betas.items():
        overrides = [*PUBLISHED, f"train.common.beta={beta}"]
        log = sh(dvc("exp", "run", "-n", name, *[a for o in overrides for a in ("-S", o)]), root, env)
        assert ran_stages(log) == {"train@dpo", "probe@dpo", "evaluate@dpo-humaneval", "report"}, log
    # the README's comparison: experiments on the committed run they started from
    readme_comparison_fits_a_terminal(root, env, "train.common.beta")
    ran_here = experiments(root, env)
    last_outputs = digests(root, lock_outputs(root))  # the workspace holds the last experiment's results
    sh(dvc("exp", "push", "origin"), root, env)  # every experiment of the current commit

    repo, cenv = clone(published, tmp_path / "clone", s3)
    assert set(sh(dvc("exp", "list", "--name-only", "origin"), repo, cenv).split()) == set(betas)
    sh(dvc("exp", "pull", "origin"), repo, cenv)
    shown = experiments(repo, cenv)
    for name, beta in betas.items():
        assert shown[name]["params"]["params.yaml"]["data"]["train"]["common"]["beta"] == beta
        assert set(metrics(shown[name])) == {"reference", "dpo", "data"}
        assert metrics(shown[name]) == metrics(ran_here[name])
    # `dvc exp pull` fetched the outputs from the remote: applying one needs nothing else
    sh(dvc("exp", "apply", "beta-high"), repo, cenv)
    assert digests(repo, lock_outputs(repo)) == last_outputs
    assert changed_stages(repo, cenv) == set()


def test_push_and_pull_to_an_unreachable_remote_fail_fast_and_keep_local_files(published, partial_clone, s3):
    closed = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    with silent_server() as silent:
        for name, endpoint, message in (("closed", closed, "Could not connect to the endpoint URL"),
                                        ("silent", silent, "Read timeout on endpoint URL")):
            for repo, env, verb in ((published.root, published.env, "push"), (*partial_clone, "pull")):
                add_remote(repo, env, name, endpoint, **FAIL_FAST_OPTIONS)
                before = local_files(repo)
                out, seconds = timed_failure(dvc(verb, "-r", name), repo, {**with_credentials(env, s3), **FAIL_FAST_ENV})
                assert "ERROR" in out and message in out, out
                assert seconds < FAILURE_BOUND_S, (name, verb, seconds)
                assert local_files(repo) == before


def test_push_and_pull_with_wrong_credentials_fail_and_keep_local_files(published, partial_clone, s3):
    for repo, env, verb in ((published.root, published.env, "push"), (*partial_clone, "pull")):
        before = local_files(repo)
        out, seconds = timed_failure(dvc(verb), repo, with_credentials(env, s3, secret="not-the-secret"))
        assert "ERROR" in out and re.search(r"\(403\)|SignatureDoesNotMatch", out), out
        assert seconds < FAILURE_BOUND_S, (verb, seconds)
        assert local_files(repo) == before

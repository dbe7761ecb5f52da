"""Fuzzing the builtin runtime: mutated models through the sanitizer build of `mq_run --fuzz`.

The driver (firmware/host/mq_run.c, built with -fsanitize=address,undefined
-fno-sanitize-recover=all) copies each model into a heap block of exactly its length, runs mq_init
with a 1 MiB arena and, when that succeeds, mq_invoke, and prints one status per model. Any read
or write out of bounds, any signed overflow, bad shift or misaligned load aborts it with a
sanitizer report. The runtime passes when, for every mutant, the driver prints a known status and
finishes with exit 0 and nothing from a sanitizer on stderr.

Mutants (tests/fuzz_mutations.py) come from real seeds: the MLPerf Tiny models in ../shared/models,
the four zoo models (those of test_builtin_bitexact: trained on digits, PTQ-converted), models of
tests/modelgen.py (its hand-written specs and the first eight it draws) and one-operator schema
models of test_builtin_ops_more for operators the converter does not emit.
The default run fuzzes MCUQUANT_FUZZ_MODELS mutants (default 20,000, about 10 s) and every
truncation of every seed at its interesting lengths (~66,000 models, about 10 s); the acceptance
campaign of 100,000 further mutants is marked slow (pytest --runslow).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from mcuquant.builtin.host import STATUS_NAMES, build_host
from mcuquant.models import ZOO

from conftest import SHARED_MODELS
from fuzz_mutations import frame, mutants, truncation_points
from modelgen import COVERAGE_EXAMPLES, convert, drawn_specs, zoo_model
from test_builtin_ops_more import schema_seeds

FUZZ_MODELS = int(os.environ.get("MCUQUANT_FUZZ_MODELS", "20000"))
FUZZ_SEED = int(os.environ.get("MCUQUANT_FUZZ_SEED", "0"))
FULL_FUZZ_MODELS = 100_000
CHUNK = 2000  # models per driver process: a crash is then looked for among at most this many
CHUNK_BYTES = 64 << 20
SANITIZER_MARKS = ("Sanitizer", "runtime error:", "SUMMARY:")
# Mutants of the large MLPerf Tiny models take ~7 ms each under ASan when they still run (a full
# invoke), those of the small seeds ~0.7 ms: the large ones get a smaller share of the campaign.
LARGE_SEED_WEIGHT = 0.25
_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}


@pytest.fixture(scope="module")
def driver() -> str:
    return str(build_host(sanitize=True).mq_run)


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in sorted(SHARED_MODELS.glob("*.tflite"))}
    for name in ZOO:
        found[f"zoo:{name}"] = zoo_model(name)[0]
    for i, spec in enumerate(list(COVERAGE_EXAMPLES) + drawn_specs(8)):
        found[f"modelgen:{i}"] = convert(spec)
    found.update(schema_seeds())  # operators the converter does not emit (SQUEEZE, SPACE_TO_BATCH_ND...)
    return found


def _run(driver: str, models: list[bytes]) -> subprocess.CompletedProcess:
    timeout = 30 + 0.05 * len(models)  # a batch takes ~7 ms a model at worst: a hang is a failure too
    try:
        return subprocess.run([driver, "--fuzz"], input=frame(models), capture_output=True, timeout=timeout, env=_ENV)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, -1, exc.stdout or b"", b"timeout after %d s" % timeout)


def _failed(proc: subprocess.CompletedProcess, n: int) -> str | None:
    """Why a driver run over `n` models is not clean, or None."""
    stderr = proc.stderr.decode(errors="replace")
    lines = proc.stdout.decode(errors="replace").splitlines()
    if proc.returncode != 0:
        return f"exit status {proc.returncode}" + (" (timeout: a hang)" if stderr.startswith("timeout") else "")
    if any(mark in stderr for mark in SANITIZER_MARKS):
        return "sanitizer report"
    if len(lines) != n:
        return f"{len(lines)} status lines for {n} models"
    unknown = sorted(set(lines) - set(STATUS_NAMES))
    if unknown:
        return f"unknown status lines {unknown[:5]}"
    return None


def _culprit(driver: str, batch: list[tuple[str, bytes]], tmp_path) -> str:
    """The first mutant that alone makes the driver fail (bisecting on prefixes), saved to a file."""
    lo, hi = 0, len(batch)  # the prefix batch[:hi] fails; batch[:lo] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _failed(_run(driver, [m for _, m in batch[:mid]]), mid):
            hi = mid
        else:
            lo = mid
    name, model = batch[hi - 1]
    proc = _run(driver, [model])
    path = tmp_path / f"fuzz-crash-{hi - 1}.tflite"
    path.write_bytes(model)
    stderr = proc.stderr.decode(errors="replace")
    return (f"mutant {hi - 1} of its batch ({name}, {len(model)} bytes, saved to {path}): "
            f"{_failed(proc, 1) or 'clean when run alone (depends on earlier models)'}\n{stderr[-4000:]}")


def test_seeds_are_valid_models_for_the_driver(driver, seeds):
    """The unmutated seeds run cleanly: so rejections in the campaign come from the mutations."""
    proc = _run(driver, list(seeds.values()))
    assert _failed(proc, len(seeds)) is None, proc.stderr.decode(errors="replace")[-4000:]
    statuses = dict(zip(seeds, proc.stdout.decode().split()))
    assert set(statuses.values()) == {"MQ_OK"}, statuses


def _campaign(driver: str, stream, tmp_path) -> tuple[Counter, dict[str, Counter], float]:
    """Run (name, model) pairs through the driver in batches, the next batch made while the driver
    runs; fail on the first unclean batch, naming its culprit. Returns the status counts, the
    status counts per mutation family and the seconds taken."""
    statuses: Counter = Counter()
    by_family: dict[str, Counter] = {}
    start = time.perf_counter()

    def batches():
        batch, size = [], 0
        for item in stream:
            batch.append(item)
            size += len(item[1])
            if len(batch) == CHUNK or size >= CHUNK_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def collect(batch, proc):
        reason = _failed(proc, len(batch))
        if reason:
            pytest.fail(f"mq_run --fuzz: {reason}; {_culprit(driver, batch, tmp_path)}", pytrace=False)
        for (name, _), status in zip(batch, proc.stdout.decode().splitlines()):
            statuses[status] += 1
            by_family.setdefault(name.split("+")[0], Counter())[status] += 1

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for batch in batches():
            future = pool.submit(_run, driver, [m for _, m in batch])
            if pending is not None:
                collect(pending[0], pending[1].result())
            pending = (batch, future)
        if pending is not None:
            collect(pending[0], pending[1].result())
    return statuses, by_family, time.perf_counter() - start


def _print_mix(what: str, statuses: Counter, seconds: float) -> None:
    total = sum(statuses.values())
    print(f"\n{what}: {total} models in {seconds:.1f} s ({total / seconds:.0f} models/s), "
          "no crash, no sanitizer report; statuses:")
    for status, count in statuses.most_common():
        print(f"  {status:28s} {count:7d}  {100 * count / total:5.1f}%")


def test_mutated_models_never_crash_the_sanitized_runtime(driver, seeds, tmp_path):
    _fuzz(driver, seeds, FUZZ_MODELS, FUZZ_SEED, tmp_path)


@pytest.mark.slow
def test_100k_mutated_models_never_crash_the_sanitized_runtime(driver, seeds, tmp_path):
    """The acceptance campaign (about a minute), other mutants than the default run's."""
    _fuzz(driver, seeds, FULL_FUZZ_MODELS, FUZZ_SEED + 1, tmp_path)


def _fuzz(driver: str, seeds: dict[str, bytes], n: int, mutation_seed: int, tmp_path) -> None:
    weights = [LARGE_SEED_WEIGHT if len(model) > 48_000 and not name.startswith("zoo:") else 1.0
               for name, model in seeds.items()]
    stream = mutants(list(seeds.values()), n, seed=mutation_seed, weights=weights)
    statuses, by_family, seconds = _campaign(driver, stream, tmp_path)
    _print_mix(f"fuzz, {len(seeds)} seeds, mutation seed {mutation_seed}", statuses, seconds)
    print("  by mutation (share that still ran): " + "; ".join(
        f"{family} {sum(c.values())} ({100 * c['MQ_OK'] / sum(c.values()):.0f}%)"
        for family, c in sorted(by_family.items())))
    total = sum(statuses.values())
    assert total == n
    # A campaign where (almost) everything is rejected at the first check would prove little.
    assert statuses["MQ_OK"] >= 0.05 * total, statuses
    assert len([s for s in statuses if s != "MQ_OK"]) >= 6, statuses


def test_every_truncation_of_every_seed_is_safe(driver, seeds, tmp_path):
    """Each seed cut at every length where one of its recorded values starts or ends (+-1)."""
    stream = ((f"truncate:{name}", model[:cut]) for name, model in seeds.items() for cut in truncation_points(model))
    statuses, _, seconds = _campaign(driver, stream, tmp_path)
    _print_mix("truncations", statuses, seconds)
    assert sum(statuses.values()) > 10 * len(seeds)

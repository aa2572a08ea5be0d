"""Issue 14: schemathesis over the scoring server's own OpenAPI schema, against a real server over real HTTP.

Every operation the schema lists is called with bodies, headers and query strings generated from it, both
valid ones (positive) and ones that break it (negative); each answer must not be a 5xx, must have a status,
content type and body the schema documents, and a request that breaks the schema must be refused (4xx).
`make test` runs a small number of cases; MLOPS_WB_FUZZ_HTTP_EXAMPLES=N (`make fuzz-http`) runs N per
operation and mode, with a random seed."""
import os, time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)
from conftest import clean_env, copy_project
from test_serve import TOKEN, _register, _start

LONG = int(os.environ.get("MLOPS_WB_FUZZ_HTTP_EXAMPLES", "0"))
SCORING_CASES = LONG or 60     # POST /invocations, per generation mode
OTHER_CASES = LONG or 5        # each operator route, per generation mode
# A body that breaks the schema is refused with one of the statuses the server documents (413: too many rows).
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {
    "expected-statuses": ["400", "401", "408", "413", "415", "422", "429"]}}})
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """A server with a token, a canary (both models answer) and small limits, and its schema as schemathesis reads it."""
    root = copy_project(tmp_path_factory.mktemp("fuzz") / "p")
    _register(root)
    env = clean_env(); env["MLOPS_WB_SERVE_TOKEN"] = TOKEN
    proc, base = _start(root, "--canary", "0.5", "--max-rows", "20", "--flush-interval", "0.2", env=env)
    yield base, schemathesis.openapi.from_url(base + "/openapi.json", config=CONFIG)
    if proc.poll() is None: proc.terminate(); proc.wait(20)


def _operations(schema):
    return {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())}


def test_the_schema_describes_the_real_bodies(fuzzed):
    base, schema = fuzzed
    ops = _operations(schema)
    assert set(ops) == {"POST /invocations", "GET /health", "GET /ready", "GET /metrics", "POST /admin/reload"}
    body = ops["POST /invocations"].definition.raw["requestBody"]["content"]["application/json"]["schema"]
    records = body["oneOf"][1]["properties"]["dataframe_records"]
    assert "mean_radius" in records["items"]["required"] and records["maxItems"] == 20   # the champion's columns, the limits


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
def test_no_5xx_and_every_answer_as_documented(fuzzed, mode):
    base, schema = fuzzed
    headers = {"Authorization": f"Bearer {TOKEN}"}
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    seen, t0 = {}, time.perf_counter()
    for name, op in _operations(schema).items():
        inputs = sum(len(getattr(op, part)) for part in ("body", "query", "headers", "path_parameters", "cookies"))
        if mode == GenerationMode.NEGATIVE and not inputs: continue     # nothing to break in GET /health
        n = SCORING_CASES if name == "POST /invocations" else OTHER_CASES
        statuses = seen.setdefault(name, [])
        @settings(max_examples=n, deadline=None, derandomize=not LONG, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(op.as_strategy(generation_mode=mode))
        def call(case):
            r = case.call(base_url=base, headers=headers, timeout=30)
            statuses.append(r.status_code)
            case.validate_response(r, checks=checks)
        call()
    took = time.perf_counter() - t0
    total = sum(map(len, seen.values()))
    print(f"\nschemathesis {mode.value}: {total} cases in {took:.1f} s; statuses per operation: "
          + "; ".join(f"{k}: {sorted(set(v))}" for k, v in seen.items()))
    assert all(s < 500 for v in seen.values() for s in v)
    assert len(seen["POST /invocations"]) >= min(SCORING_CASES, 20)
    if mode == GenerationMode.POSITIVE: assert 200 in seen["POST /invocations"]    # valid bodies get scored


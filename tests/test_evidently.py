"""Drift agreement with Evidently: on the same data with the same methods, the per-column verdicts of
`mlops_wb.monitor.dataset_drift` agree with Evidently's (Evidently as a test-only dependency, in its own venv
.venv/evidently built by `make`; it runs in a child process through tools/evidently_drift.py).

Two regimes, as in both tools' defaults: a small reference (800 rows: KS for numeric columns, chi-square for
categorical ones) and a large one (20,000 rows: Wasserstein distance normalized by the reference std,
Jensen-Shannon distance). The data are seeded and mix clear shifts, borderline ones and none.

Where the two differ by design, one side is configured so that both apply the same test:
- our effect floor (KS D or Cramer's V >= 0.1 besides p < 0.05): `effect_floor=0` here; a separate test shows
  that with the default floor the only disagreements are the columns the floor holds back;
- numeric vs categorical: Evidently is given our profile's column kinds (a separate test shows where its own
  inference differs);
- Evidently's "chisquare" is a goodness-of-fit test (expected counts = reference counts scaled, as if the
  reference were the population); ours is the chi-square test of independence of the 2 x k table. For
  categorical columns with more than two categories Evidently is told to use the stattest "chi2_contingency"
  that tools/evidently_drift.py registers (scipy's test on the counts Evidently takes), for binary ones it
  keeps its default two-proportion z-test, which is the same test as a 2 x 2 chi-square without continuity
  correction (z^2 = chi^2), so the p-values must be equal. A separate test compares with Evidently's own
  goodness-of-fit chisquare and names the columns where it disagrees and why.
"""
import json, subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_wb.monitor import dataset_drift, reference_profile

REPO = Path(__file__).resolve().parents[1]
EVIDENTLY_PY = REPO / ".venv" / "evidently" / "bin" / "python"
SCRIPT = REPO / "tools" / "evidently_drift.py"

SMALL, LARGE = 800, 20_000     # reference rows (and current rows) of the two regimes
SMALL_PARAMS = dict(border_num=0.12, nan_scale=1.05, border_cat=[.39, .31, .20, .10])
LARGE_PARAMS = dict(border_num=0.115, nan_scale=1.04, border_cat=[.30, .30, .25, .15])
OURS_EXACT = dict(effect_floor=0.0)   # the p-value tests alone, as Evidently applies them


def make_frames(n_ref, n_cur, seed, border_num, nan_scale, border_cat):
    """Reference and current frames: numeric and categorical columns, some shifted clearly, some a little, some not."""
    rng = np.random.default_rng(seed)

    def frame(n, cur):
        d = {}
        d["n_same"] = rng.normal(0, 1, n)                                   # no drift
        d["n_shift"] = rng.normal(0.6 if cur else 0, 1, n)                  # clear location shift
        d["n_border"] = rng.normal(border_num if cur else 0, 1, n)          # small location shift
        d["n_scale"] = rng.normal(0, 1.5 if cur else 1, n)                  # spread only
        x = rng.lognormal(0, 0.5, n) * (nan_scale if cur else 1)            # skewed, small scale change, 10% missing
        x[rng.random(n) < 0.1] = np.nan; d["n_nan"] = x
        d["i_int"] = rng.binomial(7, 0.5, n)                                # integers with 8 values (ours: numeric)
        d["c_same"] = rng.choice(list("abcd"), n, p=[.4, .3, .2, .1])
        d["c_shift"] = rng.choice(list("abcd"), n, p=[.25, .25, .25, .25] if cur else [.4, .3, .2, .1])
        d["c_border"] = rng.choice(list("abcd"), n, p=border_cat if cur else [.4, .3, .2, .1])
        d["c_bin"] = rng.random(n) < (0.36 if cur else 0.30)                # bool
        d["c_new"] = rng.choice(list("abcw"), n, p=[.5, .3, .17, .03] if cur else [.5, .3, .2, 0])  # a new category
        c = rng.choice(["lo", "mid", "hi"], n).astype(object); c[rng.random(n) < 0.08] = None; d["c_nan"] = c
        d["f_few"] = rng.choice([0.5, 1.5, 2.5, 3.5], n, p=[.22, .26, .26, .26] if cur else [.25] * 4)  # floats, 4 values
        return pd.DataFrame(d)
    return frame(n_ref, False), frame(n_cur, True)


def _kinds(profile):
    cols = profile["columns"]
    return ([c for c, p in cols.items() if p["kind"] == "numeric"], [c for c, p in cols.items() if p["kind"] == "categorical"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both regimes: the frames, our profile and reports, and Evidently's results (one child process, four jobs)."""
    if not EVIDENTLY_PY.exists():
        pytest.skip(f"{EVIDENTLY_PY} does not exist: build Evidently's venv with `make .venv/evidently/.installed`")
    d = tmp_path_factory.mktemp("evidently")
    out, jobs = {}, []
    for name, n, seed, params in [("small", SMALL, 0, SMALL_PARAMS), ("large", LARGE, 1, LARGE_PARAMS)]:
        ref, cur = make_frames(n, n, seed, **params)
        ref.to_parquet(d / f"{name}-ref.parquet"); cur.to_parquet(d / f"{name}-cur.parquet")
        prof = reference_profile(ref)
        num, cat = _kinds(prof)
        multi = [c for c in cat if ref[c].nunique() > 2]
        out[name] = dict(ref=ref, cur=cur, profile=prof, num=num, cat=cat,
                         ours=dataset_drift(prof, cur, cfg=OURS_EXACT), ours_default=dataset_drift(prof, cur))
        files = dict(reference=str(d / f"{name}-ref.parquet"), current=str(d / f"{name}-cur.parquet"))
        same_methods = {c: "chi2_contingency" for c in multi} if name == "small" else {}
        jobs.append(dict(files, numerical=num, categorical=cat, methods=same_methods))      # same types, same tests
        if name == "small":
            jobs.append(dict(files, numerical=num, categorical=cat))    # Evidently's default tests (goodness-of-fit chisquare)
            jobs.append(dict(files))                                    # Evidently's own type inference too
    (d / "jobs.json").write_text(json.dumps(jobs))
    p = subprocess.run([str(EVIDENTLY_PY), str(SCRIPT), "--jobs", str(d / "jobs.json")],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    assert res["evidently"].startswith("0.7."), res["evidently"]
    by_col = lambda job: {c["column"]: c for c in job["columns"]}
    out["small"]["ev"], out["small"]["ev_gof"], out["small"]["ev_auto"], out["large"]["ev"] = map(by_col, res["jobs"])
    out["small"]["ev_share"], out["large"]["ev_share"] = res["jobs"][0]["share_drifted"], res["jobs"][3]["share_drifted"]
    return out


def _ours(report):
    return {c["column"]: c for c in report.columns}


def _disagreements(ours, ev):
    return {c: (ours[c]["drifted"], ev[c]["drifted"]) for c in ours if ours[c]["drifted"] != ev[c]["drifted"]}


def test_small_reference_same_tests_same_verdicts(runs):
    r = runs["small"]
    ours, ev = _ours(r["ours"]), r["ev"]
    assert set(ours) == set(ev) == set(r["ref"].columns)
    expect = {"n_": "ks", "i_": "ks", "c_": "chi2", "f_": "chi2"}
    for c, o in ours.items():
        assert o["test"] == expect[c[:2]], (c, o["test"])
        assert o["problem"] is None, (c, o["problem"])
        e = ev[c]
        assert e["stattest"] == {"ks": "ks", "chi2": "z" if c == "c_bin" else "chi2_contingency"}[o["test"]], (c, e)
        assert e["threshold"] == o["threshold"] == 0.05
        # The same test on the same values: the p-values are equal (z-test vs 2 x 2 chi-square: z^2 = chi^2).
        assert e["score"] == pytest.approx(o["p_value"], rel=1e-6, abs=1e-12), (c, e["score"], o["p_value"])
    dis = _disagreements(ours, ev)
    assert dis == {}, f"verdicts differ (ours, Evidently): {dis}"
    assert r["ours"].share_drifted == pytest.approx(r["ev_share"])
    # The data are not trivial: clear drift, none, and borderline p-values on both sides of 0.05.
    drifted = {c for c, o in ours.items() if o["drifted"]}
    assert {"n_shift", "n_scale", "c_shift", "c_new"} <= drifted and not {"n_same", "c_same"} & drifted
    assert any(0.01 < o["p_value"] < 0.05 for o in ours.values()), "no borderline drifted column"
    assert any(0.05 < o["p_value"] < 0.2 for o in ours.values()), "no borderline undrifted column"


def test_large_reference_same_tests_same_verdicts(runs):
    r = runs["large"]
    ours, ev, prof = _ours(r["ours"]), r["ev"], r["profile"]
    assert set(ours) == set(ev) == set(r["ref"].columns)
    for c, o in ours.items():
        e = ev[c]
        assert (o["test"], e["stattest"]) in {("wasserstein", "wasserstein"), ("jensenshannon", "jensenshannon")}, (c, o["test"], e)
        assert e["threshold"] == o["threshold"] == 0.1
        if o["test"] == "jensenshannon":
            # Both from the full reference's category shares (fewer than max_categories=50, one new category): exact.
            assert e["score"] == pytest.approx(o["statistic"], rel=1e-9, abs=1e-12), (c, e["score"], o["statistic"])
        else:
            # Ours compares the current values with the profile's quantile function (1,000 quantiles of the 20,000
            # reference values), Evidently with all of them; both divide by the std of all reference values. By the
            # triangle inequality |W(q, cur) - W(ref, cur)| <= W(q, ref), so that (normalized) is the tolerance.
            ref = r["ref"][c].dropna().to_numpy()
            assert len(prof["columns"][c]["quantiles"]) == 1000 < len(ref)
            tol = stats.wasserstein_distance(prof["columns"][c]["quantiles"], ref) / ref.std()
            assert abs(e["score"] - o["statistic"]) <= tol + 1e-12, (c, e["score"], o["statistic"], tol)
            # Agreement of verdicts is guaranteed by construction only away from the threshold: the data keep
            # every column more than the tolerance away from it (else this seed's data would prove nothing).
            assert abs(e["score"] - 0.1) > tol, f"{c}: Evidently's {e['score']:.4f} is within {tol:.4f} of 0.1"
    dis = _disagreements(ours, ev)
    assert dis == {}, f"verdicts differ (ours, Evidently): {dis}"
    assert r["ours"].share_drifted == pytest.approx(r["ev_share"])
    drifted = {c for c, o in ours.items() if o["drifted"]}
    assert {"n_shift", "n_scale", "c_shift"} <= drifted and not {"n_same", "c_same"} & drifted
    assert any(0.1 < o["statistic"] < 0.13 for o in ours.values()), "no borderline drifted column"
    assert any(0.07 < o["statistic"] < 0.1 for o in ours.values()), "no borderline undrifted column"


def test_default_effect_floor_is_the_only_difference_in_the_small_regime(runs):
    """With our default effect floor (0.1) a column drifts only if p < 0.05 and KS D / Cramer's V >= 0.1:
    the columns where we then disagree with Evidently are exactly those the floor holds back."""
    r = runs["small"]
    ours, ev = _ours(r["ours_default"]), r["ev"]
    held_back = {c for c, o in ours.items() if o["p_value"] < 0.05 and o["effect"] < 0.1}
    assert held_back, "the data should have a significant but small shift"
    assert _disagreements(ours, ev) == {c: (False, True) for c in held_back}


def test_evidently_goodness_of_fit_chisquare_differs_by_design(runs):
    """Evidently's default chi-square treats the reference counts as the population: with equal sizes its
    statistic is sum (c - r)^2 / r, term by term >= ours sum (c - r)^2 / (r + c), so its p-value is never
    larger and it flags columns whose counts differ by no more than sampling noise (with the same
    degrees of freedom the statistic is about twice ours). Those columns are listed, not skipped."""
    r = runs["small"]
    ours, gof = _ours(r["ours"]), r["ev_gof"]
    multi = [c for c in r["cat"] if r["ref"][c].nunique() > 2]
    for c in multi:
        assert gof[c]["stattest"] == "chisquare"
        if r["ref"][c].notna().sum() == r["cur"][c].notna().sum():    # equal sizes (c_nan: not, missing values differ)
            assert gof[c]["score"] <= ours[c]["p_value"] + 1e-12, (c, gof[c]["score"], ours[c]["p_value"])
    assert gof["c_bin"]["stattest"] == "z" and gof["c_bin"]["drifted"] == ours["c_bin"]["drifted"]
    for c in r["num"]: assert gof[c]["drifted"] == ours[c]["drifted"], c
    # c_border: current shares .39/.31/.20/.10 against .40/.30/.20/.10, contingency p ~ 0.11, goodness-of-fit p ~ 0.005.
    EXPECTED = {"c_border"}
    assert set(_disagreements(ours, gof)) == EXPECTED
    for c in EXPECTED:
        assert ours[c]["p_value"] > 0.05 > gof[c]["score"] and not ours[c]["drifted"] and gof[c]["drifted"]


def test_evidently_type_inference_differs_by_design(runs):
    """Ours: numeric dtype with >= 6 distinct values is numeric, anything else categorical. Evidently 0.7:
    floats are always numerical (a numerical column with <= 5 distinct values then gets chi-square, or
    Jensen-Shannon on a large reference), integers with <= 10 distinct values are categorical, strings are
    categorical unless more than half the values are distinct (then text)."""
    r = runs["small"]
    prof, auto = r["profile"]["columns"], r["ev_auto"]
    assert prof["i_int"]["kind"] == "numeric" and auto["i_int"]["type"] == "cat" and auto["i_int"]["stattest"] == "chisquare"
    assert prof["f_few"]["kind"] == "categorical" and auto["f_few"]["type"] == "num" and auto["f_few"]["stattest"] == "chisquare"
    others = set(prof) - {"i_int", "f_few"}
    assert {c: auto[c]["type"] for c in others} == {c: {"numeric": "num", "categorical": "cat"}[prof[c]["kind"]] for c in others}

"""Forecasting: imputation, SBA, metrics, and model choice on series with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from stockflow.stock.replenishment.forecasting import (
    BASELINE,
    ForecastResult,
    ModelScore,
    backtest,
    classify_demand,
    eligible_models,
    forecast_demand,
    impute_stockouts,
    mase,
    predict,
    sba_forecast,
    wape,
)
from stockflow.stock.replenishment.simulation import SCENARIOS, DemandSpec, generate_demand

SEEDS = range(5)


def _score(result: ForecastResult, model: str | None = None) -> ModelScore:
    score = result.score(model or result.model)
    assert score is not None
    return score


def test_impute_uses_same_weekday_and_keeps_recorded_sales_as_lower_bound() -> None:
    week = np.array([10, 10, 10, 10, 10, 40, 10], dtype=float)
    demand = np.tile(week, 6)
    stockout = np.zeros(len(demand), bool)
    stockout[[19, 20, 27]] = True  # a busy day (40), a quiet day (10), a quiet day
    demand[[19, 20]] = 0  # nothing sold
    demand[27] = 25  # partial sales before running out
    imputed = impute_stockouts(demand, stockout)
    assert imputed[19] == 40 and imputed[20] == 10
    assert imputed[27] == 25  # neighbours say 10, but 25 were sold
    assert np.array_equal(imputed[~stockout], demand[~stockout])


def test_impute_refuses_a_history_of_only_stockouts() -> None:
    with pytest.raises(ValueError, match="every day is a stockout"):
        impute_stockouts([0, 0, 0], [True, True, True])


def test_sba_matches_hand_computation() -> None:
    # First demand on day 3: size 3, interval 3. Next demand 5 after 2 days:
    # size 3 + 0.1 * (5 - 3) = 3.2, interval 3 + 0.1 * (2 - 3) = 2.9; SBA factor 1 - 0.1 / 2.
    forecast = sba_forecast([0, 0, 3, 0, 5], horizon=3, alpha=0.1)
    assert forecast == pytest.approx([3.2 / 2.9 * 0.95] * 3)
    assert sba_forecast([0, 0, 0], horizon=2).tolist() == [0.0, 0.0]


def test_classify_demand_by_average_interval() -> None:
    assert classify_demand([1, 2, 0, 3, 1, 1]) == "smooth"  # ADI 1.2
    assert classify_demand([0, 2, 0, 0, 1, 0]) == "intermittent"  # ADI 3
    assert classify_demand([0, 0]) == "intermittent"


def test_metrics() -> None:
    actual = np.array([10.0, 0.0, 10.0])
    assert wape(actual, np.array([8.0, 1.0, 12.0])) == pytest.approx(5 / 20)
    assert wape(np.zeros(2), np.zeros(2)) == 0.0
    train = np.array([1.0] * 7 + [3.0] * 7)  # seasonal naive in-sample MAE = 2
    assert mase(actual, np.array([8.0, 1.0, 12.0]), train) == pytest.approx((5 / 3) / 2)


def test_yearly_seasonality_is_a_candidate_only_with_two_years() -> None:
    assert "holt_winters_yearly" not in eligible_models("smooth", 700)
    assert "holt_winters_yearly" in eligible_models("smooth", 730)
    assert "holt_winters" not in eligible_models("smooth", 20)
    assert eligible_models("intermittent", 1000) == ("naive_seasonal", "sba")


def test_backtest_leaves_censored_days_out_of_the_errors() -> None:
    history = np.full(100, 10.0)
    censored = np.zeros(100, bool)
    censored[-5:] = True
    scores, errors = backtest(history, censored, ["naive_seasonal"], horizon=14, origins=2)
    assert errors["naive_seasonal"].shape == (28 - 5,)
    assert scores[0].wape == 0.0


def test_forecast_is_never_negative() -> None:
    falling = np.linspace(30, 1, 120)
    assert (predict("holt_winters", falling, 60) >= 0).all()


@pytest.mark.parametrize("name", ["trend", "weekly", "trend_weekly", "stockout_gap"])
def test_structured_series_beat_the_naive_baseline(name: str) -> None:
    chosen, naive, holdout_chosen, holdout_naive = [], [], [], []
    days, horizon = 365, 28
    for seed in SEEDS:
        history = generate_demand(SCENARIOS[name], days + horizon, seed)
        result = forecast_demand(history.observed[:days], history.stockout[:days], horizon=horizon)
        chosen.append(_score(result).wape)
        naive.append(_score(result, BASELINE).wape)
        future = history.demand[days:]
        ours = wape(future, result.forecast)
        baseline = wape(future, predict(BASELINE, result.history, horizon))
        holdout_chosen.append(ours)
        holdout_naive.append(baseline)
        print(
            f"{name:13s} seed {seed}: {result.model:13s} backtest WAPE {chosen[-1]:.3f} "
            f"vs naive {naive[-1]:.3f}, MASE {_score(result).mase:.2f}; "
            f"28-day holdout WAPE {ours:.3f} vs naive {baseline:.3f}"
        )
    # Backtest: the chosen model is clearly better on average, and never the baseline by luck
    # more than once in five series.
    assert np.mean(chosen) < 0.85 * np.mean(naive)
    assert sum(c < n for c, n in zip(chosen, naive, strict=True)) >= len(SEEDS) - 1
    # Holdout (data the backtest never saw): the choice generalises.
    assert np.mean(holdout_chosen) < 0.85 * np.mean(holdout_naive)


def test_weekly_seasonality_is_picked_up_by_holt_winters() -> None:
    models = [
        forecast_demand(generate_demand(SCENARIOS["weekly"], 365, seed).observed).model
        for seed in SEEDS
    ]
    assert models.count("holt_winters") == len(SEEDS)


def test_intermittent_demand_chooses_sba_and_is_never_worse_than_baseline() -> None:
    models = []
    for seed in range(10):
        history = generate_demand(SCENARIOS["intermittent"], 365, seed)
        result = forecast_demand(history.observed)
        models.append(result.model)
        assert result.demand_class == "intermittent"
        assert _score(result).wape <= _score(result, BASELINE).wape
        print(
            f"intermittent seed {seed}: {result.model:14s} WAPE (weekly buckets) "
            f"{_score(result).wape:.3f} vs naive {_score(result, BASELINE).wape:.3f}"
        )
    assert models.count("sba") >= 8


def test_stockout_gap_does_not_drag_the_forecast_to_zero() -> None:
    # Three weeks out of stock right up to today: nothing recorded as sold.
    spec = DemandSpec(weekly_amplitude=1.0, stockout_start=365 - 21, stockout_days=21)
    history = generate_demand(spec, 365 + 28, seed=3)
    observed, stockout = history.observed[:365], history.stockout[:365]
    flagged = forecast_demand(observed, stockout)
    unflagged = forecast_demand(observed)  # what happens if the zeros were taken as demand
    true_mean = history.demand[365:].mean()
    print(
        f"stockout gap: forecast {flagged.mean_daily:.1f}/day with stockouts flagged, "
        f"{unflagged.mean_daily:.1f}/day if zeros were believed; true {true_mean:.1f}/day"
    )
    assert flagged.mean_daily == pytest.approx(true_mean, rel=0.1)
    assert unflagged.mean_daily < 0.5 * true_mean
    assert flagged.imputed.sum() == 21


def test_yearly_seasonality_with_three_years_of_history() -> None:
    history = generate_demand(SCENARIOS["yearly_weekly"], 3 * 365, seed=1)
    result = forecast_demand(history.observed)
    assert result.score("holt_winters_yearly") is not None
    print(
        "yearly_weekly: "
        + ", ".join(f"{s.model} {s.wape:.3f}/{s.mase:.2f}" for s in result.scores)
        + f" -> {result.model}"
    )
    assert _score(result).wape < 0.85 * _score(result, BASELINE).wape


def test_short_history_falls_back_to_recent_mean() -> None:
    result = forecast_demand([4, 6, 5, 5, 4, 6, 5, 5, 0, 10], horizon=5)
    assert result.model == "mean"
    assert result.forecast.tolist() == [5.0] * 5
    assert result.scores == () and result.chosen_score is None
    assert result.sigma_daily > 0

"""Daily demand forecasting per SKU, chosen by a rolling-origin backtest.

Pure functions over numpy arrays of daily demand (one value per consecutive day, oldest first);
storage and scheduling live elsewhere. Candidates:

- ``naive_seasonal`` — repeat the last week (the baseline every other model must beat);
- ``ses`` — simple exponential smoothing (level only);
- ``holt_winters`` — damped additive trend + additive weekly seasonality, once the training
  window holds at least ``MIN_SEASONS`` full weeks;
- ``holt_winters_yearly`` — the same on a series with a day-of-year index divided out, only
  when the training window holds at least two years;
- ``sba`` — for intermittent demand: the Syntetos-Boylan approximation, i.e. Croston's method
  with its upward bias removed.

Stockout days are censored (we only saw what we could sell), so they are imputed before fitting
and left out of backtest errors instead of teaching the model zero demand.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing

WEEK = 7
YEAR = 365
MIN_SEASONS = 3
# Syntetos-Boylan cut-off on the average inter-demand interval: above it, demand is intermittent.
ADI_INTERMITTENT = 1.32
BASELINE = "naive_seasonal"
SMOOTH_MODELS = ("naive_seasonal", "ses", "holt_winters", "holt_winters_yearly")
INTERMITTENT_MODELS = ("naive_seasonal", "sba")
# Shortest training window worth fitting; below it (plus the backtest) we fall back to a mean.
MIN_TRAIN_DAYS = 4 * WEEK

FloatArray = np.ndarray


@dataclass(frozen=True)
class ModelScore:
    """Backtest accuracy of one candidate model (lower is better for both)."""

    model: str
    wape: float  # sum |error| / sum actual demand
    mase: float  # MAE / in-sample MAE of the weekly naive forecast


@dataclass(frozen=True, eq=False)
class ForecastResult:
    """The chosen model, its forecast and the evidence for choosing it."""

    model: str
    forecast: FloatArray  # expected demand per day, starting the day after the history
    sigma_daily: float  # RMSE of the chosen model's backtest errors, units per day
    scores: tuple[ModelScore, ...]  # every candidate, in backtest order; empty if too short
    demand_class: str  # "smooth" or "intermittent"
    history: FloatArray  # demand with stockout days imputed
    imputed: FloatArray  # bool mask of the imputed days

    @property
    def mean_daily(self) -> float:
        """Mean forecast demand per day over the horizon."""
        return float(self.forecast.mean())

    def score(self, model: str) -> ModelScore | None:
        """The backtest score of ``model``, or None if it was not a candidate."""
        return next((s for s in self.scores if s.model == model), None)

    @property
    def chosen_score(self) -> ModelScore | None:
        """The backtest score of the chosen model (None for the short-history fallback)."""
        return self.score(self.model)


def impute_stockouts(
    demand: Sequence[float] | FloatArray, stockout: Sequence[bool] | FloatArray
) -> FloatArray:
    """Replace demand on stockout days with an estimate of what would have sold.

    The estimate is the mean of the same weekday on uncensored days up to four weeks either side
    (keeps the weekly pattern and, being symmetric, the local trend level); failing that, the
    uncensored mean within two weeks; failing that, the overall uncensored mean. Sales recorded on
    a stockout day are a lower bound, so the estimate never goes below them.
    """
    y = np.asarray(demand, dtype=float)
    censored = np.asarray(stockout, dtype=bool)
    if y.shape != censored.shape:
        raise ValueError("demand and stockout must have the same length")
    observed = ~censored
    if not observed.any():
        raise ValueError("every day is a stockout: no uncensored demand to learn from")
    out = y.copy()
    n = len(y)
    for t in np.flatnonzero(censored).tolist():
        same_weekday = t + WEEK * np.array([-4, -3, -2, -1, 1, 2, 3, 4])
        same_weekday = same_weekday[(same_weekday >= 0) & (same_weekday < n)]
        same_weekday = same_weekday[observed[same_weekday]]
        near = np.arange(max(0, t - 2 * WEEK), min(n, t + 2 * WEEK + 1))
        near = near[observed[near]]
        if same_weekday.size:
            estimate = y[same_weekday].mean()
        elif near.size:
            estimate = y[near].mean()
        else:
            estimate = y[observed].mean()
        out[t] = max(y[t], estimate)
    return out


def classify_demand(demand: Sequence[float] | FloatArray) -> str:
    """``"intermittent"`` if the mean interval between demand days is ≥ 1.32, else ``"smooth"``."""
    y = np.asarray(demand, dtype=float)
    nonzero = int(np.count_nonzero(y > 0))
    if nonzero == 0:
        return "intermittent"
    return "intermittent" if len(y) / nonzero >= ADI_INTERMITTENT else "smooth"


def sba_forecast(
    demand: Sequence[float] | FloatArray, horizon: int, alpha: float = 0.1
) -> FloatArray:
    """Syntetos-Boylan approximation: Croston's method times (1 - alpha/2).

    Croston smooths demand sizes and inter-demand intervals separately, updating only on demand
    days, and forecasts a flat size / interval; that ratio is biased upwards, hence the factor.
    """
    y = np.asarray(demand, dtype=float)
    demand_days = np.flatnonzero(y > 0)
    if demand_days.size == 0:
        return np.zeros(horizon)
    first = int(demand_days[0])
    size, interval = y[first], float(first + 1)
    since_last = 1
    for value in y[first + 1 :]:
        if value > 0:
            size += alpha * (value - size)
            interval += alpha * (since_last - interval)
            since_last = 1
        else:
            since_last += 1
    rate = size / interval * (1 - alpha / 2)
    return np.full(horizon, rate)


def _naive_seasonal(y: FloatArray, horizon: int) -> FloatArray:
    last_week = y[-WEEK:]
    return np.resize(last_week, horizon).astype(float)


def _fit_ets(y: FloatArray, horizon: int, *, seasonal: bool) -> FloatArray:
    model = ExponentialSmoothing(
        y,
        trend="add" if seasonal else None,
        damped_trend=seasonal,
        seasonal="add" if seasonal else None,
        seasonal_periods=WEEK if seasonal else None,
        initialization_method="estimated",
    )
    # Short or flat series often stop the optimiser early; the fit is still usable.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # No brute-force start grid: ~3x the time for a negligibly better SSE. SLSQP, not the
        # default L-BFGS-B or least_squares: their BLAS calls crawl on a busy host (10-20x).
        fitted = model.fit(use_brute=False, method="SLSQP")
    return np.asarray(fitted.forecast(horizon), dtype=float)


def _yearly_index(y: FloatArray) -> FloatArray:
    """Multiplicative day-of-year index (length 365, mean 1) estimated from ≥ 2 years."""
    series = pd.Series(y)
    weekly_mean = series.rolling(WEEK, center=True, min_periods=1).mean()
    level = series.rolling(YEAR, center=True, min_periods=YEAR // 2).mean()
    ratio = (weekly_mean / level.where(level > 0)).to_numpy()
    position = np.arange(len(y)) % YEAR
    valid = np.isfinite(ratio)
    sums = np.bincount(position[valid], weights=ratio[valid], minlength=YEAR)
    counts = np.bincount(position[valid], minlength=YEAR)
    index = np.divide(sums, counts, out=np.ones(YEAR), where=counts > 0)
    # Circular smoothing: one year of data per day-of-year is noisy.
    padded = np.concatenate([index[-7:], index, index[:7]])
    index = np.convolve(padded, np.ones(15) / 15, mode="valid")
    index = np.clip(index / index.mean(), 0.05, None)
    return index


def _holt_winters_yearly(y: FloatArray, horizon: int) -> FloatArray:
    index = _yearly_index(y)
    past = index[np.arange(len(y)) % YEAR]
    future = index[np.arange(len(y), len(y) + horizon) % YEAR]
    return _fit_ets(y / past, horizon, seasonal=True) * future


MODELS: dict[str, Callable[[FloatArray, int], FloatArray]] = {
    "naive_seasonal": _naive_seasonal,
    "ses": lambda y, h: _fit_ets(y, h, seasonal=False),
    "holt_winters": lambda y, h: _fit_ets(y, h, seasonal=True),
    "holt_winters_yearly": _holt_winters_yearly,
    "sba": sba_forecast,
}


def predict(model: str, history: FloatArray, horizon: int) -> FloatArray:
    """Fit ``model`` on ``history`` and forecast ``horizon`` days (clipped at zero)."""
    return np.clip(MODELS[model](np.asarray(history, dtype=float), horizon), 0.0, None)


def eligible_models(demand_class: str, train_days: int) -> tuple[str, ...]:
    """Candidate models for a demand class, given the shortest training window in the backtest."""
    if demand_class == "intermittent":
        return INTERMITTENT_MODELS
    models = ["naive_seasonal", "ses"]
    if train_days >= MIN_SEASONS * WEEK:
        models.append("holt_winters")
    if train_days >= 2 * YEAR:
        models.append("holt_winters_yearly")
    return tuple(models)


def wape(actual: FloatArray, forecast: FloatArray) -> float:
    """Weighted absolute percentage error: sum |actual - forecast| / sum actual."""
    error = float(np.abs(actual - forecast).sum())
    total = float(np.abs(actual).sum())
    if total == 0:
        return 0.0 if error == 0 else math.inf
    return error / total


def mase(actual: FloatArray, forecast: FloatArray, train: FloatArray, season: int = WEEK) -> float:
    """Mean absolute scaled error against the in-sample seasonal naive forecast of ``train``."""
    scale = float(np.abs(train[season:] - train[:-season]).mean())
    error = float(np.abs(actual - forecast).mean())
    if scale == 0:
        return 0.0 if error == 0 else math.inf
    return error / scale


def _buckets(values: FloatArray, size: int) -> FloatArray:
    """Sum consecutive ``size``-day buckets, aligned to the end (a leading remainder is dropped)."""
    usable = len(values) - len(values) % size
    return values[len(values) - usable :].reshape(-1, size).sum(axis=1)


def backtest(
    history: FloatArray,
    censored: FloatArray,
    models: Sequence[str],
    horizon: int = 14,
    origins: int = 4,
    bucket: int = 1,
) -> tuple[tuple[ModelScore, ...], dict[str, FloatArray]]:
    """Rolling-origin evaluation: fit on everything before each origin, forecast ``horizon`` days.

    The last ``origins * horizon`` days are covered by consecutive, non-overlapping windows.
    Scores compare ``bucket``-day totals (``horizon`` must be a multiple): 7 for intermittent
    demand, whose daily MAE-optimal forecast is zero. Buckets containing a censored (stockout)
    day are left out because their true demand is unknown. Returns the scores and, per model,
    the daily errors (forecast - actual) on uncensored days, for the error sigma.
    """
    n = len(history)
    start = n - origins * horizon
    if start < MIN_TRAIN_DAYS:
        raise ValueError(f"need {MIN_TRAIN_DAYS + origins * horizon} days, have {n}")
    if horizon % bucket:
        raise ValueError("horizon must be a multiple of bucket")
    censored = np.asarray(censored, dtype=bool)
    keep = ~censored[start:]
    keep_buckets = _buckets(censored[start:].astype(float), bucket) == 0
    actual = history[start:]
    train = _buckets(history[:start], bucket)
    season = max(1, WEEK // bucket)
    scores: list[ModelScore] = []
    errors: dict[str, FloatArray] = {}
    for model in models:
        forecast = np.concatenate(
            [predict(model, history[:origin], horizon) for origin in range(start, n, horizon)]
        )
        errors[model] = (forecast - actual)[keep]
        a = _buckets(actual, bucket)[keep_buckets]
        f = _buckets(forecast, bucket)[keep_buckets]
        scores.append(ModelScore(model, wape(a, f), mase(a, f, train, season)))
    return tuple(scores), errors


def forecast_demand(
    demand: Sequence[float] | FloatArray,
    stockout: Sequence[bool] | FloatArray | None = None,
    *,
    horizon: int = 28,
    backtest_horizon: int = 14,
    origins: int = 4,
    models: Sequence[str] | None = None,
) -> ForecastResult:
    """Impute stockouts, pick the best model by backtest WAPE and forecast ``horizon`` days.

    ``models`` restricts the candidates (e.g. to re-fit a previously chosen model cheaply);
    by default they follow the demand class and history length. A history too short for the
    backtest gets the recent mean as forecast and the recent standard deviation as error sigma.
    """
    raw = np.asarray(demand, dtype=float)
    if raw.size == 0:
        raise ValueError("empty demand history")
    censored = np.zeros(raw.shape, bool) if stockout is None else np.asarray(stockout, bool)
    history = impute_stockouts(raw, censored)
    demand_class = classify_demand(history)

    train_days = len(history) - origins * backtest_horizon
    if train_days < MIN_TRAIN_DAYS:
        recent = history[-MIN_TRAIN_DAYS:]
        return ForecastResult(
            model="mean",
            forecast=np.full(horizon, recent.mean()),
            sigma_daily=float(recent.std()),
            scores=(),
            demand_class=demand_class,
            history=history,
            imputed=censored,
        )

    candidates = tuple(models) if models else eligible_models(demand_class, train_days)
    bucket = WEEK if demand_class == "intermittent" else 1
    scores, errors = backtest(history, censored, candidates, backtest_horizon, origins, bucket)
    best = min(scores, key=lambda s: s.wape)
    return ForecastResult(
        model=best.model,
        forecast=predict(best.model, history, horizon),
        sigma_daily=float(np.sqrt(np.mean(errors[best.model] ** 2))),
        scores=scores,
        demand_class=demand_class,
        history=history,
        imputed=censored,
    )

"""Evidence for the forecasting and replenishment logic on synthetic demand.

``python -m stockflow.stock.replenishment.evidence [--seed N] [--seeds N] [--charts DIR]`` prints,
per scenario, the chosen model and its backtest WAPE/MASE next to the naive seasonal baseline, and
a simulated year under the suggested policy next to a naive min/max policy; then how often each
model wins over several seeds, so one lucky or unlucky history does not tell the story.

Protocol per scenario: a year of history (three for the yearly scenario) is forecast and turned
into a policy; the next 365 days are simulated. Every ``REPLAN_DAYS`` both policies are re-set
from the demand recorded so far (lost sales are still recorded as demand): ours by re-fitting the
chosen model, the naive one as min = 14 / max = 60 days of the trailing 28-day mean demand.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from stockflow.stock.replenishment.charts import render_chart
from stockflow.stock.replenishment.forecasting import BASELINE, ForecastResult, forecast_demand
from stockflow.stock.replenishment.policy import StockPolicy, StockPosition, suggest
from stockflow.stock.replenishment.settings import ReplenishmentSettings
from stockflow.stock.replenishment.simulation import (
    SCENARIOS,
    SimulationResult,
    generate_demand,
    naive_min_max,
    simulate,
)

SIMULATED_DAYS = 365
REPLAN_DAYS = 28
NAIVE_WINDOW_DAYS = 28
NAIVE_MIN_DAYS = 14
NAIVE_MAX_DAYS = 60


@dataclass(frozen=True, eq=False)
class ScenarioResult:
    """Forecast evidence and the simulated year for one scenario."""

    scenario: str
    forecast: ForecastResult
    ours: SimulationResult
    naive: SimulationResult
    settings: ReplenishmentSettings

    def annual_cost(self, simulated: SimulationResult) -> float:
        """Ordering plus holding cost of a simulated year under these settings."""
        return (
            simulated.orders * self.settings.ordering_cost
            + simulated.average_on_hand * self.settings.holding_cost_per_unit_year
        )

    @property
    def wape(self) -> float:
        """Backtest WAPE of the chosen model."""
        return _wape(self.forecast, self.forecast.model)

    @property
    def baseline_wape(self) -> float:
        """Backtest WAPE of the naive seasonal baseline."""
        return _wape(self.forecast, BASELINE)


def _wape(forecast: ForecastResult, model: str) -> float:
    score = forecast.score(model)
    return score.wape if score else float("nan")


def history_days(scenario: str) -> int:
    """Days of history the scenario is forecast from (yearly seasonality needs ≥ 2 years)."""
    return 3 * 365 if SCENARIOS[scenario].yearly_amplitude else 365


def evaluate_scenario(
    scenario: str, seed: int = 7, settings: ReplenishmentSettings | None = None
) -> ScenarioResult:
    """Forecast a synthetic history, then simulate a year under the suggested and naive policies."""
    settings = settings or ReplenishmentSettings()
    days = history_days(scenario)
    synthetic = generate_demand(SCENARIOS[scenario], days + SIMULATED_DAYS, seed)
    first = forecast_demand(synthetic.observed[:days], synthetic.stockout[:days])
    # What the shop records: stockout-censored sales in the past, full demand once simulated.
    recorded = np.concatenate([synthetic.observed[:days], synthetic.demand[days:]])
    future = synthetic.demand[days:]

    ours: list[StockPolicy] = []
    naive: list[StockPolicy] = []
    for day in range(0, SIMULATED_DAYS, REPLAN_DAYS):
        end = days + day
        fit = (
            first
            if day == 0
            else forecast_demand(recorded[:end], synthetic.stockout[:end], models=(first.model,))
        )
        ours.append(suggest("SKU", fit, settings).policy)
        naive.append(
            naive_min_max(
                float(fit.history[-NAIVE_WINDOW_DAYS:].mean()), NAIVE_MIN_DAYS, NAIVE_MAX_DAYS
            )
        )

    lead_time = round(settings.lead_time_days)
    return ScenarioResult(
        scenario=scenario,
        forecast=first,
        ours=simulate(future, lambda d: ours[d // REPLAN_DAYS], lead_time),
        naive=simulate(future, lambda d: naive[d // REPLAN_DAYS], lead_time),
        settings=settings,
    )


def policy_label(settings: ReplenishmentSettings) -> str:
    """Short label such as ``eoq, cycle 95%``."""
    return f"{settings.method}, {settings.service_level_type} {settings.service_level:.0%}"


def build_table(results: list[ScenarioResult]) -> Table:
    """A rich table of the figures, one row per scenario and service-level type."""
    table = Table(title="stockflow replenishment evidence: EOQ policy, 95% target, lead time 7 d")
    columns = (
        "scenario",
        "model",
        "WAPE",
        "naive WAPE",
        "MASE",
        "target",
        "fill",
        "avg stock",
        "orders",
        "cost/yr",
        "min/max fill",
        "min/max stock",
        "min/max orders",
        "min/max cost/yr",
        "stock vs min/max",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column in {"scenario", "model", "target"} else "right"
        )
    for r in results:
        score = r.forecast.chosen_score
        table.add_row(
            r.scenario,
            r.forecast.model,
            f"{r.wape:.3f}",
            f"{r.baseline_wape:.3f}",
            f"{score.mase:.2f}" if score else "-",
            r.settings.service_level_type,
            f"{r.ours.fill_rate:.1%}",
            f"{r.ours.average_on_hand:.1f}",
            str(r.ours.orders),
            f"{r.annual_cost(r.ours):.0f}",
            f"{r.naive.fill_rate:.1%}",
            f"{r.naive.average_on_hand:.1f}",
            str(r.naive.orders),
            f"{r.annual_cost(r.naive):.0f}",
            f"{r.ours.average_on_hand / r.naive.average_on_hand:.0%}",
        )
    return table


def model_choice_table(seeds: int) -> Table:
    """How often each model is chosen per scenario over ``seeds`` histories, and mean WAPEs."""
    table = Table(title=f"model choice over seeds 0-{seeds - 1} (backtest WAPE, mean)")
    for column in ("scenario", "chosen models", "chosen WAPE", "naive WAPE"):
        table.add_column(column, justify="right" if "WAPE" in column else "left")
    for scenario in SCENARIOS:
        days = history_days(scenario)
        counts: Counter[str] = Counter()
        chosen, naive = [], []
        for seed in range(seeds):
            synthetic = generate_demand(SCENARIOS[scenario], days, seed)
            result = forecast_demand(synthetic.observed, synthetic.stockout)
            counts[result.model] += 1
            chosen.append(_wape(result, result.model))
            naive.append(_wape(result, BASELINE))
        table.add_row(
            scenario,
            ", ".join(f"{model} {n}" for model, n in counts.most_common()),
            f"{np.mean(chosen):.3f}",
            f"{np.mean(naive):.3f}",
        )
    return table


def main(argv: list[str] | None = None) -> None:
    """Run every scenario under cycle- and fill-rate-targeted 95% policies and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--charts", type=Path, help="write one PNG per scenario here")
    parser.add_argument(
        "--seeds",
        type=int,
        default=10,
        help="histories per scenario for the model-choice table (0 skips it)",
    )
    args = parser.parse_args(argv)

    results: list[ScenarioResult] = []
    for scenario in SCENARIOS:
        for kind in ("cycle", "fill_rate"):
            settings = replace(ReplenishmentSettings(), service_level_type=kind)
            results.append(evaluate_scenario(scenario, args.seed, settings))
        if args.charts:
            args.charts.mkdir(parents=True, exist_ok=True)
            result = results[-2]  # the default, cycle-service policy
            # Two weeks of cover on hand, so the chart shows when the reorder point is crossed.
            on_hand = round(14 * result.forecast.mean_daily)
            render_chart(
                result.forecast,
                suggest(
                    scenario,
                    result.forecast,
                    result.settings,
                    stock=StockPosition(available=on_hand),
                ),
                title=f"{scenario} ({policy_label(result.settings)})",
                path=args.charts / f"{scenario}.png",
            )
    console = Console(width=200)
    console.print(build_table(results))
    console.print(
        "min/max = reorder at 14, fill to 60 days of trailing 28-day mean demand; both policies "
        f"re-set every {REPLAN_DAYS} days; fill = units served / demanded (lost sales); "
        "cost/yr = orders x 50 + avg stock x 2.50 (default settings); intermittent WAPE/MASE "
        "are on weekly totals."
    )
    if args.seeds:
        console.print(model_choice_table(args.seeds))


if __name__ == "__main__":
    main()

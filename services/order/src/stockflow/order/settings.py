"""The order service's own tunables, from environment variables prefixed STOCKFLOW_ORDER_."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockflow.order.domain import FulfillmentExceptionPolicy, SagaPolicy


class OrderSettings(BaseSettings):
    """How long the saga waits for stock, how often it retries, how timers are polled."""

    model_config = SettingsConfigDict(env_prefix="STOCKFLOW_ORDER_", extra="ignore")

    stock_reply_timeout_s: float = Field(
        default=30.0, gt=0, description="wait this long for stock's reply before re-sending"
    )
    max_reserve_attempts: int = Field(
        default=3, ge=1, description="ReserveStock attempts before the order is reported stuck"
    )
    timer_poll_interval_s: float = Field(
        default=0.5, gt=0, description="how often the timer task looks for due timers"
    )
    timer_batch_size: int = Field(default=500, ge=1, description="timers fired per transaction")
    settle_s: float = Field(
        default=300.0, gt=0, description="an unsettled order untouched this long is a violation"
    )
    fulfillment_exception_policy: FulfillmentExceptionPolicy = Field(
        default=FulfillmentExceptionPolicy.CANCEL_REMAINDER,
        description="units the warehouse cannot ship, unless the order says otherwise",
    )

    def saga_policy(self) -> SagaPolicy:
        return SagaPolicy(
            stock_reply_timeout=timedelta(seconds=self.stock_reply_timeout_s),
            max_reserve_attempts=self.max_reserve_attempts,
            exception_policy=self.fulfillment_exception_policy,
        )

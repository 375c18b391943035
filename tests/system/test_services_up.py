"""Every service process starts against real Kafka and PostgreSQL and answers its ops endpoints;
so does the replenishment worker, against PostgreSQL."""

import httpx
import pytest

pytestmark = pytest.mark.system

SERVICES = ["catalog", "stock", "order", "fulfillment", "accounting"]


@pytest.mark.parametrize("service", SERVICES)
async def test_service_answers_health_readiness_metrics_and_docs(system, service):
    async with httpx.AsyncClient(base_url=system.url(service), timeout=10) as client:
        assert (await client.get("/healthz")).json()["status"] == "ok"
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "kafka": "ok"}
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        # The readiness call above was counted by the service's own HTTP instrumentation.
        assert f'service="{service}"' in metrics.text
        assert "stockflow_http_requests_total" in metrics.text
        assert (await client.get("/openapi.json")).json()["info"]["title"] == f"stockflow {service}"
        assert (await client.get("/asyncapi.json")).json()["asyncapi"].startswith("3.")


async def test_the_replenishment_worker_answers_health_readiness_and_metrics(system):
    """The stock service's worker runs beside it, on the stock schema and without Kafka."""
    async with httpx.AsyncClient(base_url=system.url("replenishment"), timeout=10) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok", "service": "replenishment"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok"}
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/openapi.json")).json()["info"]["title"] == (
            "stockflow replenishment"
        )

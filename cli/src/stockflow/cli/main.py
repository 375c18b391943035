"""`stockflow`: the operator's command line (typer + rich)."""

from __future__ import annotations

import typer

from stockflow.cli import accounting, catalog, check, demo, fulfillment, ops, order, stock

app = typer.Typer(
    name="stockflow",
    help="Operate stockflow: orders, stock, catalog, topics, dead letters, checks and the demo.",
    no_args_is_help=True,
)
app.add_typer(order.app, name="order", help="Orders and their saga timeline.")
app.add_typer(stock.app, name="stock", help="Stock levels, movements and replenishment.")
app.add_typer(catalog.app, name="catalog", help="Catalog import and export.")
app.add_typer(fulfillment.app, name="fulfillment", help="Warehouse work: pick, pack, ship.")
app.add_typer(accounting.app, name="accounting", help="Books, valuation and reports.")
ops.register(app)
app.command("check")(check.check)
demo.register(app)

if __name__ == "__main__":
    app()

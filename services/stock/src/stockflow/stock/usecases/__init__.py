"""The stock service's use cases: one function per command, fact or warehouse step, called by
both the Kafka handlers (`handlers.py`) and the HTTP routers (`api/`). Each works inside the
caller's unit of work, lets the domain decide, saves through the store layer (`store.py`,
`ledger.py`) and stages the contract events; the caller commits.

- `reservations`: reserve, release, commit a shipment (the command batch)
- `backorders`: serve waiting backorders, expected dates
- `warehouse`: receive goods, restock a return, short picks, transfers, stock states, counts,
  safety stock, reorder points, announced receipts, locations
- `catalog`: the catalog projection
- `repair`: admin repairs of drifted reservations
- `levels_stream`: at start, publish every level that has no record of its version
- `queries`: what the HTTP API reads
"""

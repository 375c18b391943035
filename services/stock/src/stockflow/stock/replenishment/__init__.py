"""Replenishment: demand forecasts, reorder points and suggestions, their evidence on synthetic
histories, and the settings per SKU.

Two weights live here. ``settings`` and ``api`` import nothing scientific: the stock service
serves the settings API from them. Everything else (numpy, pandas, scipy, statsmodels,
matplotlib) runs in the replenishment worker (``app``) and in ``stockflow stock replenish``.
Keep this file free of imports, so that importing ``settings`` stays light.
"""

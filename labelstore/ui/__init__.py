"""The label explorer: a read-only web page over the warehouse, the rule catalog and the cluster.

``create_app(settings)`` (``labelstore.ui.app``) builds the aiohttp application: JSON endpoints
under ``/api/`` and a thin page (HTML, one vanilla JS file, vendored Vega-Lite) under ``/``.
"""

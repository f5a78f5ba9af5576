"""swarmd's web dashboard: a WSGI application over `swarmd.admin` (README "The dashboard").

``create_app()`` returns a WSGI callable to serve standalone (``swarmctl web``, waitress) or to mount
under a path prefix in a Django or Flask project; every link, form action and asset URL is built from
the request's ``SCRIPT_NAME``. Server-rendered HTML (Jinja2, autoescaped), routing and request
parsing by Werkzeug, the live graph and charts by the vendored uPlot (no CDN: every asset is package
data). Pages work without JavaScript except the graphs.
"""

from __future__ import annotations

from swarmd.web.app import Dashboard, create_app

__all__ = ["Dashboard", "create_app"]

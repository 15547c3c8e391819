"""Calls from the platform UI's pages in the browser: Starlette's CORSMiddleware, set for this API.

A browser lets a page call an API of another origin only if the API says so: for a JSON POST
it first asks (a preflight, OPTIONS), then reads the answer only if it carries
`Access-Control-Allow-Origin` with the page's origin. The server puts this in front of every
other layer (service/server/serve.py), so that every answer the ASGI layer gives carries the
headers: the fast path's, the app's refusals, the server's 400 and 503, a 500.
"""
from typing import Sequence

from starlette.middleware.cors import CORSMiddleware

from pipeline.service.middleware.asgi import ASGIApp

# The API's methods, and the one header a page sets that a browser asks about (the others it
# sends are CORS-safelisted, which Starlette always allows).
METHODS = ("GET", "POST")
HEADERS = ("Content-Type",)
# A 503's Retry-After (the body budget's) is not a header a page may read unless exposed.
EXPOSED = ("Retry-After",)
# Chromium's ceiling (Firefox allows a day): one preflight per endpoint per browser every two
# hours. Removing an origin still takes effect at once: each answer is checked, not the
# preflight alone.
MAX_AGE_SECONDS = 7200


def allow_origins(app: ASGIApp, origins: Sequence[str]) -> ASGIApp:
    """Return `app` behind CORS for pages of `origins`; `app` itself when there are none.

    No credentials: the API uses no cookies nor HTTP authentication, and a page that sent them
    would be refused.
    """
    if not origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=tuple(origins),
        allow_methods=METHODS,
        allow_headers=HEADERS,
        allow_credentials=False,
        expose_headers=EXPOSED,
        max_age=MAX_AGE_SECONDS,
    )

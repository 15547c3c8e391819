"""Plain ASGI middlewares, one small class per module, over the public ASGI interface only.

request_guard (413, 415) is added by the app. The server puts the others in front of it:
cors (Starlette's CORSMiddleware for the origins allowed, if any; outermost, so that every
answer below carries its headers), framing (400 for an ambiguous body length) and body_budget
(request bodies in memory within one budget, 503 beyond it) once, and connection_state (what
a connection's guard learns from the ASGI layer, and `Connection: close` while draining) once
per connection.
"""

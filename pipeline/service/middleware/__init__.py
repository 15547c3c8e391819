"""Plain ASGI middlewares, one small class per module, over the public ASGI interface only.

request_guard (413, 415) is added by the app; the others are put in front of it by the
server: connection_state (what a connection's guard learns from the ASGI layer, and
`Connection: close` while draining), framing (400 for an ambiguous body length) and
body_budget (request bodies in memory within one budget, 503 beyond it).
"""

"""The HTTP server: uvicorn, run through its public API, with limits that hold against slow
clients, floods and shutdowns (serve.py). Each connection has a guard (connection_guard.py)
that uvicorn's own protocol is wrapped with (protocol.py); what of uvicorn's internals that
needs is named in one module, uvicorn_internals.py."""

"""The API's edge: its threads, request limits, per-client share and probe port (docs/operations.md)."""

from .env import env_int, env_list

# Django requests one worker runs at once; more wait on the event loop. The threads share one GIL with the
# loop that answers /healthz: fewer threads kept its p99 under load low at the same throughput
# (docs/decisions/0005-serving-model.md). A request's database deadline counts its wait for a thread.
API_WORKER_THREADS = env_int("API_WORKER_THREADS", 16, minimum=1)
# Request target, header count, and request line plus headers: beyond them a 414 or 431 in JSON. What a
# browser with a few cookies sends fits in a quarter of the head limit.
API_MAX_REQUEST_LINE_BYTES = env_int("API_MAX_REQUEST_LINE_BYTES", 4094, minimum=256)
API_MAX_HEADER_COUNT = env_int("API_MAX_HEADER_COUNT", 100, minimum=10)
API_MAX_REQUEST_HEAD_BYTES = env_int("API_MAX_REQUEST_HEAD_BYTES", 16384, minimum=1024)
# The API reads no bodies but the login form's; a larger body is a 413 before Django.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
# Per client address and worker process: requests handled at once (beyond: 503), and the rate and burst
# of requests (beyond: 429), both with Retry-After (activity_service/fairness.py). Half the worker's threads
# by default, so that one client's slow queries leave the other half to everyone else.
API_CLIENT_MAX_REQUESTS = env_int("API_CLIENT_MAX_REQUESTS", 8, minimum=1)
API_CLIENT_RATE_PER_SECOND = env_int("API_CLIENT_RATE_PER_SECOND", 100, minimum=1)
API_CLIENT_BURST = env_int("API_CLIENT_BURST", 200, minimum=1)
# Addresses or networks (CIDR) of the proxies whose X-Forwarded-For names the client: the ingress
# controller's or docker-compose's nginx. Empty: the connection's address is the client.
API_TRUSTED_PROXIES = env_list("API_TRUSTED_PROXIES", [])
# Liveness and readiness also answer on this port, which serves nothing else and which no client is
# given, so a flood of the public port cannot queue the probes; 0: the public port only.
API_PROBE_PORT = env_int("API_PROBE_PORT", 8081, minimum=0)

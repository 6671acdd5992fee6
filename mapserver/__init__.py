"""discoveryctl map: the lab's catalog over HTTP, in Consul's API shapes.

``consul`` (pure) turns the in-memory catalog into Consul's JSON and parses a
blocking query's ``index`` and ``wait``; ``server.MapServer`` feeds that
catalog from one etcd watch and serves it with aiohttp, blocking queries and
all; ``cli`` is ``discoveryctl map``. Tools built for Consul's catalog
(Prometheus's ``consul_sd_configs``, consul-template) read it unchanged.
"""

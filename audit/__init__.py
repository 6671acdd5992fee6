"""A container security audit of Docker daemons: CIS Docker Benchmark v1.6.0 sections 4 and 5.

``rules`` decides (inspect dicts in, findings out), ``engine`` reads one daemon
through the Docker SDK, ``report`` renders, ``cli`` is ``discoveryctl audit``.
"""

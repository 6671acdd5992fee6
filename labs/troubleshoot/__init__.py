"""Understanding and troubleshooting the lab: `discoveryctl explain` follows a name
to the packet.

How it works, in three steps:

1. gather: thin shells ask the real things on one lab host, each through one
   outside client: a probe container's resolv.conf (the docker CLI), the host's
   DNS server (dig), etcd (``discovery.store.EtcdStore``), the kernel (``ip -j``
   and ``bridge -j``) and, with ``--trace``, the underlay (tcpdump). Their raw
   answers are kept as they came, in ``facts.Facts``;
2. explain: pure modules turn those raw facts into hops, one per entry that
   decides where a name or a packet goes (``explanation.py``, with the parsers
   ``resolv_conf.py``, ``dig_text.py`` and ``pcap.py``);
3. render: ``render.py`` writes the hops as text that says what each entry is
   for, or as JSON with the same facts.

Because step 1 keeps raw answers, steps 2 and 3 are unit-tested on facts
recorded from a real lab, and a later tool (a doctor that judges the same
entries) can take the facts without re-asking anything.
"""

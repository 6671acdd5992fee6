"""discovery-dns: the lab's DNS server, answering from etcd through an in-memory catalog.

How it works, in three steps:

1. ``service.DnsService`` lists the records under ``<prefix>/<domain>/`` in
   etcd once, then watches them (``discovery.catalog``); every change lands in
   the in-memory catalog within milliseconds. No query ever reads etcd, so
   answers keep coming from the last known catalog while etcd is down.
2. ``handler.QueryHandler`` answers each query. The first time a (name, type)
   is asked, dnslib parses it, ``answers.resolve`` (pure: catalog in, records
   out) decides the answer, and the reply is packed once and kept in
   ``cache.PackedCache``. Every later query for that name is served from the
   packed bytes, patched with the query's id, RD flag and name as typed
   (``wire``), with no parsing at all. A catalog change drops the packed
   replies of the services it touched.
3. ``server.DnsServer`` moves bytes between the sockets (UDP and TCP) and the
   handler; ``forwarder.Forwarder`` sends names outside the lab domain to the
   ``--upstream`` resolvers.

Only the modules of this package import dnslib.
"""

"""Throwaway servers, started for `make run`'s demo, the tests and the benchmarks: a
PostgreSQL cluster (cluster.py) and an S3 server (s3.py) on private ports. Not adapters:
pgkeep itself never starts a server."""

"""Kafka plumbing that is not Faust's: a local Apache Kafka (``local``) and the
connection security every client the project creates uses (``security``)."""

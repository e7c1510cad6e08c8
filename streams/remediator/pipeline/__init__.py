"""The stream pipeline: ingest, the inbox, the state owner, the executor and their stores.

Every Faust agent, handler and service between the input topics and the outputs; the
pure decisions they apply live in :mod:`remediator.domain`.
"""

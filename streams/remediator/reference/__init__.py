"""Reference material generated from the code: the JSON Schemas and the docs' pages.

``schemas`` writes ``schemas/*.json`` (``make schemas``); ``docs`` makes the generated
pages of the documentation site (configuration, policy reference, module map).
"""

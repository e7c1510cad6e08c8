"""The operators' command-line client of the REST API (``remediator remediations …``).

- :mod:`.client`: the API over httpx, its errors as exceptions carrying the API's message;
- :mod:`.table`: pure formatting of API answers as aligned text tables and detail views;
- :mod:`.commands`: the argparse subcommands and what each one prints, with exit codes
  ``0`` done, ``1`` the API refused (its message on stderr), ``2`` usage error,
  ``3`` the API could not be reached or did not answer.
"""

"""moto's standalone S3 server (`python -m moto.server`), with its per-request module listing cached.

moto 5 lists and stats its whole package directory on every request to find the service
(~180 stat calls, about half of its CPU per S3 request); the listing never changes while it runs.
"""

from moto import backends
from moto.server import main

_MODULES = tuple(backends.list_of_moto_modules())
backends.list_of_moto_modules = lambda: _MODULES

if __name__ == "__main__":
    main()

"""Facts about the database every domain shares."""

from django.db import InterfaceError, OperationalError

# The largest value of a PostgreSQL bigint: the upper bound of every id the service accepts.
BIGINT_MAX = 2**63 - 1

# Errors a later attempt can get past: a lost connection, a restarted server, a statement
# cancelled by its timeout, a deadlock or serialization failure.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError)

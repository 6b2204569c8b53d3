"""How the API knows its caller: DRF's token, with the caller's chat read in the same query."""

from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from core.compiled_query import CompiledQuery


class ReaderTokenAuthentication(TokenAuthentication):
    """TokenAuthentication whose one indexed query (the token's primary key) also brings the user's chat.

    Every reader's request needs the chat next (chat.messaging.selectors.chat_for_reader takes it
    from the user when it came with them): one query instead of two, on every request.
    """

    def authenticate_credentials(self, key):
        found = _TOKEN_WITH_USER_AND_CHAT.instances(key=key)
        if not found:
            raise AuthenticationFailed(_("Invalid token."))
        (token,) = found
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)


def _token_queryset(*, shape, key: str):
    return Token.objects.select_related("user", "user__chat").filter(key=key)


# Compiled once per process (core.compiled_query): building and compiling it cost more than running it.
_TOKEN_WITH_USER_AND_CHAT = CompiledQuery(_token_queryset, kinds={"key": str})


# Token first, so an anonymous caller gets 401 with WWW-Authenticate: Token (as the settings say).
READER_AUTHENTICATION = [ReaderTokenAuthentication, SessionAuthentication]

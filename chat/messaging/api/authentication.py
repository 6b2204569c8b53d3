"""How the API knows its caller: DRF's token, with the caller's chat read in the same query."""

from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


class ReaderTokenAuthentication(TokenAuthentication):
    """TokenAuthentication whose one indexed query (the token's primary key) also brings the user's chat.

    Every reader's request needs the chat next (chat.messaging.selectors.chat_for_reader takes it
    from the user when it came with them): one query instead of two, on every request.
    """

    def authenticate_credentials(self, key):
        try:
            token = Token.objects.select_related("user", "user__chat").get(key=key)
        except Token.DoesNotExist as missing:
            raise AuthenticationFailed(_("Invalid token.")) from missing
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)


# Token first, so an anonymous caller gets 401 with WWW-Authenticate: Token (as the settings say).
READER_AUTHENTICATION = [ReaderTokenAuthentication, SessionAuthentication]

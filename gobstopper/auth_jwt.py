"""An auth hook for JSON Web Tokens, with PyJWT (the ``jwt`` extra: ``pip install -e '.[jwt]'``).

``jwt_auth(key, ...)`` returns a hook that reads ``credential(ws)`` (the bearer header,
the ``token`` query parameter, or the token a refresh presents), verifies it and answers
with an ``Identity`` whose ``expires_at`` is the token's ``exp``: the connection is then
asked to refresh before it, and closed at it. See ``docs/auth.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .auth import AuthHook, Identity, credential
from .errors import HTTPError

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["jwt_auth"]


def _pyjwt() -> Any:
    try:
        import jwt
    except ImportError:
        raise RuntimeError(
            "jwt_auth needs PyJWT: install the `jwt` extra (`pip install -e '.[jwt]'` "
            "in a checkout, or `pip install 'PyJWT[crypto]'`)"
        ) from None
    return jwt


def jwt_auth(
    key: Any,
    *,
    algorithms: Iterable[str] = ("HS256",),
    audience: str | Iterable[str] | None = None,
    issuer: str | None = None,
    leeway: float = 0.0,
    user_claim: str = "sub",
    meta: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
    require_exp: bool = True,
) -> AuthHook:
    """An auth hook that admits connections presenting a valid JWT.

    Examples:
        ```python
        app = Gobstopper()
        auth = jwt_auth(PUBLIC_KEY_PEM, algorithms=["RS256"], audience="chat")

        @app.websocket("/rpc", auth=auth)
        async def endpoint(ws: WebSocket) -> None:
            await rpc.serve(ws)  # conn.user is the token's "sub"
        ```

    Args:
        key: the HMAC secret (HS256...), or the public key (a PEM string or a key
            object) for RS256, ES256... (those need ``cryptography``, which the extra
            installs).
        algorithms: the algorithms accepted: HMAC ones (``HS256``...) or public-key
            ones (``RS256``, ``ES256``...), never both, never ``none``.
        audience: the ``aud`` the token must name (required in the token when given).
        issuer: the ``iss`` the token must have.
        leeway: seconds of clock difference tolerated on ``exp`` and ``nbf``; the
            connection's expiry is ``exp + leeway``.
        user_claim: the claim holding the user (a non-empty string).
        meta: ``meta(claims)``: the connection's presence meta (default: none).
        require_exp: refuse tokens without ``exp`` (the default): one without would
            admit a connection for ever. False admits them, without an expiry.

    Returns:
        ``hook(ws)``: an ``Identity(claims[user_claim], meta, expires_at=exp + leeway)``,
        or ``HTTPError(401, why)`` for a missing, invalid or expired token (or one the
        key cannot check).

    Raises:
        RuntimeError: PyJWT is not installed.
        ValueError: no algorithm, ``none``, or HMAC and public-key ones mixed (a
            public key would then be usable as an HMAC secret).
    """
    pyjwt = _pyjwt()
    accepted = list(algorithms)
    if not accepted:
        raise ValueError("jwt_auth needs at least one algorithm")
    if any(name.lower() == "none" for name in accepted):
        raise ValueError("jwt_auth never accepts the 'none' algorithm (unsigned tokens)")
    hmac = [name for name in accepted if name.upper().startswith("HS")]
    if hmac and len(hmac) != len(accepted):
        raise ValueError(f"jwt_auth: do not mix HMAC and public-key algorithms: {accepted}")
    options = {"require": ["exp"]} if require_exp else {}
    audiences = audience if audience is None or isinstance(audience, str) else list(audience)

    def hook(ws: WebSocket) -> Identity:
        token = credential(ws)
        if token is None:
            raise HTTPError(401, "no token")
        try:
            claims: dict[str, Any] = pyjwt.decode(
                token,
                key,
                algorithms=accepted,
                audience=audiences,
                issuer=issuer,
                leeway=leeway,
                options=options,
            )
            # As PyJWT reads it (it checked that int() takes it): 1700000000, 1.7e9, "17..".
            exp = claims.get("exp")
            expires_at = None if exp is None else float(int(exp)) + leeway
        except pyjwt.ExpiredSignatureError:
            raise HTTPError(401, "token expired") from None
        except pyjwt.PyJWTError as exc:
            raise HTTPError(401, f"invalid token: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            # A token for another kind of key (an EC token for an RSA key...) makes the
            # key's own code raise: still only an invalid token.
            raise HTTPError(401, f"invalid token: {type(exc).__name__}") from None
        user = claims.get(user_claim)
        if not isinstance(user, str) or not user:
            raise HTTPError(401, f"invalid token: no {user_claim!r} string")
        return Identity(user, dict(meta(claims)) if meta is not None else {}, expires_at)

    return hook

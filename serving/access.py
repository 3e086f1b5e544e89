"""Who may call each route: every route declares its access level here, with one dependency, and nothing else.

Contract:
- `allow(Access.PUBLIC | Access.MEMBER | Access.ADMIN)` is a FastAPI dependency put on a route
  (`@router.get(..., dependencies=[allow(Access.ADMIN)])`) or on a whole router
  (`APIRouter(dependencies=[allow(Access.MEMBER)])`). PUBLIC needs no key; MEMBER needs any valid key (or no keys
  configured); ADMIN needs a key whose role is admin (403 for a member). Services still apply the member's
  collection scope and ownership; the declaration is the coarse gate.
- Non-API routes (a static-files mount of the web console) can only be public: mount them as
  `app.mount(path, public(StaticFiles(...)))`. FastAPI's own docs/OpenAPI routes are public.
- `route_access(route)` reads a route's declaration (None when it has none); `check_declared(app)` raises a
  `ConfigError` naming every route without exactly one declaration. The app factory calls it at startup, and a test
  walks `app.routes` with it, so a route added without a declaration fails CI and refuses to start.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from fastapi import Depends, FastAPI
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount, Route

from assistant.errors import ConfigError, PermissionDeniedError
from serving.deps import PrincipalDep
from serving.principal import Principal

T = TypeVar("T")


class Access(StrEnum):
    PUBLIC = "public"
    MEMBER = "member"
    ADMIN = "admin"


class _Declaration:
    access: Access

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class _Public(_Declaration):
    access = Access.PUBLIC

    def __call__(self) -> None:
        return None


class _Keyed(_Declaration):
    def __init__(self, access: Access) -> None:
        self.access = access

    def __call__(self, principal: PrincipalDep) -> Principal:
        if self.access is Access.ADMIN and not principal.is_admin:
            raise PermissionDeniedError("this route needs an admin API key (this key's role is member)")
        return principal


_DECLARATIONS: dict[Access, _Declaration] = {
    Access.PUBLIC: _Public(),
    Access.MEMBER: _Keyed(Access.MEMBER),
    Access.ADMIN: _Keyed(Access.ADMIN),
}


def allow(access: Access) -> Any:
    """The dependency declaring who may call a route (see the module docstring)."""
    return Depends(_DECLARATIONS[access])


def public(asgi_app: T) -> T:
    """Declare a mounted ASGI app (static files) public; mounts cannot take any other level."""
    asgi_app.__dict__["_assistant_access"] = Access.PUBLIC
    return asgi_app


def _framework_paths(app: FastAPI) -> set[str]:
    paths = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return {p for p in paths if p}


def route_access(route: BaseRoute, app: FastAPI) -> list[Access]:
    """The access levels a route declares (a correct route declares exactly one)."""
    if isinstance(route, APIRoute):
        found: list[Access] = []
        for dependency in route.dependencies:
            if isinstance(dependency, DependsParam) and isinstance(dependency.dependency, _Declaration):
                found.append(dependency.dependency.access)
        return found
    if isinstance(route, Mount):
        level = getattr(route.app, "__dict__", {}).get("_assistant_access")
        return [level] if level else []
    if isinstance(route, Route) and route.path in _framework_paths(app):
        return [Access.PUBLIC]
    return []


def route_label(route: BaseRoute) -> str:
    methods = sorted(getattr(route, "methods", None) or ["*"])
    return f"{','.join(methods)} {getattr(route, 'path', repr(route))}"


def check_declared(app: FastAPI) -> None:
    """Raise naming every route whose access is not declared exactly once."""
    bad = [route_label(r) for r in app.routes if len(route_access(r, app)) != 1]
    if bad:
        raise ConfigError(
            "routes without exactly one access declaration (add dependencies=[allow(Access.X)], see "
            f"serving/access.py): {'; '.join(bad)}"
        )

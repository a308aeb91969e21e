"""Domain errors, each with the HTTP status the API maps it to (one place: gisgov.api.errors)."""

from __future__ import annotations


class GisgovError(Exception):
    """Base class: a message a planner can act on."""

    status_code = 400


class DatabaseUnavailable(GisgovError):
    status_code = 503


class NotFound(GisgovError):
    status_code = 404


class InvalidInput(GisgovError, ValueError):
    status_code = 422


class InvalidGeometry(InvalidInput):
    status_code = 422


class PlanConflict(GisgovError):
    status_code = 409


class NotAuthenticated(GisgovError):
    """No valid session or token: sign in first."""

    status_code = 401


class Forbidden(GisgovError):
    """Signed in, but the role lacks the permission (objects outside the scope answer 404 instead)."""

    status_code = 403

"""The 网格治理 governance page (issue 13, items 2–4): ``GET /governance`` serves ``web/governance``.

Three tabs on one plain page (no map, no framework, nothing from elsewhere):

- 网格员 Staff: per grid of the caller's area, counts per role, gap badges and the staff list
  (``GET /api/staff``; names and masked phones only when the API gives them); roles with ``import_data``
  get add / edit / remove, the XLSX template and an import with a dry-run preview (``/api/staff…``).
- 小区 Compounds: the rule check per community (``GET /api/compounds/check``) and editing a compound's
  attributes with its version (``PATCH /api/compounds/{code}``; a 409 is explained and reloaded).
- 特殊人群 Special groups: the summary per unit (``GET /api/special/summary``, suppressed cells as given)
  and, for roles that may read personal data, the beyond-the-circle and overdue-visit lists with 记录走访
  (``POST /api/special/visits``).

The APIs decide who may do what (403 / 404); the page only hides controls the caller cannot use.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from gisgov.api.pages import LeafletPage

router = APIRouter()
PAGE = LeafletPage("governance", "网格治理 governance")


@router.get(
    "/governance",
    response_class=HTMLResponse,
    tags=["maps"],
    summary="网格治理页面 Staff (一格三员), compound rules and special-group services page",
    responses={200: {"description": "页面 the HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
)
def governance_page(request: Request) -> HTMLResponse:
    return PAGE.response(request.app.state.settings)


def setup(app: FastAPI) -> None:
    """Serve ``web/governance`` (the page's own JS/CSS) at /static/governance."""
    PAGE.mount(app)

"""Answers of the sign-in routes (``/api/auth/…``)."""

from __future__ import annotations

from pydantic import Field

from gisgov.api.schemas._base import Answer, example

_ME = {
    "username": "planner1",
    "display_name": "王规划",
    "role": "planner",
    "role_label": "规划员",
    "scope": "340102001",
    "permissions": ["read_aggregates", "run_analyses"],
}


class SignedIn(Answer):
    """当前登录账号 the signed-in account."""

    model_config = example(_ME)

    username: str = Field(description="用户名 user name")
    display_name: str = Field(description="显示名 display name")
    role: str = Field(description="角色 role (admin, street_staff, community_staff, grid_worker, planner, viewer)")
    role_label: str = Field(description="角色中文名 role label in Chinese")
    scope: str = Field(description="辖区编码（空 = 全市）code of the account's area ('' = whole city)")
    permissions: list[str] = Field(description="权限 the role's permissions")


class TokenOut(Answer):
    """令牌 a bearer token for API clients."""

    model_config = example({"access_token": "3q2-…", "token_type": "bearer", "expires_in": 28800})

    access_token: str = Field(description="令牌 send as Authorization: Bearer <token>")
    token_type: str = Field("bearer", description="令牌类型 always 'bearer'")
    expires_in: int = Field(description="有效期（秒）seconds until it expires")


class SignedOut(Answer):
    """已退出 the session or token has ended."""

    model_config = example({"signed_out": True})

    signed_out: bool = Field(description="已退出 always true")

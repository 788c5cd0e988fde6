"""JSON answers serialised by pydantic in the handler's own thread.

FastAPI validates and serialises the return value of a plain ``def`` handler in a second trip
through the thread pool. A handler that returns a ready Response skips that trip, which was
about half of the API's own cost per request on SQLite. The response models stay declared on
the routes (``response_model=``) for the OpenAPI document, and the schemathesis test checks
every answer against them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Response
from pydantic import BaseModel

JSON_MEDIA_TYPE = "application/json"


def json_model(value: BaseModel | Sequence[BaseModel], status_code: int = 200) -> Response:
    if isinstance(value, BaseModel):
        body = value.model_dump_json().encode()
    else:
        body = b"[" + b",".join(item.model_dump_json().encode() for item in value) + b"]"
    return Response(body, status_code=status_code, media_type=JSON_MEDIA_TYPE)

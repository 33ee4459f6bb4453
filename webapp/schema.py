"""The OpenAPI schema says what every operation answers when access is refused."""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
REFUSALS = {
    "401": "Not signed in, or a missing or bad token (`Authorization: Token KEY`).",
    "403": "Signed in, but not allowed: staff only, or a study the user holds no grant of.",
    "404": "No such object, or none this user may know of.",
}


def document_refusals(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: add 401, 403 and 404 to every operation."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR_SCHEMA)
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in REFUSALS.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    },
                )
    return result
